"""Crossovers and sweep limits in words, for the terminal and the HTML report.

The analysis values never print themselves (STYLE.md 8); these functions turn them into
plain sentences, and :func:`crossover_panel` into a rich renderable. Every figure says where
it came from: ``measured`` (timed here), or ``predicted`` (the memory guard's estimate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rich.console import Group
from rich.text import Text

from chipfit.analysis.crossover import Crossing, Crossover, SeriesKey, SeriesSummary, SweepAnalysis
from chipfit.analysis.trust import LABEL
from chipfit.report.fmt import fmt_rate

__all__ = ["confidence_text", "crossing_item", "crossover_panel", "crossover_sentence",
           "fmt_best_rate", "fmt_position", "no_crossing_item", "series_name",
           "summary_sentence", "view_words", "workload_sentences"]

_VIEW_WORDS = {"resident": "data resident on the device",
               "end_to_end": "end to end, with host<->device copies"}


def fmt_position(x: float) -> str:
    """An interpolated size to three significant figures, with thousands separators."""
    if not math.isfinite(x):
        return "?"
    digits = 2 - int(math.floor(math.log10(abs(x)))) if x else 0
    value = round(x, digits)
    return f"{value:,.0f}" if digits <= 0 else f"{value:,.{digits}f}"


def view_words(c: Crossover) -> str:
    if c.view == "resident" and not c.copies:
        return "no copies: resident = end to end"
    return _VIEW_WORDS.get(c.view, c.view)


def series_name(key: SeriesKey, differs: str) -> str:
    """How a series is named in a pair: by its device, or by its dtype on its device."""
    return key.device if differs == "device" else f"{key.dtype} on {key.device}"


def _confidence(c: Crossover, crossing: Crossing) -> str:
    level = f"{c.level:.0%}"
    lo, hi = crossing.interval
    gap = (" (nothing was measured between the bracketing sizes, so the interval spans the "
           "gap)" if crossing.gap else "")
    if c.from_contended:
        return (f"{level} interval of the crossing {fmt_position(lo)}-{fmt_position(hi)}{gap}; "
                f"confidence {confidence_text(c, crossing)}")
    return (f"{level} interval of the crossing {fmt_position(lo)}-{fmt_position(hi)}{gap}; "
            f"{crossing.confidence:.0%} of {c.resamples} bootstrap resamples of the raw "
            "samples agree the faster one changes there")


def confidence_text(c: Crossover, crossing: Crossing, short: bool = False) -> str:
    """How far to trust a crossing: the bootstrap's share, or *low* when its points were
    measured while the machine was shared: resampling sees their noise, not the neighbours'
    slowdown, so even 100% of resamples agreeing is no confidence in the crossover."""
    if not c.from_contended:
        return f"{crossing.confidence:.0%}"
    if short:
        return "low (contended)"
    return (f"low: {LABEL}, so the resamples' {crossing.confidence:.0%} cannot tell the "
            "crossover from the neighbours' slowdown; re-measure when the machine is quiet")


def crossing_item(c: Crossover, crossing: Crossing, axis: str = "size") -> str:
    """One short line per crossing, for the numbered list under a plot: where, who is faster
    on each side, the interval and the confidence."""
    lo, hi = (fmt_position(v) for v in crossing.interval)
    below = series_name(crossing.faster_below, c.differs)
    above = series_name(crossing.faster_above, c.differs)
    where = "" if c.view == "resident" and not c.copies else f" [{view_words(c)}]"
    return (f"{axis} ≈ {fmt_position(crossing.x)} (measured {crossing.lower} and "
            f"{crossing.upper}){where}: {below} faster below, {above} above; "
            f"{c.level:.0%} interval {lo}-{hi}; confidence {confidence_text(c, crossing)}")


def no_crossing_item(c: Crossover) -> str:
    """One short line for a pair that never crosses."""
    pair = f"{series_name(c.a, c.differs)} vs {series_name(c.b, c.differs)}"
    if len(c.ratios) < 2:
        return f"{pair}: not compared (fewer than two sizes measured on both)"
    if c.faster is None:
        verdict = "no difference beyond the noise"
    else:
        verdict = f"{series_name(c.faster, c.differs)} faster throughout"
    busy = f" ({LABEL})" if c.from_contended else ""
    return f"{pair}: no crossover from {c.ratios[0].size} to {c.ratios[-1].size}; {verdict}{busy}"


def _crossing_words(c: Crossover, crossing: Crossing, axis: str) -> str:
    below = series_name(crossing.faster_below, c.differs)
    above = series_name(crossing.faster_above, c.differs)
    return (f"{axis} ≈ {fmt_position(crossing.x)} (between the measured {crossing.lower} and "
            f"{crossing.upper}): {below} is faster below, {above} above; "
            f"{_confidence(c, crossing)}")


def _no_crossing_words(c: Crossover, axis: str) -> str:
    if len(c.ratios) < 2:
        return "not compared: fewer than two sizes were measured on both"
    lo, hi = c.ratios[0].size, c.ratios[-1].size
    if c.faster is None:
        return (f"no crossover from {axis} = {lo} to {hi}: no size shows a difference beyond "
                "the measurement noise")
    decided = sum(r.winner != "tie" for r in c.ratios)
    ties = f"; the other {len(c.ratios) - decided} are within the noise" if decided < len(
        c.ratios) else ""
    return (f"no crossover from {axis} = {lo} to {hi}: {series_name(c.faster, c.differs)} is "
            f"faster at every size where the difference is measurable ({decided} of "
            f"{len(c.ratios)}{ties})")


def crossover_sentence(c: Crossover, axis: str = "size") -> str:
    """One sentence (measured) for the comparison ``c``."""
    a, b = series_name(c.a, c.differs), series_name(c.b, c.differs)
    head = f"{c.workload} [{c.a.mode}, {view_words(c)}] {a} vs {b}: "
    if c.from_contended:
        head += f"{LABEL} (the machine was shared while they ran; re-measure when quiet): "
    if c.kind == "none":
        return head + _no_crossing_words(c, axis) + " (measured)."
    if c.kind == "one":
        return head + "one crossover at " + _crossing_words(c, c.crossings[0], axis) + \
            " (measured)."
    parts = "; then at ".join(_crossing_words(c, x, axis) for x in c.crossings)
    return (head + f"{len(c.crossings)} crossovers - the faster one changes more than once, "
            f"so look at the plot before trusting either: at {parts} (measured).")


def fmt_best_rate(value: float, unit: str) -> str:
    if unit in ("FLOP/s", "B/s"):
        return fmt_rate(value, unit)
    return f"{value:,.4g} {unit}" if math.isfinite(value) else "-"


def summary_sentence(s: SeriesSummary, axis: str = "size") -> str:
    """Where a series stops fitting and where its throughput peaks, with provenance."""
    name = f"{s.device} {s.dtype} {s.mode}"
    if s.largest_ok is None:
        why = s.problem or (f"{s.first_oom} did not fit" if s.first_oom else "")
        fit = "no size ran" + (f" ({why})" if why else "")
    elif s.first_oom is not None:
        fit = (f"largest that fits: {axis} = {s.largest_ok}; {s.first_oom} did not fit (out "
               "of memory, or refused by the memory guard; larger sizes not tried) (measured)")
    else:
        fit = f"fits every size tried, up to {axis} = {s.largest_ok} (measured)"
    guard = (f"; the memory guard admits up to {axis} = {s.guard_limit} (predicted from the "
             "memory estimate)" if s.guard_limit else "")
    best = (f"; highest throughput at {axis} = {s.best_size}: "
            f"{fmt_best_rate(s.best_rate, s.rate_unit)} (measured)" if s.best_size else "")
    return f"{name}: {fit}{guard}{best}."


def workload_sentences(analysis: SweepAnalysis, workload: str,
                       axis: str = "size") -> tuple[list[str], list[str]]:
    """The crossover sentences and the per-series sentences of one workload."""
    return ([crossover_sentence(c, axis) for c in analysis.crossovers_of(workload)],
            [summary_sentence(s, axis) for s in analysis.summaries_of(workload)])


def _style(c: Crossover) -> str:
    return {"one": "bold green", "several": "bold yellow"}.get(c.kind, "")


def crossover_panel(analysis: SweepAnalysis, axes: Mapping[str, str] | None = None) -> Group:
    """Rich renderable: per workload, each crossover found (or none) and each series' limits."""
    parts: list[Text] = []
    if analysis.left_out:
        parts.append(Text(f"{analysis.left_out} point(s) measured while the machine was shared "
                          "are left out of the crossovers below (measured)", style="magenta"))
    for workload in analysis.workloads():
        axis = (axes or {}).get(workload, "size")
        parts.append(Text(f"\n{workload}: crossovers", style="bold underline"))
        crossovers = analysis.crossovers_of(workload)
        if not crossovers:
            parts.append(Text("  nothing to compare: fewer than two series ran (add devices "
                              "or dtypes)"))
        for c in crossovers:
            parts.append(Text("  " + crossover_sentence(c, axis), style=_style(c)))
        parts.append(Text(f"{workload}: limits and best throughput", style="bold underline"))
        for s in analysis.summaries_of(workload):
            parts.append(Text("  " + summary_sentence(s, axis)))
    return Group(*parts)
