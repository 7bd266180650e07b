"""The predictor: a roofline per operator, plus launch overhead and host<->device copies.

For every operator of a :class:`~chipfit.cost.records.WorkloadCosts`::

    roof_i = max(flops_i / rate(class_i, dtype_i, flops_i),  bytes_i / bandwidth(bytes_i))

(Williams, Waterman and Patterson, "Roofline: an insightful visual performance model",
CACM 52(4), 2009), where the rates are *achievable* ones: measured on this machine by
``chipfit calibrate`` (curves over operation size, so caches and small-matrix inefficiency are
in them), or the catalog's peak times a documented efficiency. Then:

- host work: ``host_per_op`` per dispatched operator (views: ``host_per_view``), plus
  ``host_per_module`` per ``nn.Module`` call and ``host_per_call`` per compiled-program call;
- device work: ``kernel_floor + roof_i`` per kernel;
- a CPU runs both on the same cores, so ``time = host + device``; an accelerator overlaps
  them (the host enqueues while the device runs), so ``time = max(host, device)``: the
  two-stage pipeline bound;
- copies: ``transfer = h2d_bytes / h2d_bw + d2h_bytes / d2h_bw`` (none for host memory).

The bound is the largest of the compute, memory, launch (time not explained by the roofs) and
transfer parts. The band is multiplicative, ``[t / (1 + e), t * (1 + e)]``, with ``e`` taken
from validation error (see :mod:`chipfit.pipelines.validate`) or a documented default.
Everything here is pure arithmetic on frozen values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.cost.records import DTYPE_BYTES, MATRIX_CLASSES, PROBE_ROWS, OpCost, WorkloadCosts
from chipfit.errors import UnsupportedError

__all__ = ["BOUNDS", "ClassTime", "Curve", "Prediction", "Roofs", "catalog_roofs",
           "cpu_recurrent_seconds", "curve_rate", "few_rows_rate", "fit_checked",
           "missing_peak_reason", "predict"]

BOUNDS = ("compute", "memory", "launch", "transfer")
Curve = tuple[tuple[float, float], ...]  # (operation size, achievable rate) sorted by size


def curve_rate(curve: Curve, size: float) -> float:
    """Rate at ``size`` on a measured curve: log-log interpolation, flat beyond both ends."""
    if not curve:
        return math.nan
    if len(curve) == 1 or size <= curve[0][0]:
        return curve[0][1]
    if size >= curve[-1][0]:
        return curve[-1][1]
    for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False):
        if x0 <= size <= x1 and x1 > x0:
            t = (math.log(size) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return curve[-1][1]  # pragma: no cover - unreachable for a sorted curve


@dataclass(frozen=True)
class Roofs:
    """Achievable rates and overheads of one processor for one framework.

    ``matmul``/``conv`` map a dtype to a curve of FLOP/s over FLOPs per operation;
    ``bandwidth`` is a curve of bytes/s over bytes per operation. ``basis`` is ``calibrated``
    (measured here) or ``catalog`` (peaks x efficiencies).
    """

    key: str
    name: str
    kind: str
    basis: str
    matmul: tuple[tuple[str, Curve], ...]
    bandwidth: Curve
    vector_flops: float | None = None
    conv: tuple[tuple[str, Curve], ...] = ()
    host_per_op_s: float = 0.0
    host_per_view_s: float = 0.0
    host_per_module_s: float = 0.0
    host_per_call_s: float = 0.0
    kernel_floor_s: float = 0.0
    asynchronous: bool = False
    h2d_bw: float | None = None
    d2h_bw: float | None = None
    band: float = 0.5
    band_basis: str = "default"
    efficiency: tuple[tuple[str, float, str], ...] = ()  # (name, value, where it comes from)
    notes: tuple[str, ...] = ()
    memory_bytes: float | None = None
    # Measured bytes/s of operator kinds that run well below the stream rate on this device
    # (batch_norm, layer_norm, pool, softmax); others use ``bandwidth``.
    class_bandwidth: tuple[tuple[str, Curve], ...] = ()
    pool: Curve = ()  # measured output elements/s of pooling (calibrated CPUs)
    precision: tuple[str, ...] = ()  # the unit each dtype's matmuls/convs run on, and why
    copy_known: bool = True  # False: host link unsourced, so copy time is unknown (not 0)
    # The peak the predicted dtype needs and the catalog lacks (Prediction.missing_peak)
    missing_peak: str = ""
    # The last-level cache of a calibrated CPU (bytes): a call whose working set exceeds it
    # reads its operands at the measured rate for a stream that size (None: not applied)
    llc_bytes: float | None = None
    # A calibrated CPU's per-step floor of a fused recurrent layer (seconds): what a time step
    # costs beyond streaming its recurrent weights (gate arithmetic, threads meeting each step)
    rnn_step_s: float = 0.0

    def matmul_rate(self, dtype: str, flops: float, op_class: str = "matmul",
                    variant: str = "") -> float:
        """Achievable FLOP/s; conv curves may be per kernel path (``float32/1x1b1``)."""
        curves = dict(self.conv) if op_class == "conv" and self.conv else {}
        curves = curves or dict(self.matmul)
        curve = ((curves.get(f"{dtype}/{variant}") if variant else None) or curves.get(dtype)
                 or curves.get("float32"))
        if curve is None:
            raise UnsupportedError(f"{self.key} has no matmul rate for {dtype}")
        return curve_rate(curve, max(flops, 1.0))

    def bandwidth_at(self, nbytes: float, kind: str = "") -> float:
        curve = dict(self.class_bandwidth).get(kind) if kind else None
        return curve_rate(curve or self.bandwidth, max(nbytes, 1.0))


@dataclass(frozen=True)
class ClassTime:
    """One operator class's share: roof time (compute + memory) and per-op overhead."""

    op_class: str
    ops: int
    kernels: int
    flops: float
    bytes_moved: float
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def seconds(self) -> float:
        return self.compute_s + self.memory_s + self.overhead_s

    @property
    def bound(self) -> str:
        parts = {"compute": self.compute_s, "memory": self.memory_s, "launch": self.overhead_s}
        return max(parts, key=lambda k: parts[k])


@dataclass(frozen=True)
class Prediction:
    """Predicted time of one call on one processor. Every number here is ``predicted``."""

    hardware: str
    hardware_name: str
    kind: str
    workload: str
    size: str
    dtype: str
    mode: str
    seconds: float  # per call, inputs already on the device
    low_s: float
    high_s: float
    transfer_s: float
    compute_s: float
    memory_s: float
    launch_s: float
    bound: str
    basis: str  # calibrated | catalog
    band: float
    band_basis: str
    items: int = 1
    breakdown: tuple[ClassTime, ...] = ()
    efficiency: tuple[tuple[str, float, str], ...] = ()
    notes: tuple[str, ...] = field(default=())
    source: str = "predicted"
    # Which unit each (dtype, operator class) ran on and why (the precision policy)
    precision: tuple[str, ...] = ()
    # False when copies are needed but the host link is unsourced: transfer_s is then a
    # placeholder 0 and end_to_end_s leaves copies out (unknown, not free)
    transfer_known: bool = True
    stack: str = "eager"  # the software stack predicted (chipfit.analysis.stacks)
    # Which predictor priced it (chipfit.predictors): gpu-kernel-model | roofline | calibrated
    route: str = ""
    # How far the target is from the evidence the band was measured on (chipfit.predictors)
    stratum: str = ""
    host_s: float | None = None  # host (dispatch) seconds per call, where the route models them
    device_s: float | None = None  # device seconds per call, where the route models them
    # The fit check (:func:`fit_checked`): device bytes one call needs (weights, inputs,
    # live tensors at their peak; estimated) and the device's memory; None where unknown
    memory_need_bytes: float | None = None
    memory_have_bytes: float | None = None
    # The catalog peak this dtype's matrix work needs and the catalog lacks ("int8", "fp16"):
    # the time is priced at a stand-in peak, so the row is marked and kept out of verdicts
    # (:func:`missing_peak_reason`)
    missing_peak: str = ""
    # Why no time is predicted at all ("" where one is): an engine at a precision whose peak
    # the catalog lacks is not priced at another precision's peak. Its times are NaN here
    # and null in :meth:`to_dict`; it takes no part in a ranking (:attr:`known`)
    unknown: str = ""

    @property
    def known(self) -> bool:
        """Whether a time was predicted (False: :attr:`unknown` says why)."""
        return not self.unknown

    @property
    def fits(self) -> bool | None:
        """Whether one call fits the device's memory; None where either figure is unknown."""
        if self.memory_need_bytes is None or self.memory_have_bytes is None:
            return None
        return self.memory_need_bytes <= self.memory_have_bytes

    @property
    def throughput(self) -> float:
        """Items per second with inputs resident."""
        return self.items / self.seconds if self.seconds > 0 else math.nan

    @property
    def end_to_end_s(self) -> float:
        return self.seconds + self.transfer_s

    @property
    def resident_bound(self) -> str:
        """The bound with inputs already on the device (transfer left out)."""
        parts = {"compute": self.compute_s, "memory": self.memory_s, "launch": self.launch_s}
        return max(parts, key=lambda k: parts[k])

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["throughput"] = self.throughput
        out["end_to_end_s"] = self.end_to_end_s
        out["fits"] = self.fits
        if self.unknown:  # no number, no band: null in JSON, with the reason beside it
            out.update({name: None for name in _UNKNOWN_FIELDS})
        return out


#: The figures an unknown prediction (``Prediction.unknown``) has none of.
_UNKNOWN_FIELDS = ("seconds", "low_s", "high_s", "transfer_s", "compute_s", "memory_s",
                   "launch_s", "band", "throughput", "end_to_end_s")


def missing_peak_reason(precision: str) -> str:
    """Why a row priced without its precision's peak is kept out of a verdict."""
    return f"no {precision} peak in the catalog"


def fit_checked(pred: Prediction, need_bytes: float | None,
                have_bytes: float | None) -> Prediction:
    """``pred`` with its fit check: the memory one call needs against the device's, and a
    ``does not fit`` note first when it is larger (the time of a call that cannot run)."""
    pred = replace(pred, memory_need_bytes=None if need_bytes is None else float(need_bytes),
                   memory_have_bytes=None if have_bytes is None else float(have_bytes))
    if pred.fits is not False:
        return pred
    note = (f"does not fit: needs ~{need_bytes / 1e9:.1f} GB, the device has "
            f"{have_bytes / 1e9:.1f} GB")
    return replace(pred, notes=(note, *pred.notes))


def bandwidth_kind(op: OpCost) -> str:
    """Which measured per-kind bandwidth curve an operator uses ("" = the stream curve)."""
    for kind in ("batch_norm", "layer_norm", "softmax"):
        if kind in op.op:
            return kind
    return ""


def spill_bandwidth(roofs: Roofs, working_set: float | None) -> float | None:
    """The bandwidth every operand of a call gets once the call's working set exceeds the
    last-level cache (the measured stream rate at that many bytes); None where it fits, or
    where the cache or the working set is unknown. A calibration times each operator
    alone, its operands cached between repeats; in a model that touches more than the
    cache holds, each operator's weights and inputs come back from memory."""
    if not roofs.llc_bytes or not working_set or working_set <= roofs.llc_bytes:
        return None
    inside = [r for n, r in roofs.bandwidth if n <= roofs.llc_bytes]
    beyond = [r for n, r in roofs.bandwidth if n > 2 * roofs.llc_bytes]
    if not inside or not beyond:  # the curve does not reach both sides of the cache
        return None
    # the share of the bytes the cache cannot hold come from memory, the rest from the cache
    spilled = 1.0 - roofs.llc_bytes / working_set
    return 1.0 / (spilled / beyond[-1] + (1.0 - spilled) / inside[-1])


def cpu_recurrent_seconds(op: OpCost, roofs: Roofs,
                          spill: float | None = None) -> tuple[float, float] | None:
    """(compute, memory) seconds of one fused CPU recurrent layer (oneDNN's
    ``mkldnn_rnn_layer``: one direction of one LSTM layer) as it runs, or None for any other
    operator; one of the two is zero, since the parts run in turn. The input projection of
    every step is one GEMM at the measured rate for its size; then each time step multiplies
    the hidden state by the recurrent weights and waits for the step before. A step streams
    those weights from the cache (the measured bandwidth at their size; beyond the last-level
    cache, ``spill``, only their first read) or computes at the best measured matmul rate,
    whichever is slower, plus the calibrated per-step floor (``Roofs.rnn_step_s``). The
    layer's FLOPs alone would price a batch-1 LSTM as one large GEMM: 300 dependent 2-MFLOP
    steps at the rate of a 700-MFLOP matmul."""
    if op.op != "mkldnn_rnn_layer" or len(op.shapes) < 3 or roofs.kind != "cpu":
        return None
    try:  # input (steps, batch, features) or (steps, features), w_ih, w_hh, b_ih, b_hh, hx
        *lead, inputs = (int(v) for v in op.shapes[0])
        gated, hidden = (int(v) for v in op.shapes[2][:2])
        hx = op.shapes[5] if len(op.shapes) > 5 else ()
        batch = int(hx[-2]) if len(hx) >= 2 else (lead[1] if len(lead) > 1 else 1)
        steps = math.prod(lead) // max(batch, 1)
    except (TypeError, ValueError, IndexError):
        return None
    if min(steps, batch, inputs, gated, hidden) <= 0:
        return None
    curves = dict(roofs.matmul)
    curve = curves.get(op.dtype) or curves.get("float32")
    if not curve:
        return None
    best = max(r for _, r in curve)
    x_flops = 2.0 * steps * batch * gated * inputs
    h_flops = 2.0 * batch * gated * hidden
    w_bytes = float(gated * hidden * DTYPE_BYTES.get(op.dtype, 4.0))
    # a step re-reads the weights the step before read: they stay in the cache whatever the
    # model's working set (``spill``), so only their first read may come from memory
    bandwidth = roofs.bandwidth_at(w_bytes)
    first = w_bytes / spill if spill is not None else 0.0
    compute = x_flops / roofs.matmul_rate(op.dtype, x_flops)
    stream, math_s = w_bytes / bandwidth, h_flops / best
    total = compute + first + steps * (max(stream, math_s) + roofs.rnn_step_s)
    # the parts run one after another: the whole time goes to the part that dominates it
    streamed = steps * stream if stream > math_s else 0.0
    return (total, 0.0) if streamed <= total - streamed else (0.0, total)


def few_rows_rate(op: OpCost, roofs: Roofs) -> float | None:
    """FLOP/s of a few-row matmul (``gemv``/``skinny``) between the two rows calibration
    measures (PROBE_ROWS: 1 and 128): each curve read for the same weight matrix (the
    FLOPs over rows times the probe's rows), then interpolated on log rows. A 64-row product
    reuses each loaded weight 64 times, not 128: the 128-row curve at its FLOPs alone made
    it 30% too fast. None where a curve or the output shape is missing."""
    if op.op_class != "matmul" or op.variant not in ("gemv", "skinny") or not op.shapes:
        return None
    curves = dict(roofs.matmul)
    probes = [(rows, curves.get(f"{op.dtype}/{name}")) for name, rows in PROBE_ROWS]
    out = op.shapes[-1]
    if not all(c for _, c in probes) or not out:
        return None
    rows = max(1, min(out[-2:]) if len(out) >= 2 else 1)
    (r0, _), (r1, _) = probes
    low, high = (curve_rate(c, max(op.flops * r / rows, 1.0)) for r, c in probes)
    share = min(max(math.log(rows / r0) / math.log(r1 / r0), 0.0), 1.0)
    return math.exp(math.log(low) + share * (math.log(high) - math.log(low)))


def _op_times(op: OpCost, roofs: Roofs, spill: float | None = None) -> tuple[float, float]:
    """(compute, memory) seconds of one occurrence of ``op``; ``spill``: the bandwidth its
    operands are capped at when the call does not fit the cache (:func:`spill_bandwidth`)."""
    fused = cpu_recurrent_seconds(op, roofs, spill)
    if fused is not None:
        return fused
    if op.op_class in MATRIX_CLASSES and op.flops:
        rate = (few_rows_rate(op, roofs)
                or roofs.matmul_rate(op.dtype, op.flops, op.op_class, op.variant))
    elif op.op_class == "pool" and roofs.pool:
        rate = curve_rate(roofs.pool, max(op.flops, 1.0))
    else:
        rate = roofs.vector_flops or math.inf
    compute = op.flops / rate if rate and math.isfinite(rate) else 0.0
    bandwidth = roofs.bandwidth_at(op.bytes_moved, bandwidth_kind(op))
    if spill is not None:
        bandwidth = min(bandwidth, spill)
    memory = op.bytes_moved / bandwidth if op.bytes_moved else 0.0
    return compute, memory


def op_device_seconds(op: OpCost, roofs: Roofs, rnn_step_s: float = 0.0) -> float:
    """Device seconds of one occurrence of ``op`` on an accelerator's roofs: its roofline
    time (the larger of compute and memory) plus each kernel's launch floor. A fused
    recurrent layer stack (``variant`` ``fused:<mode>:<layers>:<directions>``) is priced as
    it runs: one input GEMM per layer, then one small GEMM per time step that waits for the
    last, each at least ``rnn_step_s`` (a step's latency floor); its FLOPs alone would let a
    100-step GRU run as if its steps were independent."""
    if op.op_class == "recurrent" and op.variant.startswith("fused:") and op.shapes:
        seconds = _recurrent_seconds(op, roofs, rnn_step_s)
        if seconds is not None:
            return op.kernels * roofs.kernel_floor_s + seconds
    compute, memory = _op_times(op, roofs)
    return op.kernels * roofs.kernel_floor_s + max(compute, memory)


_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _recurrent_seconds(op: OpCost, roofs: Roofs, step_floor_s: float) -> float | None:
    try:
        _, mode, layers, directions = op.variant.split(":")
        steps, batch, inputs = (int(v) for v in op.shapes[0][:3])
        dirs = int(directions)
        hidden = int(op.shapes[-1][-1]) // dirs
    except (ValueError, IndexError):
        return None
    gates = _GATES.get(mode, 4)
    total = 0.0
    for layer in range(int(layers)):
        width = inputs if layer == 0 else hidden * dirs
        x_flops = 2.0 * steps * batch * gates * hidden * width
        h_flops = 2.0 * batch * gates * hidden * hidden
        x = x_flops / roofs.matmul_rate(op.dtype, x_flops, "recurrent", op.variant)
        h = h_flops / roofs.matmul_rate(op.dtype, h_flops, "recurrent", op.variant)
        total += dirs * (x + steps * max(h, step_floor_s))
    return total


def _cached_in_loop(op: OpCost, roofs: Roofs) -> bool:
    """A compiled loop's operator whose operands fit the last-level cache: it re-reads them
    every iteration, so they stay cached whatever the whole program's working set."""
    return op.in_loop and bool(roofs.llc_bytes) and op.bytes_moved <= roofs.llc_bytes


def _class_times(ops: Iterable[OpCost], roofs: Roofs,
                 spill: float | None = None) -> list[ClassTime]:
    acc: dict[str, list[float]] = {}
    for op in ops:
        a = acc.setdefault(op.op_class, [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0])
        a[0] += op.count
        if not op.kernels:
            a[6] += op.count * roofs.host_per_view_s
            continue
        compute, memory = _op_times(op, roofs, None if _cached_in_loop(op, roofs) else spill)
        a[1] += op.count * op.kernels
        a[2] += op.total_flops
        a[3] += op.total_bytes
        a[4 if compute >= memory else 5] += op.count * max(compute, memory)
        overhead = roofs.kernel_floor_s + roofs.host_per_op_s
        if roofs.asynchronous:
            overhead = max(roofs.kernel_floor_s, roofs.host_per_op_s)
        a[6] += op.count * overhead
    return [ClassTime(c, int(a[0]), int(a[1]), a[2], a[3], a[4], a[5], a[6])
            for c, a in acc.items()]


def _host_device(costs: WorkloadCosts, roofs: Roofs,
                 classes: list[ClassTime]) -> tuple[float, float]:
    views = sum(o.count for o in costs.ops if not o.kernels)
    kernels = sum(o.count * o.kernels for o in costs.ops if o.kernels)
    host = (kernels * roofs.host_per_op_s + views * roofs.host_per_view_s
            + costs.module_calls * roofs.host_per_module_s
            + costs.program_calls * roofs.host_per_call_s)
    device = kernels * roofs.kernel_floor_s + sum(c.compute_s + c.memory_s for c in classes)
    return host, device


def transfer_seconds(costs: WorkloadCosts, roofs: Roofs) -> float:
    h2d = costs.h2d_bytes / roofs.h2d_bw if roofs.h2d_bw else 0.0
    d2h = costs.d2h_bytes / roofs.d2h_bw if roofs.d2h_bw else 0.0
    return h2d + d2h


def predict(costs: WorkloadCosts, roofs: Roofs) -> Prediction:
    """Predict one call of ``costs`` on ``roofs`` (see the module docstring for the model)."""
    spill = spill_bandwidth(roofs, getattr(costs, "working_set_bytes", None))
    classes = _class_times(costs.ops, roofs, spill)
    host, device = _host_device(costs, roofs, classes)
    seconds = max(host, device) if roofs.asynchronous else host + device
    compute = sum(c.compute_s for c in classes)
    memory = sum(c.memory_s for c in classes)
    launch = max(seconds - compute - memory, 0.0)
    transfer = transfer_seconds(costs, roofs)
    parts = dict(zip(BOUNDS, (compute, memory, launch, transfer), strict=True))
    bound = max(parts, key=lambda k: parts[k])
    python = (costs.module_calls * roofs.host_per_module_s
              + costs.program_calls * roofs.host_per_call_s)
    if python:
        classes.append(ClassTime("python", costs.module_calls + costs.program_calls, 0, 0.0, 0.0,
                                 0.0, 0.0, python))
    return Prediction(
        hardware=roofs.key, hardware_name=roofs.name, kind=roofs.kind, workload=costs.workload,
        size=costs.size, dtype=costs.dtype, mode=costs.mode, seconds=seconds,
        low_s=seconds / (1 + roofs.band), high_s=seconds * (1 + roofs.band),
        transfer_s=transfer, compute_s=compute, memory_s=memory, launch_s=launch, bound=bound,
        basis=roofs.basis, band=roofs.band, band_basis=roofs.band_basis, items=costs.items,
        breakdown=tuple(classes), efficiency=roofs.efficiency,
        notes=roofs.notes + costs.notes + ((
            f"working set {costs.working_set_bytes / 1e6:,.0f} MB > last-level cache "
            f"{roofs.llc_bytes / 1e6:,.0f} MB: operands at the measured "
            f"{spill / 1e9:.3g} GB/s of a stream that size",) if spill else ()),
        precision=roofs.precision,
        transfer_known=roofs.copy_known or not costs.transfer_bytes,
        missing_peak=roofs.missing_peak,
    )


# ----------------------------------------------------------------------- catalog roofs

def _matmul_precision(spec: Any, dtype: str, backend: str, op_class: str) -> tuple[str, str]:
    """Which catalog peak a ``dtype`` matmul runs at, and why (framework defaults).

    - NVIDIA/AMD GPUs, float32: torch keeps FP32 for matmuls (``torch.backends.cuda.matmul.
      allow_tf32`` defaults to False) but lets cuDNN use TF32 for convolutions
      (``torch.backends.cudnn.allow_tf32`` defaults to True); XLA on GPU uses TF32 for both
      (JAX's default matmul precision).
    - TPUs, float32: XLA's DEFAULT precision is one bfloat16 pass on the MXU.
    """
    if dtype == "float32":
        if spec.kind == "tpu":
            return "bf16", "float32 matmuls on TPU run as one bfloat16 pass (XLA DEFAULT precision)"
        if spec.kind == "gpu" and (backend == "jax" or op_class == "conv"):
            return "tf32", ""
        return "fp32", ""
    return {"bfloat16": "bf16", "float16": "fp16", "int8": "int8", "uint8": "int8",
            "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float64": "fp64"}.get(dtype, "fp32"), ""


def _peak_for(spec: Any, precision: str) -> tuple[float | None, str]:
    """The catalog peak at ``precision``, falling back to FP32 (then BF16) where it has none."""
    peak = spec.peak(precision)
    if peak:
        return peak, ""
    for fallback in ("fp32", "bf16"):
        alt = spec.peak(fallback)
        if alt:
            field = "int8_tops" if precision == "int8" else f"{precision}_tflops"
            status = spec.figure(field).status
            return alt, f"{precision} peak {status}: the {fallback} peak is used"
    return None, f"no {precision} or fallback peak in the catalog"


def _missing_peak(spec: Any, dtype: str, backend: str) -> str:
    """The peak ``dtype``'s matrix work runs at that the catalog lacks, or "". float32
    without a TF32 figure is not one: FP32 lanes run float32 as written (a slower, sourced
    bound), while a missing int8/fp16/bf16 peak would price reduced precision at FP32."""
    for op_class in ("matmul", "conv"):
        precision, _ = _matmul_precision(spec, dtype, backend, op_class)
        if precision != "tf32" and precision in _PEAK_PRECISIONS and not spec.peak(precision):
            return precision
    return ""


_PEAK_PRECISIONS = ("fp64", "fp32", "bf16", "fp16", "int8", "fp8")


def _dtype_curves(spec: Any, backend: str, op_class: str, wanted: Iterable[str],
                  notes: list[str]) -> tuple[tuple[str, Curve], ...]:
    """One flat curve per dtype; ``notes`` collects the caveats of the ``wanted`` dtypes."""
    out = []
    for dtype in ("float32", "bfloat16", "float16", "int8", "float8_e4m3fn"):
        precision, why = _matmul_precision(spec, dtype, backend, op_class)
        peak, fallback = _peak_for(spec, precision)
        if peak is None:
            continue
        name = "matmul_fp8" if precision == "fp8" and _has_eff(spec, "matmul_fp8") else "matmul"
        out.append((dtype, ((1.0, peak * spec.efficiency(name).value),)))
        if dtype in wanted:
            notes += [n for n in (why, fallback) if n and n not in notes]
    return tuple(out)


def _has_eff(spec: Any, name: str) -> bool:
    return any(e.name == name for e in spec.efficiencies)


def _copy_bw(spec: Any, backend: str) -> tuple[float | None, str]:
    if spec.unified_memory:
        return None, ""
    link = spec.host_link_bw
    if link is None:
        return None, "host link bandwidth unsourced: copies not predicted"
    rate = link * spec.efficiency("host_copy").value
    if backend == "torch":
        rate *= spec.efficiency("pageable").value
    return rate, ""


def catalog_roofs(spec: Any, backend: str = "torch", band: float = 0.5,
                  band_basis: str = "default", dtypes: Iterable[str] = ("float32",)) -> Roofs:
    """Roofs of a catalog device: peaks times the catalog's documented efficiencies.

    ``dtypes`` only selects which caveats (fallback peaks) are attached as notes.
    """
    notes: list[str] = []
    if spec.memory_bw is None:
        raise UnsupportedError(
            f"{spec.key}: memory bandwidth is {spec.figure('memory_bw_gbs').status} in the "
            "catalog, so no prediction; for this machine's own CPU run chipfit calibrate")
    wanted = tuple(dtypes)
    matmul = _dtype_curves(spec, backend, "matmul", wanted, notes)
    conv = _dtype_curves(spec, backend, "conv", wanted, notes)
    if not matmul:
        raise UnsupportedError(f"{spec.key}: no usable compute peak in the catalog")
    vector = spec.peak("fp32")
    if vector is None:
        notes.append("vector FP32 peak unsourced: non-matrix ops are timed by memory traffic only")
    copy_bw, why = _copy_bw(spec, backend)
    notes += [why] if why else []
    precision = tuple(_precision_line(spec, d, backend, c) for d in wanted
                      for c in ("matmul", "conv"))
    us = 1e-6
    per_op = spec.efficiency("host_per_op_us").value * us
    return Roofs(
        key=spec.key, name=spec.name, kind=spec.kind, basis="catalog", matmul=matmul, conv=conv,
        bandwidth=((1.0, spec.memory_bw * spec.efficiency("memory").value),),
        vector_flops=vector * spec.efficiency("matmul").value if vector else None,
        host_per_op_s=per_op if backend == "torch" else 0.0,
        host_per_call_s=per_op if backend != "torch" else 0.0,
        kernel_floor_s=spec.efficiency("kernel_floor_us").value * us,
        asynchronous=spec.kind != "cpu", h2d_bw=copy_bw, d2h_bw=copy_bw, band=band,
        band_basis=band_basis, efficiency=_efficiency_rows(spec), notes=tuple(notes),
        memory_bytes=spec.memory_bytes, precision=precision, copy_known=not why,
        missing_peak=next((m for m in (_missing_peak(spec, d, backend) for d in wanted) if m), ""),
    )


def _precision_line(spec: Any, dtype: str, backend: str, op_class: str) -> str:
    """``float32 matmul: fp32 peak x 0.807 (why)``: the policy, stated for every prediction."""
    precision, why = _matmul_precision(spec, dtype, backend, op_class)
    if not why and precision == "tf32":
        why = ("cuDNN convolutions use TF32 by default (torch.backends.cudnn.allow_tf32)"
               if backend == "torch" else "XLA uses TF32 on GPUs by default")
    if not why and precision == "fp32" and spec.kind == "gpu":
        why = "torch keeps float32 matmuls in FP32 (torch.backends.cuda.matmul.allow_tf32=False)"
    eff = spec.efficiency("matmul")
    peak, fallback = _peak_for(spec, precision)
    if fallback and peak is not None:  # the peak that stands in, never the missing one's name
        used = next(p for p in ("fp32", "bf16") if spec.peak(p) == peak)
        if precision != "tf32":
            return (f"{dtype} {op_class}: {missing_peak_reason(precision)}: the {used} peak x "
                    f"{eff.value} stands in ({fallback}; efficiency: {eff.derivation})")
        precision, why = used, f"{fallback}; {why}"
    return (f"{dtype} {op_class}: {precision} peak x {eff.value} ({why or 'framework default'}; "
            f"efficiency: {eff.derivation})")


def _efficiency_rows(spec: Any) -> tuple[tuple[str, float, str], ...]:
    return tuple((e.name, e.value, f"{e.basis}: {e.derivation}") for e in spec.efficiencies)


def scaled(roofs: Roofs, count: int) -> Roofs:
    """``count`` identical devices working together on one call (data parallel, no comms)."""
    if count <= 1:
        return roofs
    mul = tuple((d, tuple((x, r * count) for x, r in c)) for d, c in roofs.matmul)
    conv = tuple((d, tuple((x, r * count) for x, r in c)) for d, c in roofs.conv)
    bw = tuple((x, r * count) for x, r in roofs.bandwidth)
    return replace(roofs, key=f"{count}x {roofs.key}", matmul=mul, conv=conv, bandwidth=bw,
                   vector_flops=roofs.vector_flops * count if roofs.vector_flops else None)

