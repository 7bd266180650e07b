"""Software stacks as an axis of prediction: a fused inference engine on top of eager.

The same chip runs a model several times faster under an inference engine (TensorRT, oneDNN
graphs behind PyTorch+AMX, ONNX Runtime's fused kernels) than under PyTorch eager. This module
turns *any* eager :class:`~chipfit.analysis.roofline.Prediction` into the prediction of a
fused engine on the same hardware, using only a per-class breakdown (operators, kernels,
FLOPs and bytes of each operator class: the eager prediction's own, or one rebuilt from the
traced per-operator records by :func:`from_operators`) and the hardware's catalog peaks. It
does not look inside the predictor, so it works with whichever predictor produced the eager
figure.

The engine model, per call:

- **fusion**: the operator classes in :data:`FUSED_CLASSES` (elementwise, normalisation,
  views, copies, reductions, pooling, Python overhead) are folded into their neighbouring
  matrix kernels (bias/activation epilogues, batch-norm folded into convolution weights,
  residual + layer-norm kernels): they launch nothing and move nothing of their own;
- **precision**: every remaining class moves its bytes at the engine's precision (``int8``:
  1/4 of float32's bytes; ``float16``: 1/2) and its matrix FLOPs run at that precision's dense
  catalog peak times a fitted **engine efficiency** ``e`` (one per stack family and
  precision);
- **roofline per class**: ``t_c = max(flops_c / (peak * e), bytes_c / bandwidth)``, with the
  bandwidth the catalog's memory bandwidth times its documented memory efficiency;
- **kernels**: each kept kernel costs a fitted floor ``k`` (launch plus tail of a small
  kernel; it dominates batch-1 latency and vanishes in large batches);
- **host**: no per-operator dispatch: one enqueue per call, overlapped with the device.

So ``t = sum_c t_c + kernels * k``. The free parameters are ``e`` per (stack family,
precision), ``k``, and, for the MLPerf BERT rows only, the share of the 384-token window that
carries real tokens (the engines skip padding; SQuAD questions plus contexts are shorter than
384 tokens): :func:`tokens_scaled` applies it (prediction applies the same share to a token
model's window: :func:`chipfit.predictors.engine.real_tokens`). :func:`fit_engine` fits them
to published results by least squares in log space; :func:`leave_one_out` scores each row
with parameters fitted on the others. Hardware without the precision's catalog peak has no
engine time (:func:`unknown_engine_prediction`): no other precision's peak stands in.
Everything here is pure arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chipfit.analysis.roofline import ClassTime, Prediction, missing_peak_reason

if TYPE_CHECKING:
    from chipfit.hardware.catalog import HardwareSpec

__all__ = ["ENGINE_STACKS", "FUSED_CLASSES", "EngineFit", "EngineHardware", "EngineRow",
           "engine_precision_lines", "engine_prediction", "fit_engine", "from_operators",
           "leave_one_out", "precision_bytes", "stack_family", "tokens_scaled",
           "unknown_engine_prediction"]

#: Predicted-only stacks (no local measurement): name -> what it stands for.
ENGINE_STACKS = {
    "tensorrt": "a fused inference engine on a GPU (TensorRT-class: fused kernels, int8/fp16 "
                "tensor cores, no per-operator host overhead)",
    "engine": "a fused inference engine on any catalog device (on a CPU: oneDNN/AMX graphs "
              "as in Intel's PyTorch+AMX MLPerf submissions)",
}
#: Operator classes an engine folds into neighbouring matrix kernels.
FUSED_CLASSES = ("elementwise", "norm", "view", "memory", "reduction", "pool", "python")
MATRIX_CLASSES = ("matmul", "conv", "attention", "recurrent")
_BYTES = {"int8": 1, "float8": 1, "float16": 2, "bfloat16": 2, "float32": 4}
_PEAK_NAME = {"int8": "int8", "float8": "fp8", "float16": "fp16", "bfloat16": "bf16",
              "float32": "fp32"}


def precision_bytes(precision: str) -> int:
    """Bytes per element at an engine precision (``int8`` 1, ``float16`` 2, ...)."""
    return _BYTES[precision]


def peak_name(precision: str) -> str:
    """The catalog peak field for an engine precision (``float16`` -> ``fp16``)."""
    return _PEAK_NAME[precision]


def stack_family(stack: str, kind: str) -> str:
    """Which fitted efficiency a (stack, hardware kind) uses: ``gpu`` or ``cpu`` engines."""
    return "cpu" if kind == "cpu" else "gpu"


@dataclass(frozen=True)
class EngineHardware:
    """What the engine model needs of a device: peak at the precision, effective bandwidth."""

    key: str
    name: str
    kind: str
    peak: float  # dense op/s at the engine precision, all devices together (0: missing)
    bandwidth: float  # achievable bytes/s, all devices together
    peak_note: str = ""
    # The precision's catalog peak when the catalog lacks it ("int8"): no other precision's
    # peak stands in, so the engine's time is unknown (Prediction.unknown) and the row takes
    # no part in a verdict
    missing_peak: str = ""
    peak_used: str = ""


@dataclass(frozen=True)
class EngineFit:
    """Fitted engine parameters and how they were obtained.

    ``efficiency`` maps ``"family/precision"`` (``gpu/int8``) to the fraction of the dense
    catalog peak a fused engine reaches; ``kernel_s`` is the per-kernel floor;
    ``token_fraction`` is the share of a padded sequence window that holds real tokens in the
    rows fitted on (applies only to predictions of those padded datasets).
    """

    efficiency: tuple[tuple[str, float], ...]
    kernel_s: float
    token_fraction: float
    rows: tuple[str, ...]
    basis: str

    def efficiency_for(self, family: str, precision: str) -> tuple[float, str]:
        """The efficiency for ``family/precision`` and a note if another one stands in."""
        table = dict(self.efficiency)
        key = f"{family}/{precision}"
        if key in table:
            return table[key], ""
        for alt in (f"{family}/int8", *sorted(table)):
            if alt in table:
                return table[alt], (f"no published {key} engine results to fit: the {alt} "
                                     f"efficiency ({table[alt]:.2f}) stands in")
        return 0.5, f"no engine efficiency fitted: 0.5 assumed for {key}"


def from_operators(eager: Prediction, ops: Iterable[Any]) -> Prediction:
    """``eager`` with its per-class breakdown rebuilt from the traced per-operator records
    (``op_class``, ``count``, ``kernels``, ``total_flops``, ``total_bytes``: a
    ``WorkloadCosts.ops``), so the engine sees the same work whatever the eager predictor
    puts in its own breakdown (a per-kernel GPU model may keep times only). Per-class times
    are kept from ``eager`` where it has the class."""
    acc: dict[str, list[float]] = {}
    for o in ops:
        a = acc.setdefault(o.op_class, [0, 0, 0.0, 0.0])
        a[0] += o.count
        a[1] += o.count * o.kernels
        a[2] += o.total_flops
        a[3] += o.total_bytes
    times = {c.op_class: c for c in eager.breakdown}
    classes = []
    for name, (count, kernels, flops, nbytes) in acc.items():
        t = times.get(name)
        classes.append(ClassTime(name, int(count), int(kernels), flops, nbytes,
                                 t.compute_s if t else 0.0, t.memory_s if t else 0.0,
                                 t.overhead_s if t else 0.0))
    return replace(eager, breakdown=tuple(classes))


def tokens_scaled(eager: Prediction, fraction: float) -> Prediction:
    """``eager`` with only ``fraction`` of each sequence computed (padding skipped).

    Per-token work (every class but attention) scales with ``fraction``; attention scores
    scale with its square. Kernel counts do not change.
    """
    if fraction == 1.0:
        return eager

    def scale(c: ClassTime) -> ClassTime:
        s = fraction ** 2 if c.op_class == "attention" else fraction
        return replace(c, flops=c.flops * s, bytes_moved=c.bytes_moved * s,
                       compute_s=c.compute_s * s, memory_s=c.memory_s * s)

    return replace(eager, breakdown=tuple(scale(c) for c in eager.breakdown))


def _engine_classes(eager: Prediction, hw: EngineHardware, efficiency: float, kernel_s: float,
                    byte_scale: float) -> list[ClassTime]:
    out = []
    for c in eager.breakdown:
        if c.op_class in FUSED_CLASSES or not c.kernels:
            continue
        matrix = c.op_class in MATRIX_CLASSES
        compute = c.flops / (hw.peak * efficiency) if matrix and c.flops else 0.0
        nbytes = c.bytes_moved * byte_scale
        memory = nbytes / hw.bandwidth if nbytes else 0.0
        roof = max(compute, memory)
        out.append(ClassTime(c.op_class, c.ops, c.kernels, c.flops, nbytes,
                             roof if compute >= memory else 0.0,
                             roof if compute < memory else 0.0, c.kernels * kernel_s))
    return out


def engine_seconds(eager: Prediction, hw: EngineHardware, fit: EngineFit, precision: str,
                   token_fraction: float = 1.0, eager_itemsize: int = 4) -> float:
    """Seconds per call of the engine model: ``engine_prediction(...).seconds``, quickly
    (NaN where the hardware lacks the precision's peak)."""
    if hw.missing_peak or not hw.peak:
        return math.nan
    efficiency = fit.efficiency_for(stack_family("", hw.kind), precision)[0]
    byte_scale = precision_bytes(precision) / eager_itemsize
    total = 0.0
    for c in eager.breakdown:
        if c.op_class in FUSED_CLASSES or not c.kernels:
            continue
        scale = token_fraction ** 2 if c.op_class == "attention" else token_fraction
        compute = c.flops * scale / (hw.peak * efficiency) if c.op_class in MATRIX_CLASSES else 0.0
        total += max(compute, c.bytes_moved * scale * byte_scale / hw.bandwidth) + c.kernels * fit.kernel_s
    return total


def engine_prediction(eager: Prediction, hw: EngineHardware, fit: EngineFit, *,
                      stack: str = "tensorrt", precision: str = "int8",
                      eager_itemsize: int = 4, band: float | None = None,
                      band_basis: str = "") -> Prediction:
    """The fused-engine prediction of the call ``eager`` predicts (see the module docstring).

    ``eager_itemsize`` is the byte width of the eager prediction's tensors (float32: 4).
    ``band`` defaults to the eager band. Hardware without the precision's peak gets
    :func:`unknown_engine_prediction`: no other precision's peak (FP32 lanes least of all)
    stands in for it.
    """
    if hw.missing_peak or not hw.peak:
        return unknown_engine_prediction(eager, hw, stack=stack, precision=precision,
                                         band_basis=band_basis)
    family = stack_family(stack, hw.kind)
    efficiency, note = fit.efficiency_for(family, precision)
    classes = _engine_classes(eager, hw, efficiency, fit.kernel_s,
                              precision_bytes(precision) / eager_itemsize)
    compute = sum(c.compute_s for c in classes)
    memory = sum(c.memory_s for c in classes)
    launch = sum(c.overhead_s for c in classes)
    seconds = compute + memory + launch
    parts = {"compute": compute, "memory": memory, "launch": launch}
    band = eager.band if band is None else band
    peak = hw.peak_used or peak_name(precision)
    notes = tuple(n for n in (note, hw.peak_note) if n) + (
        f"{stack} {precision}: fused engine on top of the eager prediction "
        f"(engine efficiency {efficiency:.2f} of the {peak} peak, "
        f"{fit.kernel_s * 1e6:.1f} us per fused kernel; {fit.basis})",)
    return replace(
        eager, hardware=hw.key, hardware_name=hw.name, dtype=precision, seconds=seconds,
        low_s=seconds / (1 + band), high_s=seconds * (1 + band), compute_s=compute,
        memory_s=memory, launch_s=launch, bound=max(parts, key=lambda k: parts[k]),
        basis=f"{eager.basis}+engine", band=band, band_basis=band_basis or eager.band_basis,
        breakdown=tuple(classes), notes=notes + eager.notes, stack=stack,
        efficiency=(("engine_efficiency", efficiency, f"fitted: {fit.basis}"),
                    ("engine_kernel_us", fit.kernel_s * 1e6, f"fitted: {fit.basis}")),
        precision=engine_precision_lines(classes, hw, stack, precision, efficiency),
        missing_peak=hw.missing_peak,
    )


def unknown_engine_prediction(eager: Prediction, hw: EngineHardware, *, stack: str,
                              precision: str, band_basis: str = "") -> Prediction:
    """The engine row of hardware whose catalog lacks ``precision``'s peak: no time (NaN,
    null in JSON), no band, ``unknown`` saying why. A stand-in peak (FP32 lanes for int8,
    say) would price another engine than the one asked for, several times off."""
    wanted = peak_name(precision)
    reason = missing_peak_reason(wanted)
    nan = math.nan
    note = (f"unknown: {reason}, so the {stack} {precision} engine on {hw.name} is not priced "
            f"(no other precision's peak stands in); the row takes no part in a ranking")
    lines = tuple(f"{precision} {c.op_class}: unknown: {reason} ({stack} engine, {precision} "
                  "kernels)" for c in eager.breakdown if c.op_class in MATRIX_CLASSES)
    return replace(
        eager, hardware=hw.key, hardware_name=hw.name, dtype=precision, seconds=nan,
        low_s=nan, high_s=nan, transfer_s=nan, compute_s=nan, memory_s=nan, launch_s=nan,
        bound="unknown", basis=f"{eager.basis}+engine", band=nan,
        band_basis=band_basis or eager.band_basis, breakdown=(), notes=(note,),
        stack=stack, efficiency=(), precision=lines, missing_peak=wanted, unknown=reason)


def engine_precision_lines(classes: Iterable[ClassTime], hw: EngineHardware, stack: str,
                           precision: str, efficiency: float) -> tuple[str, ...]:
    """What each matrix class of an engine row is priced at (never the eager float32
    policy the engine replaces): ``int8 conv: int8 peak x 0.49 (...)``."""
    at = f"{peak_name(precision)} peak x {efficiency:.2f}"
    return tuple(f"{precision} {c.op_class}: {at} ({stack} engine, {precision} kernels; "
                 "efficiency fitted on published MLPerf results)"
                 for c in classes if c.op_class in MATRIX_CLASSES)


# ------------------------------------------------------------------------------ fitting

@dataclass(frozen=True)
class EngineRow:
    """One published engine result, with what the model needs to predict it."""

    id: str
    family: str  # gpu | cpu
    precision: str
    eager: Prediction  # eager prediction of the published batch on the published device(s)
    hardware: EngineHardware
    metric: str  # throughput (items/s) | latency (s)
    published: float  # in items/s or seconds
    padded: bool = False  # the dataset pads sequences: token_fraction applies
    model: str = ""

    def predict(self, fit: EngineFit) -> Prediction:
        eager = tokens_scaled(self.eager, fit.token_fraction) if self.padded else self.eager
        return engine_prediction(eager, self.hardware, fit, precision=self.precision,
                                 stack="engine" if self.family == "cpu" else "tensorrt")

    def predicted(self, fit: EngineFit) -> float:
        """Items/s (throughput rows) or seconds (latency rows): the same arithmetic as
        :meth:`predict`, without building a Prediction (the fit calls this thousands of
        times)."""
        seconds = engine_seconds(self.eager, self.hardware, fit, self.precision,
                                 fit.token_fraction if self.padded else 1.0)
        return self.eager.items / seconds if self.metric == "throughput" else seconds

    def error(self, fit: EngineFit) -> float:
        return (self.predicted(fit) - self.published) / self.published

    def log_ratio(self, fit: EngineFit) -> float:
        """log(predicted speed / published speed)."""
        ratio = self.predicted(fit) / self.published
        return math.log(ratio if self.metric == "throughput" else 1.0 / ratio)


_BOUNDS = {"efficiency": (0.02, 1.0), "kernel_s": (0.0, 50e-6), "token_fraction": (0.1, 1.0)}


def _golden(f: Callable[[float], float], lo: float, hi: float, steps: int = 32) -> float:
    """Minimise a unimodal ``f`` on [lo, hi] by golden-section search."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    for _ in range(steps):
        c, d = b - g * (b - a), a + g * (b - a)
        if f(c) <= f(d):
            b = d
        else:
            a = c
    return (a + b) / 2


def _loss(rows: Sequence[EngineRow], fit: EngineFit) -> float:
    return sum(r.log_ratio(fit) ** 2 for r in rows)


def fit_engine(rows: Sequence[EngineRow], basis: str = "", *, rounds: int = 12,
               start: EngineFit | None = None) -> EngineFit:
    """Fit efficiency per (family, precision), kernel floor and token fraction to ``rows``.

    Least squares on log(predicted/published speed), by coordinate descent (golden-section
    search per parameter, until a round improves the loss by less than 1e-9). A parameter
    that no row constrains keeps its starting value:
    efficiency 0.5, kernel floor 5 us (the data README's CUDA launch floor), token fraction 1.
    """
    keys = sorted({f"{r.family}/{r.precision}" for r in rows})
    fit = start or EngineFit(tuple((k, 0.5) for k in keys), 5e-6, 1.0,
                             tuple(r.id for r in rows), basis)
    fit = replace(fit, rows=tuple(r.id for r in rows), basis=basis)
    latency = any(r.metric == "latency" for r in rows)
    padded = any(r.padded for r in rows)
    loss = _loss(rows, fit)
    for _ in range(rounds):
        for key in keys:
            fit = _fit_efficiency(rows, fit, key)
        if latency:
            best = _golden(lambda k, f=fit: _loss(rows, replace(f, kernel_s=k)),
                           *_BOUNDS["kernel_s"])
            fit = replace(fit, kernel_s=best)
        if padded:
            best = _golden(lambda t, f=fit: _loss(rows, replace(f, token_fraction=t)),
                           *_BOUNDS["token_fraction"])
            fit = replace(fit, token_fraction=best)
        loss, before = _loss(rows, fit), loss
        if before - loss < 1e-9:
            break
    return fit


def _fit_efficiency(rows: Sequence[EngineRow], fit: EngineFit, key: str) -> EngineFit:
    mine = [r for r in rows if f"{r.family}/{r.precision}" == key]

    def with_e(e: float) -> EngineFit:
        return replace(fit, efficiency=tuple((k, e if k == key else v) for k, v in fit.efficiency))

    lo, hi = _BOUNDS["efficiency"]
    best = math.exp(_golden(lambda x: _loss(mine, with_e(math.exp(x))), math.log(lo), math.log(hi)))
    return with_e(best)


def leave_one_out(rows: Sequence[EngineRow],
                  basis: str = "leave-one-out") -> list[tuple[EngineRow, EngineFit]]:
    """Each row with the parameters fitted on every *other* row."""
    out = []
    for row in rows:
        others = [r for r in rows if r.id != row.id]
        out.append((row, fit_engine(others, f"{basis}: fitted on {len(others)} published rows, "
                                            f"{row.id} left out")))
    return out


def median(values: Iterable[float]) -> float:
    xs = sorted(values)
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def hardware_from_spec(spec: HardwareSpec, precision: str, count: int = 1,
                       sustained: float = 1.0) -> EngineHardware:
    """An :class:`EngineHardware` from a catalog spec (``HardwareSpec``), ``count`` devices.

    ``sustained`` is the share of its boost clock the board holds under dense math (a 70 W
    T4 about half: :func:`chipfit.analysis.gpu_kernels.sustained_fraction`, which the
    caller evaluates): the peak an engine reaches a fraction of is the sustained one.
    A spec without ``precision``'s peak gets peak 0 and ``missing_peak`` set: its engine
    time is unknown (:func:`unknown_engine_prediction`), never priced at another peak."""
    wanted = peak_name(precision)
    peak = (spec.peak(wanted) or 0.0) * sustained
    if not spec.memory_bw:
        from chipfit.errors import UnsupportedError

        raise UnsupportedError(f"{spec.key}: the catalog lacks the memory bandwidth an "
                               "engine prediction needs")
    bandwidth = spec.memory_bw * spec.efficiency("memory").value
    name = spec.name if count == 1 else f"{count}x {spec.name}"
    key = spec.key if count == 1 else f"{count}x {spec.key}"
    missing = "" if peak else wanted
    note = (f"the {wanted} peak x {sustained:.2f}: the clock {spec.name} sustains under its "
            "power cap (the kernel models' fitted power term)" if peak and sustained < 1 else "")
    return EngineHardware(key, name, spec.kind, peak * count, bandwidth * count, note, missing,
                          "" if missing else wanted)


def summary(pairs: Sequence[tuple[EngineRow, EngineFit]]) -> Mapping[str, float]:
    """Median absolute errors of leave-one-out predictions: all, offline, per family."""
    errors = {r.id: abs(r.error(f)) for r, f in pairs}
    offline = [errors[r.id] for r, _ in pairs if r.metric == "throughput"]
    return {"all": median(errors.values()), "offline": median(offline),
            "gpu": median(errors[r.id] for r, _ in pairs if r.family == "gpu"),
            "cpu": median(errors[r.id] for r, _ in pairs if r.family == "cpu")}
