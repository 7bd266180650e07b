"""Predict a workload on named hardware: catalog devices and this machine's own devices.

This is the orchestration behind ``chipfit predict``: resolve ``--hardware`` (catalog keys,
``local``, or device ids), extract the workload's costs once per size and framework, build
the roofs (calibrated for local devices, catalog peaks x efficiencies otherwise), predict,
and, for local devices, measure too so prediction and measurement stand side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chipfit.analysis.roofline import Prediction, Roofs, catalog_roofs, fit_checked
from chipfit.cost.records import WorkloadCosts
from chipfit.errors import UnknownNameError, UsageError
from chipfit.execute.costs import extract_costs, prediction_costs
from chipfit.predictors import framework_for, predict_catalog, predict_local, trace_flavour
from chipfit.predictors.fits import local_band

__all__ = ["PredictRow", "Target", "predict_workload", "resolve_hardware", "roofs_for"]

LOCAL = "local"


@dataclass(frozen=True)
class Target:
    """One ``--hardware`` entry: a catalog device or a local device id."""

    key: str
    local: bool
    kind: str
    name: str


@dataclass(frozen=True)
class PredictRow:
    """A prediction, with the measurement beside it where the device is here."""

    target: Target
    prediction: Prediction
    measurement: Any = None  # chipfit.results.Measurement for local devices

    @property
    def error(self) -> float:
        m = self.measurement
        if m is None or not m.ok:
            return math.nan
        return (self.prediction.seconds - m.median_s) / m.median_s

    def __str__(self) -> str:
        """One line: the prediction with its band and bound, and the measurement beside it
        where the device is here."""
        from chipfit.timing.units import fmt_seconds

        p = self.prediction
        if p.unknown:
            return (f"{p.workload} {p.size} on {self.target.key} ({p.stack} {p.dtype} "
                    f"{p.mode}): unknown: {p.unknown}")
        text = (f"{p.workload} {p.size} on {self.target.key} ({p.dtype} {p.mode}): "
                f"{fmt_seconds(p.seconds)} per call predicted ({fmt_seconds(p.low_s)} to "
                f"{fmt_seconds(p.high_s)}, {p.bound}-bound, {p.basis})")
        m = self.measurement
        if m is not None and m.ok:
            text += f"; measured {fmt_seconds(m.median_s)}"
        return text


class Predictions(list):  # type: ignore[type-arg]
    """The rows :func:`predict_workload` returns (a list of :class:`PredictRow`) whose
    ``str()`` is one line per row, like ``str(advice)``."""

    def __str__(self) -> str:
        return "\n".join(str(row) for row in self) if self else "no predictions"


def resolve_hardware(texts: Iterable[str], discovery: Any = None) -> list[Target]:
    """Catalog keys, ``local`` (every local device) and local device ids, in order, deduped."""
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    targets: list[Target] = []
    for text in (t.strip() for t in texts if t.strip()):
        if text == LOCAL or ":" in text:
            targets += _local_targets(text, discovery)
        elif text in catalog:
            spec = catalog[text]
            targets.append(Target(spec.key, False, spec.kind, spec.name))
        else:
            catalog[text]  # raises UnknownNameError with a did-you-mean over catalog keys
    seen: set[str] = set()
    return [t for t in targets if not (t.key in seen or seen.add(t.key))]


def _local_targets(text: str, discovery: Any) -> list[Target]:
    from chipfit.discovery import discover, resolve_devices

    discovery = discovery or discover()
    if text == LOCAL:
        return [Target(d.ref, True, d.kind, d.name) for d in discovery.devices]
    ref = resolve_devices([text], discovery)[0]
    info = discovery.get(str(ref.base))
    return [Target(str(ref), True, info.kind if info else "cpu", info.name if info else str(ref))]


def roofs_for(target: Target, backend: str, dtype: str = "float32", *,
              auto_calibrate: bool = True, quick: bool = True,
              progress: Callable[[str], None] | None = None) -> Roofs:
    """Calibrated roofs for a local device (calibrating first if needed), else catalog roofs."""
    if not target.local:
        from chipfit.hardware.catalog import load_catalog

        return catalog_roofs(load_catalog()[target.key], backend, dtypes=(dtype,))
    from chipfit.analysis.calibration import roofs_from_calibration
    from chipfit.pipelines.calibrate import calibrate, load_calibration, reusable, save_calibration

    cal = reusable(load_calibration(target.key))  # one that misses its checks: refused
    if cal is None:
        if not auto_calibrate:
            raise UsageError(f"{target.key} is not calibrated yet, and predicting it without "
                             f"measuring needs a calibration: run chipfit calibrate --devices "
                             f"{target.key}")
        if progress:
            progress(f"calibrating {target.key} first (once; chipfit calibrate redoes it)")
        cal = calibrate(target.key, quick=quick, dtypes=_cal_dtypes(dtype))
        save_calibration(cal)
    band, basis = local_band(target.key)
    roofs = (roofs_from_calibration(cal) if band is None
             else roofs_from_calibration(cal, band, basis))
    if dtype not in dict(cal.matmul):
        note = (f"{dtype} is not calibrated on {target.key}: float32 rates are used (run "
                f"chipfit calibrate --devices {target.key} --dtypes float32,{dtype})")
        roofs = replace(roofs, notes=roofs.notes + (note,))
    return roofs


def _cal_dtypes(dtype: str) -> tuple[str, ...]:
    return ("float32",) if dtype == "float32" else ("float32", dtype)


def backend_for(target: Target, workload: Any) -> str:
    """The framework a target runs the workload with (:func:`chipfit.predictors.framework_for`)."""
    return framework_for(target.kind, workload.backends(),
                         target.key.split(":", 1)[0] if target.local else None)


def predict_workload(workload: str, sizes: Sequence[str], hardware: Sequence[str] = (LOCAL,), *,
                     dtype: str = "float32", mode: str | None = None, tensors: str = "auto",
                     measure: bool = True, timing: Any = None, stack: str = "eager",
                     host_speed: float = 1.0,
                     progress: Callable[[str], None] | None = None) -> list[PredictRow]:
    """Predict ``workload`` at each size on each hardware target; measure the local ones.

    ``host_speed``: the host CPU queueing eager PyTorch on a catalog accelerator, relative
    to the kernel data's median host (:func:`chipfit.predictors.check_host_speed`).

    ``stack`` other than ``eager`` (``tensorrt``, ``engine``: :mod:`chipfit.analysis.stacks`)
    predicts a fused inference engine at precision ``dtype`` (``int8``, ``float16``) on top of
    the float32 eager prediction, for catalog hardware only.
    """
    from chipfit.discovery import backends_named, discover
    from chipfit.errors import InvalidInputError
    from chipfit.predictors import check_host_speed
    from chipfit.predictors.engine import engine_precision, resolve_stack, token_window
    from chipfit.spec import parse_dtype
    from chipfit.workloads import get_workload

    host_speed = check_host_speed(host_speed)
    wl = get_workload(workload)
    stack = resolve_stack(stack)
    precision = engine_precision(dtype) if stack != "eager" else ""
    dtype = "float32" if stack != "eager" else parse_dtype(dtype)
    mode = mode or wl.modes[0]
    if mode not in wl.modes:
        raise InvalidInputError(f"{wl.name} has no mode {mode!r} (modes: {', '.join(wl.modes)})")
    chosen = [wl.parse_size(s) for s in sizes] or [wl.parse_size(s) for s in wl.sizes(True)]
    needs_local = any(h == LOCAL or ":" in h for h in hardware)
    if stack != "eager" and needs_local:
        raise InvalidInputError(f"the {stack} stack is predicted for catalog hardware only; "
                                "measure this machine's stacks with chipfit bench --stacks")
    if stack != "eager" and mode != "inference":
        raise InvalidInputError(f"the {stack} stack runs inference only (got mode {mode!r})")
    named = None if LOCAL in hardware else backends_named(h for h in hardware if ":" in h)
    discovery = discover(named) if needs_local else None  # only the frameworks named
    targets = resolve_hardware(hardware, discovery)
    costs: dict[tuple[str, str], WorkloadCosts] = {}
    rows, skipped = [], []
    runnable = [t for t in targets if backend_for(t, wl) in wl.backends()]
    for target in targets:
        if target not in runnable:
            if any(h == target.key for h in hardware) or not runnable:
                raise UnknownNameError(f"device for {wl.name}", target.key,
                                       [t.key for t in runnable])
            continue  # "local" expanded to a framework this workload has no builder for
        backend = backend_for(target, wl)
        try:  # --no-measure never measures, so it never calibrates either
            roofs = (roofs_for(target, backend, dtype, auto_calibrate=measure, progress=progress)
                     if target.local else None)
        except UsageError as exc:
            if measure:
                raise
            skipped.append(str(exc))
            continue
        gap = [] if target.local else _catalog_gap(target.key)
        if gap:  # a device without a figure it needs: a note, and the others are answered
            skipped.append(f"{target.key}: no {' or '.join(gap)} in the catalog (chipfit "
                           "catalog --check lists every gap)")
            continue
        flavour = trace_flavour(target.kind, backend, target.local)
        for size in chosen:
            if (size, flavour) not in costs:
                if progress:
                    progress(f"counting {wl.name} {size} operators ({flavour})")
                costs[size, flavour] = _extract(wl, size, dtype, mode, backend, tensors,
                                                flavour == "gpu")
            row = _row(wl, target, roofs, costs[size, flavour], measure, timing, discovery,
                       progress, host_speed)
            rows.append(_engine_row(row, stack, precision, costs[size, flavour],
                                    token_window(wl)) if stack != "eager" else row)
    if skipped and not rows:
        raise UsageError("; ".join(skipped))
    for why in skipped if progress else ():
        progress(f"not predicted: {why}")
    return Predictions(rows)


def _catalog_gap(key: str) -> list[str]:
    """The core figures catalog device ``key`` lacks (empty: it can be predicted)."""
    from chipfit.hardware.catalog import load_catalog

    return load_catalog()[key].missing()


def _extract(wl: Any, size: str, dtype: str, mode: str, backend: str, tensors: str,
             gpu: bool) -> WorkloadCosts:
    """Costs as the CPU runs the workload, or (``gpu``) as a CUDA build does: fused
    attention and recurrent kernels (:mod:`chipfit.workloads.gpu_trace`). ``auto`` is the
    trace every prediction uses (:func:`chipfit.execute.costs.prediction_costs`)."""
    if tensors == "auto":
        return prediction_costs(wl, size, dtype, mode, backend, gpu=gpu)
    if not gpu:
        return extract_costs(wl, size, dtype, mode, backend, tensors=tensors)
    from chipfit.workloads.gpu_trace import gpu_kernels

    with gpu_kernels():
        return extract_costs(wl, size, dtype, mode, backend, tensors=tensors)


def _engine_row(row: PredictRow, stack: str, precision: str, costs: WorkloadCosts,
                tokens: Any = None) -> PredictRow:
    """``row``'s eager catalog prediction as a fused-engine stack (chipfit.pipelines.engines),
    on the traced operators' work (``costs``); a token model at the real tokens ``tokens``
    (:func:`chipfit.predictors.engine.token_window`) says."""
    from chipfit.analysis.stacks import from_operators
    from chipfit.hardware.catalog import load_catalog
    from chipfit.predictors.engine import predict_engine

    spec = load_catalog()[row.target.key]
    eager = from_operators(row.prediction, costs.ops)
    return replace(row, prediction=predict_engine(eager, spec, stack, precision,
                                                  tokens=tokens))


def _row(wl: Any, target: Target, roofs: Roofs | None, costs: WorkloadCosts, measure: bool,
         timing: Any, discovery: Any, progress: Callable[[str], None] | None,
         host_speed: float = 1.0) -> PredictRow:
    if target.local:
        pred = predict_local(costs, roofs)
        have = roofs.memory_bytes
    else:
        from chipfit.hardware.catalog import load_catalog

        pred = predict_catalog(costs, target.key, framework=costs.backend,
                               host_speed=host_speed)
        have = load_catalog()[target.key].memory_bytes
    pred = fit_checked(pred, wl.memory_estimate(costs.size, costs.dtype, costs.mode), have)
    notes = []
    if target.kind == "tpu" and costs.backend == "torch":
        notes.append(f"{wl.name} has no JAX builder: predicted from torch's eager operator "
                     "graph (torch_xla would trace and fuse it: an upper bound on time)")
    if any(notes):
        pred = replace(pred, notes=tuple(n for n in notes if n) + pred.notes)
    measurement = None
    if target.local and measure:
        from chipfit.execute._worker import run_here  # watched for contention
        from chipfit.spec import DeviceRef, Job, TimingConfig

        if progress:
            progress(f"measuring {wl.name} {costs.size} on {target.key}")
        job = Job(wl.name, costs.size, DeviceRef.parse(target.key), costs.dtype, costs.mode,
                  timing or TimingConfig.quick())
        measurement = run_here(job, discovery)
    return PredictRow(target, pred, measurement)
