"""Which measured points a finding may rest on: the one rule for contended points.

A point measured while the machine was shared (``Measurement.contended``, see
:mod:`chipfit.timing.contention`) times the neighbours as much as the workload. The rule,
applied by every consumer of points (crossovers, advice, anything that fits or ranks):

1. Contended points are left out.
2. A series (workload, device, dtype, mode) left with no quiet point keeps its contended
   points instead, and every finding drawn from it is labelled *from contended points*.

So a finding is never drawn from contended points without saying so, and a busy machine still
gives an answer, marked. Points whose state is unknown (files from before chipfit watched,
``contended is None``) count as quiet: there is no evidence against them.

Pure: numbers in, findings out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chipfit.results import ContentionSummary, Measurement
from chipfit.results import summarize_contention as summarize

__all__ = ["LABEL", "MAX_CHECK_ERROR", "ContentionSummary", "Screened", "calibration_refusal",
           "screen", "source_of", "summarize", "warning"]

LABEL = "from contended points"
#: A calibration whose own held-out checks (sizes it was not fitted on, predicted against
#: measured) miss by more than this median error is neither stored nor reused. Quiet fits on
#: the development machine check well inside it; one taken while two other processes loaded
#: the cores checked at 94% and then put predictions 7-10x off the local CPU.
MAX_CHECK_ERROR = 0.40
SeriesId = tuple[str, str, str, str]


def series_of(m: Measurement) -> SeriesId:
    return (m.workload, m.series_device, m.dtype, m.mode)


def is_contended(m: Measurement) -> bool:
    return m.ok and m.contended is True


@dataclass(frozen=True)
class Screened:
    """The points a finding may use, and what the rule did to the others."""

    kept: tuple[Measurement, ...]
    left_out: tuple[Measurement, ...]  # contended points dropped (their series has quiet ones)
    labelled: frozenset[SeriesId]  # series kept only with contended points: label findings

    def marked(self, *series: SeriesId) -> bool:
        """Whether a finding over ``series`` must say it comes from contended points."""
        return any(s in self.labelled for s in series)


def screen(measurements: Iterable[Measurement]) -> Screened:
    """Apply the rule (module docstring) to ``measurements``, keeping their order."""
    ms = list(measurements)
    quiet = {series_of(m) for m in ms if m.ok and not is_contended(m)}
    labelled = frozenset(series_of(m) for m in ms if is_contended(m) and series_of(m) not in quiet)
    kept = tuple(m for m in ms if not is_contended(m) or series_of(m) in labelled)
    left = tuple(m for m in ms if is_contended(m) and series_of(m) not in labelled)
    return Screened(kept, left, labelled)


def source_of(measurements: Iterable[Measurement]) -> str:
    """The provenance of a figure drawn from ``measurements`` that cannot leave any out (one
    device's points in a ranking): ``measured``, or ``measured, from contended points``."""
    return f"measured, {LABEL}" if any(is_contended(m) for m in measurements) else "measured"


def warning(measurements: Sequence[Measurement]) -> str | None:
    """One line naming the cause, or None for a quiet run: ``machine busy: load 4.8 on 2
    cores; 7 of 21 points contended (...)``."""
    s = summarize(measurements)
    if not s.contended:
        return None
    head = (f"machine busy: load {s.max_load:.1f} on {s.cores} cores" if s.cores
            else "machine busy")
    retried = (f"; {s.retried} re-measured after a back-off, {s.still_contended} stayed "
               "contended" if s.retried else "")
    return (f"{head}; {s.contended} of {s.points} points contended ({', '.join(s.causes)})"
            f"{retried}; analysis leaves them out or labels findings {LABEL!r}")


def calibration_refusal(device: str, check_error: float | None) -> str | None:
    """Why a calibration of ``device`` must not be stored or reused (None: it may)."""
    if check_error is None or check_error <= MAX_CHECK_ERROR:
        return None
    return (f"the calibration of {device} misses its own held-out checks by {check_error:.1%} "
            f"(limit {MAX_CHECK_ERROR:.0%}), so it would mislead every prediction: run chipfit "
            f"calibrate --devices {device} again when the machine is quiet")
