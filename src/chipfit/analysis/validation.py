"""Validation as values: predicted next to measured (local cases) and next to published
results (reference cases), the error statistics, and the leave-one-out check. Pure:
:mod:`chipfit.pipelines.validate` measures, traces and stores.

A local case measured while the machine was shared (contended), or whose samples spread too
far to trust their median (noisy), scores the neighbours rather than the predictor: it is
left out of the summary statistics, counted, and the summary says why. A device left with no
case that counts gets no median error at all (``refused`` says why), never one drawn from
busy points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from chipfit.analysis.roofline import Roofs
from chipfit.cost.records import MATRIX_CLASSES, WorkloadCosts

__all__ = ["EXCLUSIONS", "FORMAT", "NOISY_SPREAD", "VALIDATION_SCHEMA_VERSION", "Case",
           "ReferenceCase", "ValidationReport", "engine_roofs", "family", "finite_fields",
           "leave_one_out", "mape", "mean_ape", "optimized_stack", "retyped"]

# History: 1 = chipfit 0.1. (1, additive: cases gain ``contended``, ``spread`` and ``excluded``;
# each device's summary ``excluded``, ``excluded_why`` and ``refused``, and its ``cases`` and
# ``mape`` count only the cases left in; the summary gains ``excluded``.)
VALIDATION_SCHEMA_VERSION = 1
FORMAT = "chipfit-validation"
#: A case whose per-call times spread (IQR) over this share of their median is noisy: the
#: rule of :attr:`chipfit.results.Measurement.noisy`. A case stopped by its time budget with
#: a tighter spread still counts: its median is sound, only its CI is wider than the target.
NOISY_SPREAD = 0.10
#: Why a case is left out of the summary, in words.
EXCLUSIONS = {"contended": "measured while the machine was shared",
              "noisy": f"noisy (samples spread over {NOISY_SPREAD:.0%} of the median)"}


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
    noisy: bool = False  # contended, spread or CI target missed (Measurement.noisy)
    contended: bool = False  # measured while the machine was shared
    spread: float = math.nan  # IQR over median of the per-call times

    @property
    def error(self) -> float:
        if self.status != "ok" or not self.measured_s > 0:
            return math.nan
        return (self.predicted_s - self.measured_s) / self.measured_s

    @property
    def excluded(self) -> str | None:
        """Why the case is left out of the summary (a key of EXCLUSIONS), or None: it counts.
        A noisy case whose spread is unknown is left out too: nothing says it is sound."""
        if not math.isfinite(self.error):
            return None  # no error to count either way
        if self.contended:
            return "contended"
        if self.noisy and not self.spread <= NOISY_SPREAD:
            return "noisy"
        return None


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
    kind: str = ""  # the catalog kind of ``device`` (cpu, gpu, tpu), given by who made it

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

    def counted(self, device: str | None = None) -> list[Case]:
        """The local cases the summary statistics rest on: scored, and neither contended nor
        noisy."""
        return [c for c in self.cases if (device is None or c.device == device)
                and math.isfinite(c.error) and c.excluded is None]

    def left_out(self, device: str | None = None) -> dict[str, int]:
        """How many scored cases were left out of the summary, per reason (EXCLUSIONS)."""
        out: dict[str, int] = {}
        for c in self.cases:
            if (device is None or c.device == device) and c.excluded:
                out[c.excluded] = out.get(c.excluded, 0) + 1
        return out

    def refused(self, device: str) -> str | None:
        """Why ``device`` gets no median error (None: it gets one): it had scored cases, and
        every one was left out."""
        why = self.left_out(device)
        if self.counted(device) or not why:
            return None
        total = sum(why.values())
        words = ", ".join(f"{n} {EXCLUSIONS[k]}" for k, n in sorted(why.items()))
        return (f"no median error for {device}: every one of its {total} cases was left out "
                f"({words}); run chipfit validate again when the machine is quiet")

    def local_mape(self, device: str | None = None) -> float:
        return mape(c.error for c in self.counted(device))

    def local_mean_ape(self, device: str | None = None) -> float:
        return mean_ape(c.error for c in self.counted(device))

    def reference_mape(self, loo: bool = False, kinds: Sequence[str] | None = None) -> float:
        rows = [r for r in self.references if kinds is None or r.kind in kinds]
        return mape(r.loo_error if loo else r.error for r in rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "schema_version": VALIDATION_SCHEMA_VERSION,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "quick": self.quick, "devices": list(self.devices),
            "calibrations": dict(self.calibrations), "notes": list(self.notes),
            "summary": self.summary(),
            "cases": [{**finite_fields(asdict(c)), "error": _num(c.error),
                       "excluded": c.excluded} for c in self.cases],
            "references": [{**finite_fields(asdict(r)), "error": _num(r.error),
                            "loo_error": _num(r.loo_error)} for r in self.references],
        }

    def summary(self) -> dict[str, Any]:
        per_device = {}
        for d in self.devices:
            why = self.left_out(d)
            per_device[d] = {"mape": _num(self.local_mape(d)),
                             "mean_ape": _num(self.local_mean_ape(d)),
                             "cases": len(self.counted(d)), "excluded": sum(why.values()),
                             "excluded_why": why, "refused": self.refused(d)}
        why = self.left_out()
        return {
            "local": per_device,
            "excluded": {"cases": sum(why.values()), **{k: why.get(k, 0) for k in EXCLUSIONS},
                         "rule": "left out of every median and mean: "
                                 + "; ".join(f"{k}: {v}" for k, v in EXCLUSIONS.items())},
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
