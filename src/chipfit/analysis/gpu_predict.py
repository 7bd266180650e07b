"""A traced workload on a GPU: per-operator kernel models plus eager host overhead.

Input: the per-operator records of chipfit's torch trace (:class:`~chipfit.cost.records.
WorkloadCosts`, with each operator's shapes), a GPU's figures and the fitted model
(:class:`GpuModel`). Per operator, the kernel model of its class
(:mod:`chipfit.analysis.gpu_kernels`) gives device seconds at the unit the precision policy
picks (:mod:`chipfit.analysis.gpu_precision`). Host side, eager PyTorch pays a per-operator
cost before each kernel is queued; the GPU runs kernels in order while the host queues the
next ones, so each operator costs ``max(host_i, device_i)`` (the two-stage pipeline, op by
op: small operators are host-bound, large ones device-bound), and views/``nn.Module`` calls
add host time spread over the kernels. Pure arithmetic on frozen values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.analysis.gpu_kernels import (
    GpuFigures,
    GpuParams,
    attention_seconds,
    conv_seconds,
    elementwise_seconds,
    gemm_seconds,
    memory_seconds,
    rnn_seconds,
    rowwise_seconds,
)
from chipfit.analysis.gpu_precision import MATRIX, TENSOR_DTYPES, PrecisionChoice, gpu_precision
from chipfit.cost.records import DTYPE_BYTES

__all__ = ["GpuEstimate", "GpuModel", "HostCosts", "device_assumptions", "estimate",
           "missing_tensor_peak", "op_family", "op_seconds"]

_GEMM = {"mm", "addmm", "_addmm_activation", "linear", "matmul", "mv", "addmv", "dot", "vdot"}
_BATCHED = {"bmm", "baddbmm"}
_ATTENTION = {"_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
              "_scaled_dot_product_cudnn_attention", "_flash_attention_forward",
              "_efficient_attention_forward", "_scaled_dot_product_flash_attention_for_cpu",
              "scaled_dot_product_attention"}
_ROWWISE = {"_softmax": "softmax", "_log_softmax": "softmax", "_softmax_backward_data": "softmax",
            "_log_softmax_backward_data": "softmax"}
_EW_NAMES = {"add": "add", "sub": "add", "rsub": "add", "mul": "mul", "div": "div",
             "pow": "pow", "relu": "relu", "threshold_backward": "relu", "gelu": "gelu",
             "gelu_backward": "gelu", "tanh": "tanh", "tanh_backward": "tanh", "sigmoid": "tanh",
             "silu": "gelu", "exp": "tanh", "erf": "gelu", "sqrt": "div", "rsqrt": "div"}
RECURRENT_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


@dataclass(frozen=True)
class HostCosts:
    """Eager host cost per launched operator, by family (seconds), plus views and modules.

    ``per_kernel`` comes from the fitted per-operator floors of the kernel data (dispatch +
    launch + synchronisation of one eager call) less ``sync`` (the synchronisation a queued
    operator does not pay): the median over the kernel data's machines, the reference host.
    ``machines`` is each of those machines' host relative to it (its floors over the median
    floors, median over families: above 1 is a slower host), the evidence of how much a
    host moves eager costs. ``speed`` is the host this prediction assumes, relative to the
    reference (2: dispatches twice as fast); every cost is divided by it.
    """

    per_kernel: tuple[tuple[str, float], ...]
    view: float
    module: float
    source: str
    machines: tuple[tuple[str, float], ...] = ()
    speed: float = 1.0

    def kernel(self, family: str) -> float:
        table = dict(self.per_kernel)
        return table.get(family, table.get("elementwise", 15e-6)) / self.speed

    @property
    def view_s(self) -> float:
        return self.view / self.speed

    @property
    def module_s(self) -> float:
        return self.module / self.speed

    def at_speed(self, speed: float) -> HostCosts:
        """The same costs on a host ``speed`` times as fast as the reference."""
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"host speed must be a positive number, not {speed!r}")
        return replace(self, speed=float(speed))

    def machine_range(self) -> tuple[float, float]:
        """(fastest, slowest) machine of the kernel data relative to the reference host;
        (1, 1) when the fit kept none."""
        factors = [f for _, f in self.machines] or [1.0]
        return min(factors), max(factors)

    def described(self) -> str:
        """Which host the costs assume, in words (every host-bound note says it)."""
        fast, slow = self.machine_range()
        where = ("the median host of the kernel data's measurement servers"
                 + (f" (theirs ranged {fast:.2f}-{slow:.2f}x its per-operator cost)"
                    if self.machines else ""))
        if self.speed == 1.0:
            return where
        return f"a host {self.speed:g}x as fast as {where}"


@dataclass(frozen=True)
class GpuModel:
    """Fitted kernel parameters and host costs (package data ``gpu_model.json``)."""

    params: GpuParams
    host: HostCosts
    band: float
    band_basis: str
    provenance: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GpuEstimate:
    """One call on one GPU: seconds, the device and host parts, per class, the units used."""

    seconds: float
    device_s: float
    host_s: float
    by_class: tuple[tuple[str, float, int], ...]  # (class, seconds, kernels)
    precision: tuple[PrecisionChoice, ...]
    bound: str
    notes: tuple[str, ...] = field(default=())


def op_family(op: Any) -> str:
    """The kernel-data family whose host floor an operator pays."""
    if op.op in _GEMM:
        return "linear"
    if op.op in _BATCHED:
        return "bmm"
    if op.op_class in ("conv", "recurrent", "attention"):
        return "conv" if op.op_class == "conv" else "linear"
    if op.op_class == "norm":
        return "ln"
    if op.op in _ROWWISE:
        return "softmax"
    return "elementwise"


def _numel(shape: tuple[int, ...]) -> float:
    return float(math.prod(shape)) if shape else 1.0


def _gemm_dims(op: Any) -> tuple[float, float, float, float] | None:
    """(batch, m, n, k) of a GEMM operator from its recorded shapes (inputs, then output).

    ``mm(a, b)``, ``addmm(bias, a, b)``, ``bmm(a, b)`` and ``baddbmm(c, a, b)`` all end with
    ``a, b, out``, so the two matrices before the output are the operands.
    """
    mats = [s for s in op.shapes if len(s) >= 2]
    if len(mats) < 3:
        return None
    a, b = mats[-3], mats[-2]
    return float(_numel(a[:-2])), float(a[-2]), float(b[-1]), float(a[-1])


def _conv_dims(op: Any) -> tuple[float, ...] | None:
    shapes = [s for s in op.shapes if len(s) >= 3]
    if len(shapes) < 3:
        return None
    x, w, out = shapes[0], shapes[1], shapes[-1]
    if len(x) != 4 or len(w) != 4 or len(out) != 4:
        return None
    groups = max(1, x[1] // max(w[1], 1))
    stride = max(1, round(x[2] / max(out[2], 1)))
    return (x[0], x[1], out[1], w[2], out[2], out[3], stride, groups)


def _attention_dims(op: Any) -> tuple[float, float, float, float] | None:
    q, k = (op.shapes + ((), ()))[:2]
    if len(q) < 3 or len(k) < 3:
        return None
    return _numel(q[:-2]), float(q[-2]), float(k[-2]), float(q[-1])


def op_seconds(op: Any, dev: GpuFigures, p: GpuParams,
               precision: Callable[[str, str], PrecisionChoice]) -> float:
    """Device seconds of one occurrence of ``op`` (all its kernels)."""
    elem = DTYPE_BYTES.get(op.dtype, 4.0)
    choice = precision(op.dtype, op.op_class)
    gemm_kw = {"peak": choice.peak, "efficiency": choice.efficiency, "elem_bytes": elem}
    if op.op in _GEMM or op.op in _BATCHED:
        dims = _gemm_dims(op)
        if dims:
            return float(gemm_seconds(dev, p, *dims, **gemm_kw))
    if op.op_class == "conv" and "backward" not in op.op:
        dims = _conv_dims(op)
        if dims:
            b, cin, cout, kern, oh, ow, stride, groups = dims
            return float(conv_seconds(dev, p, b, cin, cout, kern, oh, ow, stride, groups=groups,
                                      **gemm_kw))
    if op.op in _ATTENTION:
        dims = _attention_dims(op)
        if dims:
            return float(attention_seconds(dev, p, *dims, **gemm_kw))
    if op.op_class == "recurrent" and op.variant.startswith("fused:"):
        return _rnn(op, dev, p, gemm_kw)
    if op.op_class in ("matmul", "conv", "attention", "recurrent") and op.flops:
        return _flops_fallback(op, dev, p, choice)
    return _memory_op(op, dev, p, elem)


def _rnn(op: Any, dev: GpuFigures, p: GpuParams, gemm_kw: Mapping[str, Any]) -> float:
    """``variant`` = ``fused:<mode>:<layers>:<directions>``; shapes[0] = (steps, batch, in)."""
    _, mode, layers, directions = op.variant.split(":")
    steps, batch, inputs = op.shapes[0][:3]
    hidden = op.shapes[-1][-1] // int(directions)
    return rnn_seconds(dev, p, int(steps), int(batch), int(inputs), int(hidden),
                       RECURRENT_GATES.get(mode, 4), int(layers), int(directions), **gemm_kw)


def _flops_fallback(op: Any, dev: GpuFigures, p: GpuParams, choice: PrecisionChoice) -> float:
    """A matrix operator without usable shapes: its FLOPs at a large square GEMM's rate."""
    side = max(64.0, (op.flops / 2.0) ** (1 / 3))
    t = gemm_seconds(dev, p, 1, side, side, side, peak=choice.peak, efficiency=choice.efficiency)
    return float(t) * op.flops / (2.0 * side ** 3)


def _memory_op(op: Any, dev: GpuFigures, p: GpuParams, elem: float) -> float:
    nbytes = op.bytes_moved
    if op.op in ("embedding", "index_select", "gather", "index") and op.shapes:
        nbytes = 2.0 * _numel(op.shapes[-1]) * elem + _numel(op.shapes[1 if len(op.shapes) > 1
                                                                       else 0]) * 8.0
    if op.op_class == "norm" and "layer_norm" not in op.op and "rms" not in op.op:
        # batch norm in eval mode is a per-channel affine map: one streaming pass
        elements = max((_numel(s) for s in op.shapes), default=nbytes / (2 * elem))
        return float(elementwise_seconds(dev, p, "mul", elements, nbytes))
    if op.op in _ROWWISE or op.op_class == "norm":
        shape = max(op.shapes, key=_numel) if op.shapes else (1, max(nbytes / 8, 1))
        cols = float(shape[-1]) if len(shape) else 1.0
        if op.op_class == "norm" and len(shape) == 4:  # batch/group norm over (N, C, H, W)
            cols = float(shape[2] * shape[3])
        rows = _numel(shape) / max(cols, 1.0)
        kind = "softmax" if op.op in _ROWWISE else "ln"
        return float(rowwise_seconds(dev, p, kind, rows, cols, elem))
    if op.op_class == "elementwise":
        name = _EW_NAMES.get(op.op.rstrip("_"), "add")
        elements = max((_numel(s) for s in op.shapes), default=nbytes / (3 * elem))
        return float(elementwise_seconds(dev, p, name, elements, nbytes))
    return float(memory_seconds(dev, p, nbytes))


def estimate(costs: Any, dev: GpuFigures, model: GpuModel, framework: str = "torch") -> GpuEstimate:
    """Predicted seconds of one eager call of ``costs`` on ``dev`` (see the module docstring)."""
    p = model.params
    choices: dict[tuple[str, str], PrecisionChoice] = {}

    def precision(dtype: str, op_class: str) -> PrecisionChoice:
        key = (dtype, op_class)
        if key not in choices:
            choices[key] = gpu_precision(dev, dtype, op_class, framework)
        return choices[key]

    total, device, host, by_class = eager_pipeline(
        costs, model.host, lambda o: op_seconds(o, dev, p, precision))
    bound = "launch" if host >= device else _device_bound(by_class)
    used = tuple(choices[k] for k in sorted(choices) if k[1] in ("matmul", "conv", "attention",
                                                                  "recurrent"))
    return GpuEstimate(total, device, host, tuple((c, v[0], int(v[1])) for c, v in by_class.items()),
                       used, bound)


def eager_pipeline(costs: Any, host_costs: HostCosts, device_seconds: Callable[[Any], float]
                   ) -> tuple[float, float, float, dict[str, list[float]]]:
    """One eager call as a two-stage pipeline, whatever prices the device side.

    The host spends ``host_costs`` on each launched operator (by family; views and module
    calls spread over the kernels) while the device runs the operators queued before it, so
    each operator costs ``max(host_i, device_i)``; the call ends when the device finishes the
    last one (its time is never hidden). ``device_seconds(op)`` prices one occurrence: the
    fitted kernel models for GPUs with architecture figures, the catalog roofline for every
    other accelerator, so every device kind pays the same eager host cost.
    Returns (seconds, device seconds, host seconds, {class: [device seconds, kernels]}).
    """
    kernels = [o for o in costs.ops if o.kernels]
    views = sum(o.count for o in costs.ops if not o.kernels)
    n_kernels = sum(o.count * o.kernels for o in kernels) or 1
    spread = (views * host_costs.view_s + costs.module_calls * host_costs.module_s) / n_kernels
    total = device = host = tail = 0.0
    by_class: dict[str, list[float]] = {}
    for o in kernels:
        t_dev = tail = device_seconds(o)
        t_host = host_costs.kernel(op_family(o)) * o.kernels + spread * o.kernels
        total += o.count * max(t_dev, t_host)
        device += o.count * t_dev
        host += o.count * t_host
        acc = by_class.setdefault(o.op_class, [0.0, 0])
        acc[0] += o.count * t_dev
        acc[1] += o.count * o.kernels
    total += tail
    if not kernels:
        host = views * host_costs.view_s + costs.module_calls * host_costs.module_s
        total = host
    return total, device, host, by_class


def _device_bound(by_class: Mapping[str, list[float]]) -> str:
    matrix = sum(v[0] for c, v in by_class.items() if c in ("matmul", "conv", "attention",
                                                             "recurrent"))
    rest = sum(v[0] for c, v in by_class.items()) - matrix
    return "compute" if matrix >= rest else "memory"



def _class_work(costs: Any) -> dict[str, tuple[int, int, float, float]]:
    """Per operator class of the launched operators: (operators, kernels, FLOPs, bytes), so
    a breakdown row says what work its time is for (the engine layer and ``--breakdown``
    read them)."""
    acc: dict[str, list[float]] = {}
    for o in costs.ops:
        if not o.kernels:
            continue
        row = acc.setdefault(o.op_class, [0, 0, 0.0, 0.0])
        row[0] += o.count
        row[1] += o.count * o.kernels
        row[2] += o.total_flops
        row[3] += o.total_bytes
    return {c: (int(v[0]), int(v[1]), float(v[2]), float(v[3])) for c, v in acc.items()}


def to_prediction(est: GpuEstimate, costs: Any, dev: GpuFigures, model: GpuModel, *,
                  key: str, name: str, transfer_s: float = 0.0, transfer_known: bool = True,
                  notes: tuple[str, ...] = ()) -> Any:
    """The estimate as a :class:`~chipfit.analysis.roofline.Prediction` (``predict``'s JSON
    shape), with the band from the held-out errors and the precision used, sourced."""
    from chipfit.analysis.roofline import ClassTime, Prediction

    matrix = {"matmul", "conv", "attention", "recurrent"}
    compute = sum(s for c, s, _ in est.by_class if c in matrix)
    memory = sum(s for c, s, _ in est.by_class if c not in matrix)
    launch = max(est.seconds - compute - memory, 0.0)
    parts = {"compute": compute, "memory": memory, "launch": launch, "transfer": transfer_s}
    work = _class_work(costs)
    breakdown = tuple(ClassTime(c, *work.get(c, (0, n, 0.0, 0.0)), s if c in matrix else 0.0,
                                0.0 if c in matrix else s, 0.0) for c, s, n in est.by_class)
    precision = tuple(f"{p.label()} ({p.why})" for p in est.precision)
    efficiency = tuple((f"{p.dtype}/{p.op_class} on {p.unit}", p.efficiency or 0.0, p.why)
                       for p in est.precision if p.efficiency)
    assumptions = tuple(dict.fromkeys(
        [f"assumption: {p.assumption}" for p in est.precision if p.assumption]
        + [f"assumption: {a}" for a in device_assumptions(dev, est)]))
    model_note = (f"GPU kernel models fitted on measured kernels of 5 NVIDIA GPUs (leave-one-"
                  f"GPU-out band); {dev.name}: {dev.sms} SMs, {dev.boost_mhz:.0f} MHz, "
                  f"{dev.mem_bw_gbs:.0f} GB/s, {dev.l2_mb:g} MB L2; eager host "
                  f"{est.host_s * 1e3:.3g} ms vs device {est.device_s * 1e3:.3g} ms per call")
    if est.host_s >= est.device_s:
        # host-bound: the host, not this GPU, sets the time; say which host is assumed
        assumptions = (*assumptions, f"assumption: the host CPU is {model.host.described()} "
                       f"(eager dispatch per operator: {model.host.source}); this call is "
                       "host-bound, so a faster or slower host moves it, the GPU does not "
                       "(--host-speed says yours)")
    return Prediction(
        hardware=key, hardware_name=name, kind="gpu", workload=costs.workload, size=costs.size,
        dtype=costs.dtype, mode=costs.mode, seconds=est.seconds,
        low_s=est.seconds / (1 + model.band), high_s=est.seconds * (1 + model.band),
        transfer_s=transfer_s, compute_s=compute, memory_s=memory, launch_s=launch,
        bound=max(parts, key=lambda k: parts[k]), basis="gpu-kernel-model", band=model.band,
        band_basis=model.band_basis, items=costs.items, breakdown=breakdown,
        efficiency=efficiency, notes=(model_note, *assumptions, *notes, *costs.notes),
        precision=precision,
        transfer_known=transfer_known or not costs.transfer_bytes,
        missing_peak=missing_tensor_peak(est.precision))


def device_assumptions(dev: GpuFigures, est: GpuEstimate) -> tuple[str, ...]:
    """What a prediction on ``dev`` takes from outside the kernel data's evidence (said in
    the row's notes, prefixed "assumption:")."""
    simt = any(p.peak is None and p.op_class in MATRIX for p in est.precision)
    out = []
    if simt and dev.ffma_issue_share > 0.75:
        from chipfit.analysis.gpu_kernels import SINGLE_ISSUE_SOURCE

        out.append(f"{dev.name}'s SMs issue one FP32 FMA per slot (no GPU of the kernel data "
                   "does): its SGEMM efficiency is calibrated on "
                   f"{SINGLE_ISSUE_SOURCE}")
    if simt and not dev.base_mhz and dev.tdp_w < 150:
        out.append(f"{dev.name} has no sourced base clock: its sustained clock under the "
                   "power cap is the fitted power term alone")
    return tuple(out)


def missing_tensor_peak(choices: tuple[PrecisionChoice, ...]) -> str:
    """The tensor peak a reduced-precision matrix operator needs and the GPU's figures lack
    ("bf16" on a T4): :func:`gpu_precision` then prices it on the FP32 lanes, a stand-in the
    row must show (``Prediction.missing_peak``)."""
    for p in choices:
        if p.op_class in MATRIX and p.dtype != "float32" and p.peak is None:
            return TENSOR_DTYPES.get(p.dtype, p.dtype)
    return ""
