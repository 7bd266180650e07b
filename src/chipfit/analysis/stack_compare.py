"""Compare measured software stacks: each stack's median against eager's, same point.

Pure: measurements in, rows out. A "point" is (workload, size, device, dtype, mode); the
eager measurement of the same point is the baseline (on JAX devices the only stack, ``jit``,
has none).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chipfit.results import Measurement

__all__ = ["StackRow", "best_stack", "has_stacks", "stack_rows"]


@dataclass(frozen=True)
class StackRow:
    """One measured stack at one point, with eager's median beside it."""

    workload: str
    size: str
    device: str
    dtype: str
    mode: str
    stack: str
    measurement: Measurement
    eager_s: float = math.nan
    eager_contended: bool = False  # eager's point was measured while the machine was shared

    @property
    def contended(self) -> bool:
        """Either side measured while the machine was shared: the speed-up is not a finding."""
        return self.eager_contended or self.measurement.contended is True

    @property
    def speedup(self) -> float:
        """Eager's median over this stack's (2.0 = twice as fast as eager); NaN if either is
        missing."""
        m = self.measurement
        return self.eager_s / m.median_s if m.ok and self.eager_s > 0 else math.nan


def _point(m: Measurement) -> tuple[str, str, str, str, str]:
    return (m.workload, m.size, m.device, m.dtype, m.mode)


def has_stacks(measurements: Iterable[Measurement]) -> bool:
    """Whether any measurement ran on a stack other than eager/jit."""
    return any(m.stack not in ("eager", "jit") for m in measurements)


def stack_rows(measurements: Sequence[Measurement]) -> list[StackRow]:
    """Rows for every point that was measured on more than its default stack."""
    eager = {_point(m): m for m in measurements if m.stack == "eager" and m.ok}
    points = {_point(m) for m in measurements if m.stack not in ("eager", "jit")}
    rows = []
    for m in measurements:
        if _point(m) in points:
            base = eager.get(_point(m))
            rows.append(StackRow(*_point(m), m.stack, m, base.median_s if base else math.nan,
                                 bool(base is not None and base.contended)))
    return rows


def best_stack(rows: Sequence[StackRow], max_rel_diff: float = 0.05) -> StackRow | None:
    """The fastest measured stack whose outputs agree with eager's within ``max_rel_diff``
    (eager itself always qualifies)."""
    ok = [r for r in rows if r.measurement.ok and (
        r.stack == "eager" or (r.measurement.max_rel_diff is not None
                               and r.measurement.max_rel_diff <= max_rel_diff))]
    return min(ok, key=lambda r: r.measurement.median_s, default=None)
