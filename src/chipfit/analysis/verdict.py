"""The verdict: stay on the processor you have, or move to another one, and how sure.

Pure: it reads a :class:`Recommendation` and its :class:`Evidence` and returns a
:class:`Verdict` value; the words live in :mod:`chipfit.report.advise_view`, nowhere else.

A catalog device wins only when it is *clearly* better than the best device measured here:
by more than its prediction's uncertainty band, and by more than this machine's run-to-run
noise. Anything closer is a tie, and a tie means staying (moving costs money and effort).
Reasons that point the other way from the verdict are set aside, never shown beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from chipfit.analysis.evidence import Evidence, Option, Reason, Recommendation

__all__ = ["CLEAR_GAIN", "Verdict", "decide", "gain", "settle"]

# A gain under 25% is not called a win even for a measured pair: this shared 2-core host's
# speed drifts by 8-20% between runs of the same work (README, "What was measured here").
CLEAR_GAIN = 1.25

STAY, SWITCH, NONE = "stay", "switch", "none"


@dataclass(frozen=True)
class Verdict:
    """What to do, what it rests on, and whether the numbers are clear or a tie.

    ``speedup`` is the ratio the verdict's sentence states: how many times better ``best``
    (the device to use) is than the other side on the objective, e.g. 1.7 for "it is 1.7x
    faster" (below 1 only in a tie the rival wins by less than its band). ``gain`` is the
    raw ratio the decision is made on, always ``away`` (the best catalog device) over
    ``here`` (the best device measured on this machine): above 1 the catalog device is
    better, so a "stay" verdict has a gain below 1 (0.57 for "1.7x faster" here). ``margin``
    is the gain needed to call it clear (the prediction band and :data:`CLEAR_GAIN`,
    whichever is wider).
    """

    action: str  # stay | switch | none
    objective: str
    best: Option | None
    here: Option | None
    away: Option | None
    gain: float | None
    margin: float
    tie: bool
    supporting: tuple[Reason, ...] = ()
    set_aside: tuple[Reason, ...] = ()
    unpriced_here: bool = False  # the cost objective could not price this machine
    tied_with: tuple[Option, ...] = ()  # catalog devices as good as ``best`` within their bands

    @property
    def speedup(self) -> float | None:
        """How many times better ``best`` is than the other side on the objective: the
        ``1.7`` of "it is 1.7x faster" (for the latency objective, a speed-up; for cost or
        energy, times cheaper or more frugal). ``gain`` when switching, ``1 / gain`` when
        staying; None when the two are not comparable."""
        if self.gain is None or not self.gain > 0:
            return None
        return self.gain if self.action == SWITCH else 1.0 / self.gain


def _ratio(worse: float | None, better: float | None) -> float | None:
    if worse is None or better is None or not (better > 0 and math.isfinite(worse)):
        return None
    return worse / better


def gain(objective: str, here: Option, away: Option, ev: Evidence | None = None) -> float | None:
    """How many times better ``away`` is than ``here`` on ``objective`` (None: not comparable)."""
    if ev is not None and ev.train_samples is not None and objective in ("latency", "throughput"):
        return _ratio(here.train_time_s(ev.train_samples, ev.epochs),
                      away.train_time_s(ev.train_samples, ev.epochs))
    if objective == "latency":
        return _ratio(here.latency_s, away.latency_s)
    if objective == "throughput":
        return _ratio(away.throughput, here.throughput)
    if objective == "cost":
        return _ratio(here.usd_per_million, away.usd_per_million)
    if objective == "energy":
        return _ratio(here.joules_per_item, away.joules_per_item)
    return None


def _contradicts(reason: Reason, action: str, here: Option | None, away: Option | None,
                 ranked: tuple[Option, ...]) -> bool:
    """Whether ``reason`` argues against the verdict (shown beside it, it would confuse)."""
    if reason.favours == "multi-device":
        return False
    if reason.code == "recurrent-or-irregular" and _tpus_keep_up(ranked):
        return True  # "suits CPUs and GPUs better than TPUs", beside a TPU as fast as any GPU
    if action == STAY:
        return reason.favours != (here.kind if here is not None else "cpu")
    return reason.favours == "cpu" or (away is not None and reason.favours not in
                                        (away.kind, "gpu", "tpu"))


def _tpus_keep_up(ranked: tuple[Option, ...]) -> bool:
    """Whether the best TPU is not clearly slower than the best GPU (within CLEAR_GAIN)."""
    tpus = [o.latency_s for o in ranked if o.kind == "tpu"]
    gpus = [o.latency_s for o in ranked if o.kind == "gpu"]
    return bool(tpus and gpus) and min(tpus) <= min(gpus) * CLEAR_GAIN


def decide(rec: Recommendation, ev: Evidence) -> Verdict:
    """Stay on the best measured device, or switch to the best catalog one, and why."""
    here = next((o for o in rec.ranked if o.present), None)
    away = next((o for o in rec.ranked if not o.present), None)
    if rec.choice is None:
        return Verdict(NONE, rec.objective, None, here, away, None, CLEAR_GAIN, False)
    margin = max(CLEAR_GAIN, 1 + (away.band if away is not None else 0.0))
    g = gain(rec.objective, here, away, ev) if here is not None and away is not None else None
    unpriced = rec.objective == "cost" and here is not None and here.usd_per_million is None
    if here is None or (away is not None and g is None and rec.choice is away):
        action, tie = SWITCH, False
    elif away is None or g is None:
        action, tie = STAY, False
    elif g >= margin:
        action, tie = SWITCH, False
    else:
        action, tie = STAY, g > 1 / margin
    tied = _tied_with(rec, away) if action == SWITCH and away is not None else ()
    best = here if action == STAY else away
    supporting, aside = [], []
    for r in rec.reasons:
        (aside if _contradicts(r, action, here, away, rec.ranked) else supporting).append(r)
    return Verdict(action, rec.objective, best, here, away, g, margin, tie, tuple(supporting),
                   tuple(aside), unpriced, tied)


def _tied_with(rec: Recommendation, away: Option) -> tuple[Option, ...]:
    """The catalog devices the ranking found within ``away``'s band (its tie group): the
    ranking's stated tie-break put ``away`` first, and the verdict keeps that order."""
    group = next((g for g in rec.ties if away.label in g), ())
    return tuple(o for o in rec.ranked if not o.present and o is not away and o.label in group)


def settle(rec: Recommendation, ev: Evidence) -> tuple[Recommendation, Verdict]:
    """The recommendation as the verdict decided it: the verdict's device is the choice and
    the first row, whatever the raw ranking put first (a catalog device ahead by less than
    its band leaves the verdict on the device measured here). One question, one answer:
    the first line, ``choice`` and the table's first row name the same device."""
    verdict = decide(rec, ev)
    best = verdict.best
    if best is None or (rec.ranked and rec.ranked[0] is best and rec.choice is best):
        return rec, verdict
    ranked = (best, *(o for o in rec.ranked if o is not best))
    return replace(rec, choice=best, ranked=ranked), verdict
