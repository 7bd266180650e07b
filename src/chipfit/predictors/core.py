"""One predictor: traced costs + target + framework -> one :class:`Prediction`.

Every command that prices a device (``predict``, ``advise``, ``feed``, ``validate``, the
fleet, model configs and factories) asks :func:`predict_catalog` for catalog hardware and
:func:`predict_local` for this machine's calibrated devices; none chooses a route itself.

Routes (``Prediction.route``):

- ``gpu-kernel-model``: catalog GPUs with architecture figures (``gpu_arch.toml``): the
  per-kernel models fitted on measured GPU kernels (docs/GPU_MODELS.md).
- ``roofline``: every other catalog device (GPUs without architecture figures, TPUs, NPUs,
  CPUs): catalog peaks x documented efficiencies. A weaker route, labelled so.
- ``calibrated``: this machine's devices, on roofs measured here (``chipfit calibrate``).

One host model per stack, on every device kind: eager PyTorch on any accelerator (a GPU of
either route, a TPU through torch_xla, an NPU) pays the fitted per-operator dispatch of the
kernel data in the same two-stage pipeline (:func:`chipfit.analysis.gpu_predict.
eager_pipeline`); a compiled XLA program (JAX) pays one dispatch per call; a CPU runs host and
device work on the same cores. So no device wins a batch-1 eager model on an omitted host
cost, whichever route prices its device side.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chipfit.analysis.roofline import ClassTime, Prediction, Roofs, predict
from chipfit.errors import UnknownNameError

__all__ = ["CALIBRATED", "HOST_SPEEDS", "KERNEL_MODEL", "ROOFLINE", "assumption_notes",
           "band_for", "check_host_speed", "framework_for", "gpu_stratum", "widened_band",
           "predict_catalog", "predict_local", "route_for", "stratum_for", "sustained_share",
           "trace_flavour"]

KERNEL_MODEL = "gpu-kernel-model"
ROOFLINE = "roofline"
CALIBRATED = "calibrated"
#: Catalog kinds whose host queues work for a separate device (the eager pipeline applies).
ACCELERATOR_KINDS = frozenset({"gpu", "tpu", "npu"})
_MATRIX = frozenset({"matmul", "conv", "attention", "recurrent"})
#: Said in every row priced by the roofline route, and in the verdict's wording.
ROOFLINE_LABEL = "roofline only (no architecture figures: a weaker route)"


def _catalog() -> Any:
    from chipfit.hardware.catalog import load_catalog

    return load_catalog()


def route_for(key: str) -> str:
    """The route that prices catalog device ``key``."""
    from chipfit.hardware.gpu_arch import gpu_figures

    spec = _catalog()[key]
    return KERNEL_MODEL if spec.kind == "gpu" and key in gpu_figures() else ROOFLINE


def trace_flavour(kind: str, framework: str, local: bool = False) -> str:
    """Which trace a target needs: ``gpu`` (fused attention and recurrent kernels, as a CUDA
    or XLA build runs the model) for torch on any catalog accelerator, else the framework's
    own trace. Every accelerator gets the same trace, so routes see the same operators."""
    if not local and kind in ACCELERATOR_KINDS and framework == "torch":
        return "gpu"
    return framework


def framework_for(kind: str, backends: Any, local_backend: str | None = None) -> str:
    """The framework a target runs a workload with: a local device its own; a TPU JAX where
    the workload has a JAX builder (XLA is the TPU's native stack); everything else torch."""
    if local_backend is not None:
        return local_backend
    if kind == "tpu" and "jax" in backends:
        return "jax"
    return "torch"


def stratum_for(key: str, stack: str = "eager") -> str:
    """How far catalog device ``key`` is from the evidence its band was measured on."""
    if stack not in ("eager", ""):
        return "engine"
    spec = _catalog()[key]
    if spec.kind == "cpu":
        return "catalog-cpu"
    if route_for(key) != KERNEL_MODEL:
        return "roofline-only"
    from chipfit.predictors.fits import shipped_gpu_model

    return gpu_stratum(key, _fitted_gpus(shipped_gpu_model()))


def gpu_stratum(key: str, fitted: frozenset[str]) -> str:
    """A GPU with architecture figures, against the GPUs a kernel model was fitted on: one
    of them, an unseen GPU of a fitted architecture, a newer NVIDIA architecture, or another
    vendor's (``benchmarks/bands.py`` measures each stratum's errors out of fit)."""
    from chipfit.hardware.gpu_arch import gpu_figures

    figures = gpu_figures()
    dev = figures[key]
    if key in fitted:
        return "gpu-in-data"
    if dev.vendor != "NVIDIA":
        return "gpu-other-vendor"
    if dev.architecture in {figures[k].architecture for k in fitted if k in figures}:
        return "gpu-unseen-fitted-generation"
    return "gpu-newer-architecture"


def _fitted_gpus(model: Any) -> frozenset[str]:
    import json

    gpus = dict(model.provenance).get("gpus", "[]")
    try:
        return frozenset(json.loads(gpus))
    except ValueError:
        return frozenset()


def band_for(stratum: str, fallback: float | None = None, fallback_basis: str = ""
             ) -> tuple[float, str]:
    """The band of ``stratum`` from the shipped out-of-fit errors (``bands.json``)."""
    from chipfit.predictors.fits import shipped_bands

    entry = shipped_bands().get(stratum)
    if entry is not None:
        return float(entry["band"]), str(entry["basis"])
    if fallback is not None:
        return fallback, fallback_basis
    return 0.5, f"no out-of-fit evidence for stratum {stratum}: a default 50% band"


def predict_catalog(costs: Any, key: str, *, framework: str = "torch",
                    stack: str = "eager", host_speed: float = 1.0) -> Prediction:
    """Predict one call of ``costs`` on catalog device ``key`` through its route.

    ``costs`` must be traced with :func:`trace_flavour` of the device (a torch model for an
    accelerator: the ``gpu`` flavour). ``host_speed`` is the host CPU that queues eager
    PyTorch for an accelerator, relative to the kernel data's median host (2: dispatches
    twice as fast; :func:`check_host_speed`); where the call is host-bound its band also
    holds the spread of the kernel data's hosts. Raises
    :class:`~chipfit.errors.UnsupportedError` when the catalog lacks the figures the route
    needs for this dtype.
    """
    from chipfit.analysis.roofline import catalog_roofs

    catalog = _catalog()
    if key not in catalog:
        raise UnknownNameError("catalog device", key, list(catalog))
    spec = catalog[key]
    roofs = catalog_roofs(spec, framework, dtypes=(costs.dtype,))
    route = route_for(key)
    eager_accel = spec.kind in ACCELERATOR_KINDS and framework == "torch"
    calibration = 0.0  # the spread of a published calibration the row leans on
    host_speed = check_host_speed(host_speed)
    if route == KERNEL_MODEL:
        pred, calibration = _kernel_model(costs, key, framework, roofs, host_speed)
    elif eager_accel:
        pred = _roofline_eager(costs, roofs, host_speed)
    else:
        pred = predict(costs, roofs)  # a CPU (host + device on the same cores) or an XLA program
    stratum = stratum_for(key, stack)
    # without a shipped band, a kernel-model GPU keeps the model's own leave-one-GPU-out band
    band, basis = band_for(stratum, pred.band if route == KERNEL_MODEL else None,
                           pred.band_basis)
    if calibration:
        band, basis = widened_band(band, basis, calibration)
    if eager_accel and pred.host_s >= pred.device_s > 0:
        band, basis = _host_widened(band, basis)
    notes = pred.notes
    if route == ROOFLINE:
        notes = (*assumption_notes(pred.efficiency), *notes)
    if route == ROOFLINE and spec.kind != "cpu":
        notes = (f"{ROOFLINE_LABEL}: {spec.name} is priced by catalog peaks x efficiencies",
                 *notes)
    return replace(pred, band=band, band_basis=basis, low_s=pred.seconds / (1 + band),
                   high_s=pred.seconds * (1 + band), route=route, stratum=stratum,
                   notes=notes)


def assumption_notes(efficiency: Any) -> tuple[str, ...]:
    """``assumption: ...`` notes for the efficiencies a row borrows rather than measures
    (the catalog's derivation says "assumption": a TPU's matmul efficiency is the GPU
    median, for one), so a row says which of its numbers are assumed."""
    return tuple(f"assumption: {name} efficiency {value:g} ({why})"
                 for name, value, why in efficiency if "assumption" in str(why).lower())


def predict_local(costs: Any, roofs: Roofs) -> Prediction:
    """Predict one call on this machine's calibrated roofs (its band: the last validate)."""
    pred = predict(costs, roofs)
    return replace(pred, route=CALIBRATED, stratum="local-calibrated")


#: Why a band is widened, by default: the single-issue SGEMM calibration's spread.
_SGEMM_SPREAD = "spread of the published SGEMM figures the single-issue factor is calibrated on"


def widened_band(band: float, basis: str, spread: float, why: str = "") -> tuple[float, str]:
    """``band`` widened by an independent multiplicative ``spread`` (log errors added in
    quadrature), its basis saying why (``why``: by default, :data:`_SGEMM_SPREAD`)."""
    import math

    wide = math.expm1(math.hypot(math.log1p(band), math.log1p(spread)))
    return wide, f"{basis}, widened by the {why or f'+-{spread * 100:.0f}% ' + _SGEMM_SPREAD}"


def sustained_share(key: str) -> float:
    """The share of its boost clock catalog GPU ``key`` holds under dense math (its power cap,
    by the kernel models' fitted power term); 1 for devices without architecture figures."""
    from chipfit.analysis.gpu_kernels import sustained_fraction
    from chipfit.hardware.gpu_arch import gpu_figures
    from chipfit.predictors.fits import shipped_gpu_model

    dev = gpu_figures().get(key)
    return 1.0 if dev is None else sustained_fraction(dev, shipped_gpu_model().params)


#: The host speeds ``--host-speed`` accepts (relative to the kernel data's median host).
HOST_SPEEDS = (0.1, 10.0)


def check_host_speed(speed: Any) -> float:
    """``speed`` as a host speed, or :class:`~chipfit.errors.InvalidInputError` (one line)."""
    from chipfit.errors import InvalidInputError

    low, high = HOST_SPEEDS
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise InvalidInputError(f"host speed must be a number, not {speed!r}") from None
    if isinstance(speed, bool) or not low <= value <= high:  # NaN fails both comparisons
        raise InvalidInputError(f"host speed must be between {low:g} and {high:g} times the "
                                f"reference host, not {speed!r}")
    return value


def _host_widened(band: float, basis: str) -> tuple[float, str]:
    """A host-bound eager call moves with its host, which the kernel data shows varying from
    server to server: the band holds that spread too."""
    from chipfit.predictors.fits import shipped_gpu_model

    fast, slow = shipped_gpu_model().host.machine_range()
    spread = max(slow - 1.0, 1.0 / fast - 1.0)
    if spread <= 0:
        return band, basis
    return widened_band(band, basis, spread, f"{fast:.2f}-{slow:.2f}x spread of the kernel "
                        "data's hosts (this call is host-bound)")


def _kernel_model(costs: Any, key: str, framework: str, roofs: Roofs, host_speed: float = 1.0
                  ) -> tuple[Prediction, float]:
    """The kernel-model prediction and the calibration spread it leans on (0 where none:
    the spread of the single-issue SGEMM factor where FP32 matrix work runs on such SMs)."""
    from chipfit.analysis.gpu_kernels import single_issue_spread
    from chipfit.analysis.gpu_precision import MATRIX
    from chipfit.analysis.gpu_predict import estimate, to_prediction
    from chipfit.analysis.roofline import transfer_seconds
    from chipfit.hardware.gpu_arch import gpu_figures
    from chipfit.predictors.fits import shipped_gpu_model

    dev = gpu_figures()[key]
    notes = tuple(n for n in roofs.notes if "host link" in n)
    model = shipped_gpu_model()
    model = replace(model, host=model.host.at_speed(host_speed))
    est = estimate(costs, dev, model, framework)
    pred = to_prediction(est, costs, dev, model, key=key, name=dev.name,
                         transfer_s=transfer_seconds(costs, roofs),
                         transfer_known=roofs.copy_known, notes=notes)
    simt = any(p.peak is None and p.op_class in MATRIX for p in est.precision)
    spread = single_issue_spread(model.params) if simt and dev.ffma_issue_share > 0.75 else 0.0
    return replace(pred, host_s=est.host_s, device_s=est.device_s), spread


def _roofline_eager(costs: Any, roofs: Roofs, host_speed: float = 1.0) -> Prediction:
    """Eager PyTorch on an accelerator without kernel models: the roofline prices each
    operator's device time, the fitted eager host model its dispatch (the same pipeline as
    the kernel-model route, so the two routes differ only in the device side)."""
    from chipfit.analysis.gpu_predict import eager_pipeline
    from chipfit.analysis.roofline import _op_times, op_device_seconds, transfer_seconds
    from chipfit.predictors.fits import shipped_gpu_model

    model = shipped_gpu_model()
    host_costs = model.host.at_speed(host_speed)
    # a recurrent step's latency floor: the kernel models' fitted one (cuDNN on the five
    # GPUs of the kernel data); for other devices an assumption, stated in the note
    step = float(model.params["rnn_step_us"]) * 1e-6
    total, device, host, _ = eager_pipeline(costs, host_costs,
                                            lambda o: op_device_seconds(o, roofs, step))
    acc: dict[str, list[float]] = {}
    for o in costs.ops:
        a = acc.setdefault(o.op_class, [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0])
        a[0] += o.count
        if not o.kernels:
            continue
        compute, memory = _op_times(o, roofs)
        floors = o.kernels * roofs.kernel_floor_s  # the part of device time that is no roof
        if o.op_class == "recurrent":  # its sequential steps are compute time too
            compute = max(compute, op_device_seconds(o, roofs, step) - floors)
        a[1] += o.count * o.kernels
        a[2] += o.total_flops
        a[3] += o.total_bytes
        a[4 if compute >= memory else 5] += o.count * max(compute, memory)
        a[6] += o.count * floors
    breakdown = tuple(ClassTime(c, int(a[0]), int(a[1]), *a[2:]) for c, a in acc.items())
    compute = sum(b.compute_s for b in breakdown)
    memory = sum(b.memory_s for b in breakdown)
    launch = max(total - compute - memory, 0.0)
    parts = {"compute": compute, "memory": memory, "launch": launch}
    note = (f"eager host {host * 1e3:.3g} ms vs device {device * 1e3:.3g} ms per call "
            f"(host: {host_costs.described()}; {host_costs.source})")
    if any(o.op_class == "recurrent" for o in costs.ops):
        note += (f"; recurrent steps at least {step * 1e6:.3g} us each (the kernel models' "
                 "fitted cuDNN step floor, assumed for this device)")
    return Prediction(
        hardware=roofs.key, hardware_name=roofs.name, kind=roofs.kind, workload=costs.workload,
        size=costs.size, dtype=costs.dtype, mode=costs.mode, seconds=total, low_s=total,
        high_s=total, transfer_s=transfer_seconds(costs, roofs), compute_s=compute,
        memory_s=memory, launch_s=launch,
        bound=max(parts, key=lambda k: parts[k]), basis=roofs.basis, band=roofs.band,
        band_basis=roofs.band_basis, items=costs.items, breakdown=breakdown,
        efficiency=roofs.efficiency, notes=(note, *roofs.notes, *costs.notes),
        precision=roofs.precision, transfer_known=roofs.copy_known or not costs.transfer_bytes,
        host_s=host, device_s=device, missing_peak=roofs.missing_peak)
