"""Validation as values: predicted next to measured (local cases) and next to published
results (reference cases), the error statistics, and the leave-one-out check. Pure:
:mod:`chipfit.pipelines.validate` measures, traces and stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from chipfit.analysis.roofline import Roofs
from chipfit.cost.records import MATRIX_CLASSES, WorkloadCosts

__all__ = ["FORMAT", "VALIDATION_SCHEMA_VERSION", "Case", "ReferenceCase", "ValidationReport",
           "engine_roofs", "family", "finite_fields", "leave_one_out", "mape", "mean_ape", "optimized_stack", "retyped"]

VALIDATION_SCHEMA_VERSION = 1  # history: 1 = chipfit 0.1
FORMAT = "chipfit-validation"
def mape(errors: Iterable[float]) -> float:
    """Median absolute percentage error of relative errors (0.1 = 10%); NaN if none."""
    values = sorted(abs(e) for e in errors if math.isfinite(e))
    if not values:
        return math.nan
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def mean_ape(errors: Iterable[float]) -> float:
    values = [abs(e) for e in errors if math.isfinite(e)]
    return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class Case:
    """One local workload/size/device: predicted (from calibration) next to measured."""

    workload: str
    size: str
    dtype: str
    mode: str
    device: str
    predicted_s: float
    measured_s: float
    bound: str = ""
    basis: str = "calibrated"
    status: str = "ok"
    note: str = ""
    noisy: bool = False

    @property
    def error(self) -> float:
        if self.status != "ok" or not self.measured_s > 0:
            return math.nan
        return (self.predicted_s - self.measured_s) / self.measured_s


@dataclass(frozen=True)
class ReferenceCase:
    """One published result and chipfit's catalog prediction of it."""

    id: str
    model: str
    scenario: str
    stack: str
    device: str  # catalog key
    count: int
    batch: int
    precision: str
    metric: str  # throughput | latency
    unit: str
    published: float
    predicted: float
    bound: str
    source: str
    loo_predicted: float = math.nan
    note: str = ""

    @property
    def error(self) -> float:
        return (self.predicted - self.published) / self.published

    @property
    def loo_error(self) -> float:
        return (self.loo_predicted - self.published) / self.published


@dataclass(frozen=True)
class ValidationReport:
    cases: tuple[Case, ...]
    references: tuple[ReferenceCase, ...]
    started_at: str
    finished_at: str
    quick: bool
    devices: tuple[str, ...]
    calibrations: tuple[tuple[str, str], ...] = ()  # (device, created_at)
    notes: tuple[str, ...] = field(default=())

    def local_mape(self, device: str | None = None) -> float:
        return mape(c.error for c in self.cases if device is None or c.device == device)

    def local_mean_ape(self, device: str | None = None) -> float:
        return mean_ape(c.error for c in self.cases if device is None or c.device == device)

    def reference_mape(self, loo: bool = False, kinds: Sequence[str] | None = None) -> float:
        rows = [r for r in self.references if kinds is None or _kind(r.device) in kinds]
        return mape(r.loo_error if loo else r.error for r in rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "schema_version": VALIDATION_SCHEMA_VERSION,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "quick": self.quick, "devices": list(self.devices),
            "calibrations": dict(self.calibrations), "notes": list(self.notes),
            "summary": self.summary(),
            "cases": [{**finite_fields(asdict(c)), "error": _num(c.error)} for c in self.cases],
            "references": [{**finite_fields(asdict(r)), "error": _num(r.error),
                            "loo_error": _num(r.loo_error)} for r in self.references],
        }

    def summary(self) -> dict[str, Any]:
        per_device = {d: {"mape": _num(self.local_mape(d)),
                          "mean_ape": _num(self.local_mean_ape(d)),
                          "cases": sum(1 for c in self.cases if c.device == d and c.status == "ok")}
                      for d in self.devices}
        return {
            "local": per_device,
            "reference": {"mape": _num(self.reference_mape()),
                          "mape_accelerators": _num(self.reference_mape(kinds=("gpu", "tpu"))),
                          "loo_mape": _num(self.reference_mape(loo=True)),
                          "loo_mape_accelerators": _num(self.reference_mape(True, ("gpu", "tpu"))),
                          "rows": len(self.references)},
        }


def _num(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def finite_fields(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with non-finite floats as None (JSON has no NaN)."""
    return {k: _num(v) if isinstance(v, float) else v for k, v in d.items()}


def _kind(key: str) -> str:
    """The catalog kind (cpu, gpu, tpu) of a catalog key; "?" for one it does not hold."""
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    return catalog[key].kind if key in catalog else "?"


def retyped(costs: WorkloadCosts, dtype: str, factor: float) -> WorkloadCosts:
    """Every operator at ``dtype`` with bytes scaled by ``factor`` (AMP: fp16 tensors)."""
    ops = tuple(replace(o, dtype=dtype, bytes_moved=o.bytes_moved * factor) for o in costs.ops)
    return replace(costs, ops=ops, dtype=dtype)


def optimized_stack(costs: WorkloadCosts, dtype: str = "int8",
                    factor: float = 0.25) -> WorkloadCosts:
    """An inference engine's view: matrix operators only (the rest fused into them), in
    ``dtype`` with bytes scaled by ``factor``, launched as one program per call."""
    ops = tuple(replace(o, dtype=dtype, bytes_moved=o.bytes_moved * factor)
                for o in costs.ops if o.op_class in MATRIX_CLASSES and o.kernels)
    return replace(costs, ops=ops, dtype=dtype, program_calls=1, module_calls=0,
                   h2d_bytes=costs.h2d_bytes * factor, d2h_bytes=costs.d2h_bytes * factor,
                   method=costs.method + "+optimized")


def engine_roofs(roofs: Roofs) -> Roofs:
    """Host work of an engine: one dispatch per call, nothing per operator or module."""
    return replace(roofs, host_per_call_s=roofs.host_per_op_s or roofs.host_per_call_s,
                   host_per_op_s=0.0, host_per_view_s=0.0, host_per_module_s=0.0)


def _speed(value: float, metric: str) -> float:
    return value if metric == "throughput" else 1.0 / value


def family(case: ReferenceCase) -> str:
    """``mlperf`` (an optimised engine) or ``eager`` (PyTorch eager): scored apart."""
    return "mlperf" if case.scenario.startswith("mlperf") else "eager"


def leave_one_out(cases: list[ReferenceCase]) -> list[ReferenceCase]:
    ratios = {c.id: _speed(c.published, c.metric) / _speed(c.predicted, c.metric) for c in cases}
    out = []
    for c in cases:
        same = [o for o in cases if o.id != c.id and family(o) == family(c)]
        group = [o for o in same if o.model == c.model]
        pool = group if len(group) >= 2 else same
        if not pool:
            out.append(c)
            continue
        logs = sorted(math.log(ratios[o.id]) for o in pool)
        mid = len(logs) // 2
        scale = logs[mid] if len(logs) % 2 else (logs[mid - 1] + logs[mid]) / 2
        factor = math.exp(scale)
        loo = c.predicted * factor if c.metric == "throughput" else c.predicted / factor
        out.append(replace(c, loo_predicted=loo))
    return out
