"""Rank processors for one model under an objective and constraints; attach the reasons.

Pure: it takes :class:`Evidence` (measured and predicted options) and returns a
:class:`Recommendation`. The numbers decide the ranking; the rules in
:mod:`chipfit.analysis.rules` explain it and flag caveats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from chipfit.analysis.evidence import Evidence, Option, Reason, Recommendation
from chipfit.analysis.roofline import missing_peak_reason
from chipfit.analysis.rules import evaluate
from chipfit.errors import UnknownNameError

__all__ = ["OBJECTIVES", "recommend"]


def _energy_key(o: Option) -> float:
    return o.joules_per_item if o.joules_per_item is not None else math.inf


def _cost_key(o: Option) -> float:
    value = o.usd_per_million
    return value if value is not None else math.inf


OBJECTIVES: dict[str, Callable[[Option], float]] = {
    "latency": lambda o: o.latency_s,
    "throughput": lambda o: -o.throughput,
    "cost": _cost_key,
    "energy": _energy_key,
}


def _excluded(o: Option, ev: Evidence, max_latency: float | None,
              budget: float | None) -> str | None:
    if not o.fits:
        need, have = (o.memory_need_bytes or 0) / 2**30, (o.memory_have_bytes or 0) / 2**30
        return f"does not fit: needs {need:.1f} GiB, has {have:.1f} GiB"
    if o.missing_peak:  # priced at a stand-in peak: no verdict may rest on it
        return missing_peak_reason(o.missing_peak)
    if max_latency is not None and o.latency_s > max_latency:
        return f"latency {o.latency_s * 1e3:.3g} ms exceeds --max-latency {max_latency * 1e3:.3g} ms"
    if budget is not None:
        spend = _spend(o, ev)
        if spend is None:
            return "no price known, so the budget cannot be checked"
        if spend > budget:
            return f"costs ${spend:,.2f}, over the ${budget:,.2f} budget"
    return None


def _spend(o: Option, ev: Evidence) -> float | None:
    """Dollars for the training run (with a training plan) or per 1M inferences."""
    if o.price_usd_hr is None:
        return None
    if ev.train_samples is not None:
        seconds = o.train_time_s(ev.train_samples, ev.epochs)
        return None if seconds is None else o.price_usd_hr * seconds / 3600
    return o.usd_per_million


def recommend(ev: Evidence, objective: str = "latency", *, max_latency: float | None = None,
              budget: float | None = None) -> Recommendation:
    """Rank ``ev.options`` by ``objective`` among those meeting the constraints."""
    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    key = OBJECTIVES[objective]
    excluded, eligible = [], []
    for option in ev.options:
        why = _excluded(option, ev, max_latency, budget)
        if why:
            excluded.append((option.label, why))
        else:
            eligible.append(option)
    if ev.train_samples is not None and objective in ("latency", "throughput"):
        key = _train_key(ev)
    ranked, ties, tie_break = rank(eligible, key, objective, ev)
    reasons: tuple[Reason, ...] = evaluate(ev)
    return Recommendation(ranked[0] if ranked else None, objective, ranked, reasons,
                          tuple(excluded), ties, tie_break)


#: Which objective breaks a tie on the primary one (never the device name).
SECONDARY = {"latency": ("cost", "energy"), "throughput": ("cost", "energy"),
             "cost": ("energy", "latency"), "energy": ("cost", "latency")}


def _overlap(a: float, band_a: float, b: float, band_b: float) -> bool:
    """Whether [a/(1+ba), a(1+ba)] and [b/(1+bb), b(1+bb)] intersect (positive values)."""
    lo_a, hi_a = a / (1 + band_a), a * (1 + band_a)
    lo_b, hi_b = b / (1 + band_b), b * (1 + band_b)
    return lo_a <= hi_b and lo_b <= hi_a


def rank(options: list[Option], key: Callable[[Option], float], objective: str,
         ev: Evidence | None = None) -> tuple[tuple[Option, ...], tuple[tuple[str, ...], ...], str]:
    """Options in order, the groups tied within their uncertainty bands, and the rule used.

    Options are sorted by ``key``; runs of options whose values lie within each other's
    bands (``Option.band``; measured ones have none) form a tie, ordered by the secondary
    objectives of :data:`SECONDARY` and then by the primary value. A tie is never broken by
    the device's name.
    """
    finite = sorted((o for o in options if math.isfinite(key(o))), key=key)
    rest = [o for o in options if not math.isfinite(key(o))]
    secondary = [OBJECTIVES[name] for name in SECONDARY[objective]]
    groups: list[list[Option]] = []
    for o in finite:
        group = groups[-1] if groups else None
        if group and all(_overlap(abs(key(g)), g.band, abs(key(o)), o.band) for g in group):
            group.append(o)
        else:
            groups.append([o])
    ordered: list[Option] = []
    ties = []
    for group in groups:
        if len(group) > 1:
            group.sort(key=lambda o: (*(f(o) for f in secondary), key(o)))
            ties.append(tuple(o.label for o in group))
        ordered += group
    why = (f"within each other's uncertainty: ordered by {' then '.join(SECONDARY[objective])}"
           if ties else "")
    return tuple(ordered + rest), tuple(ties), why


def _train_key(ev: Evidence) -> Callable[[Option], float]:
    """With a training plan, speed means time to train."""

    def key(o: Option) -> float:
        seconds = o.train_time_s(ev.train_samples or 0, ev.epochs)
        return seconds if seconds is not None else math.inf

    return key
