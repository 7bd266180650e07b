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

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chipfit.results import ContentionSummary, Measurement
from chipfit.results import summarize_contention as summarize
from chipfit.timing.contention import OVERLOAD_FACTOR, MachineLoad

__all__ = ["LABEL", "MAX_CHECK_ERROR", "ContentionSummary", "Screened", "calibration_refusal",
           "heaviest_load", "screen", "source_of", "summarize", "warning"]

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


def heaviest_load(measurements: Iterable[Measurement] = (),
                  load: MachineLoad | None = None) -> MachineLoad | None:
    """The heaviest load relative to the CPUs among ``load`` (read now) and the loads stored
    with ``measurements`` (each point's evidence: ``load1`` against ``cpus``, or ``cores`` in
    evidence stored before ``cpus`` was)."""
    found = [load] if load is not None and math.isfinite(load.load1) and load.cpus >= 1 else []
    for m in measurements:
        numbers = dict(m.contention)
        load1, cpus = numbers.get("load1", math.nan), numbers.get("cpus", numbers.get("cores"))
        if cpus is not None and math.isfinite(load1) and math.isfinite(cpus) and cpus >= 1:
            found.append(MachineLoad(load1, int(cpus)))
    return max(found, key=lambda x: x.load1 / x.cpus, default=None)


def warning(measurements: Sequence[Measurement] = (),
            load: MachineLoad | None = None) -> str | None:
    """The one busy-machine warning of every command that measures (bench, sweep, advise,
    predict, validate, calibrate): one line naming the cause, or None for a quiet machine.

    ``machine busy: load 4.8 on 2 CPUs; 7 of 21 points contended (...)`` when points were
    marked (the heaviest load, now or stored, against the machine's CPUs); otherwise, when
    the load (``load``, read now, or stored with a point) is far above the CPUs
    (:func:`chipfit.timing.contention.overloaded`), ``machine busy: load 293.0 on 2 CPUs
    ...``: no window caught a neighbour, but every time measured now shares the CPUs.
    """
    s = summarize(measurements)
    heavy = heaviest_load(measurements, load)
    if s.contended:
        head = f"machine busy: {heavy}" if heavy is not None else "machine busy"
        retried = (f"; {s.retried} re-measured after a back-off, {s.still_contended} stayed "
                   "contended" if s.retried else "")
        return (f"{head}; {s.contended} of {s.points} points contended ({', '.join(s.causes)})"
                f"{retried}; analysis leaves them out or labels findings {LABEL!r}")
    if heavy is None or not heavy.overloaded:
        return None
    points = (f"none of the {s.points} points was marked contended, but their times may "
              "include the neighbours' work" if s.points else
              "times measured now include the neighbours' work")
    return (f"machine busy: {heavy} (at least {OVERLOAD_FACTOR:g}x the CPUs); {points}: "
            "measure again when the machine is quiet")


def calibration_refusal(device: str, check_error: float | None, contended: bool | None = None,
                        why: str = "") -> str | None:
    """Why a calibration of ``device`` must not be stored or reused (None: it may): its
    held-out checks miss by more than MAX_CHECK_ERROR, or it was measured while the machine
    was shared (``contended``; ``why``: the signals that fired). A contended calibration
    passing its checks is refused too: the checks are measured in the same busy window, so
    they can agree with a fit that is wrong for a quiet machine (one put a 70x30 matmul at
    281 us, measured at 8.6 us quiet)."""
    if check_error is not None and check_error > MAX_CHECK_ERROR:
        return (f"the calibration of {device} misses its own held-out checks by "
                f"{check_error:.1%} (limit {MAX_CHECK_ERROR:.0%}), so it would mislead every "
                f"prediction: run chipfit calibrate --devices {device} again when the machine "
                "is quiet")
    if contended:
        cause = f" ({why})" if why else ""
        return (f"the calibration of {device} was measured while the machine was shared"
                f"{cause}, so its rates time the neighbours too: run chipfit calibrate "
                f"--devices {device} again when the machine is quiet")
    return None
