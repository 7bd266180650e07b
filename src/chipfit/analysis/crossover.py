"""Crossovers: the size at which the faster of two series changes, and how sure that is.

A *series* is one (workload, device, dtype, mode) measured over a ladder of sizes and read
in one *view*: ``resident`` (inputs already on the device) or ``end_to_end`` (plus the
host<->device copies). Any two series of one workload, mode and view that differ in exactly
one of device or dtype are compared by the same code, whether the pair is a CPU and a GPU,
torch's CPU at one thread and at all threads, torch and JAX on one CPU, or float32 and
bfloat16 on one device.

Method. At every size both series measured, the per-call time ratio ``t_a / t_b`` is the
ratio of the medians, and its uncertainty comes from a percentile bootstrap (Efron and
Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13): the raw per-call samples of
each series are resampled with replacement, independently, and the ratio of the resampled
medians recomputed ``resamples`` times. A size is *decided* for ``a`` when no more than
``(1 - level) / (2 k)`` of the resampled ratios are at or above 1 (for ``b``, below 1), with
``k`` the number of sizes compared: the Bonferroni correction, so that the chance of any size
being decided wrongly stays below ``1 - level``. Otherwise the size is a tie, and a tie never
makes a crossover or a winner, so noise that flips the medians back and forth is reported as
no difference rather than as several crossovers.

A crossover lies between two consecutive decided sizes with different winners. Its position
is where the least-squares line of log ratio against log size over the bracket (ties
inside included) crosses zero: for two points, linear interpolation in log-log space. Its
confidence is the share of bootstrap replicates in which the lower bracket has the lower
winner and the upper bracket the upper winner; its interval is the ``level`` percentile
interval of the crossing positions of those replicates, widened to the whole bracket when the
bracketing sizes are more than :data:`REFINED_BRACKET` apart: the bootstrap knows only the
noise at the measured sizes, not where between them the curves really cross (the log-log
line is an assumption), so an interval inside a wide gap would claim what was never measured.
A sweep measures extra sizes inside such a bracket (:func:`bisection_sizes`) before stating
the narrow interval.

Points measured while the machine was shared are screened by :mod:`chipfit.analysis.trust`:
left out, or, where a series has no other, kept and the crossover marked ``from_contended``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations, pairwise

import numpy as np

from chipfit.analysis.trust import screen
from chipfit.errors import ChipfitError, InvalidInputError
from chipfit.results import Measurement
from chipfit.spec import parse_count
from chipfit.timing import stats

__all__ = [
    "KINDS", "REFINED_BRACKET", "VIEWS", "Crossing", "Crossover", "Point", "RatioAt", "Series", "SeriesKey",
    "SeriesSummary", "SweepAnalysis", "analyze", "bisection_sizes", "build_series",
    "check_settings", "compare",
    "comparable_pairs", "default_position", "rate_of", "rate_unit", "summarize",
]

VIEWS = ("resident", "end_to_end")
KINDS = ("none", "one", "several")
#: Bracketing sizes further apart than this factor leave the crossing's position to the
#: interpolation: its interval then spans the whole bracket. 1.5 lets a doubling ladder's
#: bracket count as a gap, and one bisected by three extra sizes (factor 2^(1/4)) as measured.
REFINED_BRACKET = 1.5
#: Extra sizes a sweep measures inside a wide bracket.
BISECTION_POINTS = 3

#: Maps (workload, size label) to the size's position on its axis (a positive number).
Position = Callable[[str, str], float]


@dataclass(frozen=True, order=True)
class SeriesKey:
    """Which series: a workload on one device, in one dtype and mode, read in one view."""

    workload: str
    device: str
    dtype: str
    mode: str
    view: str = "resident"

    def differs_in(self, other: SeriesKey) -> tuple[str, ...]:
        """The fields in which ``other`` differs from this key."""
        names = ("workload", "device", "dtype", "mode", "view")
        return tuple(n for n in names if getattr(self, n) != getattr(other, n))


@dataclass(frozen=True)
class Point:
    """One measured size of a series: its per-call samples (seconds) in the series' view."""

    size: str
    x: float
    samples_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return stats.median(self.samples_s)


@dataclass(frozen=True)
class Series:
    """The successful points of one series, by increasing size."""

    key: SeriesKey
    points: tuple[Point, ...]
    copies: bool = False  # whether its device copies data (end_to_end differs from resident)


@dataclass(frozen=True)
class RatioAt:
    """The time ratio ``t_a / t_b`` at one size both series measured."""

    size: str
    x: float
    ratio: float  # median_a / median_b: below 1, a is faster
    interval: tuple[float, float]  # bootstrap percentile interval at the analysis level
    p_a_faster: float  # share of bootstrap replicates in which a is faster
    winner: str  # "a", "b" or "tie"


@dataclass(frozen=True)
class Crossing:
    """One change of the faster series between two measured sizes."""

    x: float  # interpolated position on the size axis
    interval: tuple[float, float]  # percentile interval of the position over the bootstrap
    lower: str  # the bracketing measured sizes (labels) ...
    lower_x: float
    upper: str  # ... and their positions
    upper_x: float
    faster_below: SeriesKey
    faster_above: SeriesKey
    confidence: float  # share of bootstrap replicates that agree the faster series changes here
    gap: bool = False  # the bracket is wider than REFINED_BRACKET: interval = whole bracket


@dataclass(frozen=True)
class Crossover:
    """The comparison of two series: kind ``none``, ``one`` or ``several`` crossings."""

    a: SeriesKey
    b: SeriesKey
    kind: str
    crossings: tuple[Crossing, ...]
    ratios: tuple[RatioAt, ...]
    faster: SeriesKey | None  # with no crossing: faster at every decided size (None: all ties)
    copies: bool
    level: float
    resamples: int
    source: str = "measured"
    from_contended: bool = False  # drawn from points measured while the machine was shared

    @property
    def workload(self) -> str:
        return self.a.workload

    @property
    def view(self) -> str:
        return self.a.view

    @property
    def differs(self) -> str:
        """``device`` or ``dtype``: what the two series differ in."""
        return self.a.differs_in(self.b)[0]

    @property
    def span(self) -> tuple[float, float]:
        """The smallest and largest size both series measured (nan when none)."""
        if not self.ratios:
            return (math.nan, math.nan)
        return (self.ratios[0].x, self.ratios[-1].x)


@dataclass(frozen=True)
class SeriesSummary:
    """Per series: how far up the ladder it fits and where its throughput peaks."""

    workload: str
    device: str
    dtype: str
    mode: str
    tried: int
    ok: int
    largest_ok: str | None  # largest size that ran, below the first that did not fit
    first_oom: str | None  # smallest size that did not fit (None: no size ran out of memory)
    best_size: str | None  # size with the highest rate
    best_rate: float
    rate_unit: str  # items/s, FLOP/s, B/s or calls/s
    guard_limit: str | None = None  # largest size the memory guard admits (predicted)
    problem: str = ""  # the first failure other than running out of memory ("status: note")
    source: str = "measured"  # of everything but guard_limit, which is "predicted"


@dataclass(frozen=True)
class SweepAnalysis:
    """Every crossover and series summary found in a set of measurements."""

    crossovers: tuple[Crossover, ...]
    summaries: tuple[SeriesSummary, ...]
    level: float
    resamples: int
    left_out: int = 0  # contended points left out (chipfit.analysis.trust)

    def workloads(self) -> list[str]:
        names = [s.workload for s in self.summaries] + [c.workload for c in self.crossovers]
        return list(dict.fromkeys(names))

    def crossovers_of(self, workload: str) -> list[Crossover]:
        return [c for c in self.crossovers if c.workload == workload]

    def summaries_of(self, workload: str) -> list[SeriesSummary]:
        return [s for s in self.summaries if s.workload == workload]


# ---- positions and rates ----------------------------------------------------------------

def default_position(workload: str, size: str) -> float:
    """The size read as a count (``4096``, ``64k``, ``2^20``), else nan. Pure: a workload
    whose sizes are not counts (matmul's ``MxK@KxN``) is placed by the position function its
    caller passes (:func:`chipfit.workloads.size_position`)."""
    try:
        return float(parse_count(size))
    except ChipfitError:
        return math.nan


def rate_unit(measurements: Iterable[Measurement]) -> str:
    """The rate a workload is judged by: items/s for batched work, else FLOP/s, B/s, calls/s."""
    ms = list(measurements)
    if any(m.items_per_call > 1 for m in ms):
        return "items/s"
    if any(m.flops for m in ms):
        return "FLOP/s"
    return "B/s" if any(m.bytes_moved for m in ms) else "calls/s"


def rate_of(m: Measurement, unit: str) -> float:
    """``m``'s rate in ``unit`` (resident time); nan when it has no timing."""
    if not m.ok:
        return math.nan
    work = {"items/s": m.items_per_call, "FLOP/s": m.flops, "B/s": m.bytes_moved}.get(unit, 1)
    return work / m.median_s


# ---- building series ------------------------------------------------------------------------

def series_device(m: Measurement) -> str:
    """The device label of ``m``'s series: the device, plus its stack when that is not the
    backend's default (``torch:cpu+onnxruntime``), so stacks on one device cross over like
    devices do."""
    return m.series_device


def _groups(measurements: Iterable[Measurement]) -> dict[tuple[str, str, str, str],
                                                          list[Measurement]]:
    groups: dict[tuple[str, str, str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.workload, series_device(m), m.dtype, m.mode), []).append(m)
    return groups


def _samples(m: Measurement, view: str) -> tuple[float, ...]:
    extra = m.transfer_h2d_s + m.transfer_d2h_s if view == "end_to_end" else 0.0
    return tuple(t + extra for t in m.times_s)


def _series(key: SeriesKey, ms: Sequence[Measurement], position: Position) -> Series:
    by_x: dict[float, Point] = {}
    for m in ms:
        x = position(m.workload, m.size)
        if m.ok and math.isfinite(x) and x > 0:
            by_x[x] = Point(m.size, x, _samples(m, key.view))  # a later repeat replaces
    copies = any(m.transfer_h2d_s or m.transfer_d2h_s for m in ms)
    return Series(key, tuple(by_x[x] for x in sorted(by_x)), copies)


def build_series(measurements: Iterable[Measurement], views: Sequence[str] = VIEWS,
                 position: Position | None = None) -> list[Series]:
    """One series per (workload, device, dtype, mode) and view, in order of appearance."""
    position = position or default_position
    out = []
    for (workload, device, dtype, mode), ms in _groups(measurements).items():
        for view in views:
            out.append(_series(SeriesKey(workload, device, dtype, mode, view), ms, position))
    return out


def comparable_pairs(series: Sequence[Series]) -> list[tuple[Series, Series]]:
    """Pairs differing in device alone or dtype alone, both with some successful point;
    end_to_end only where a side copies."""
    pairs = []
    for a, b in combinations([s for s in series if s.points], 2):
        if a.key.differs_in(b.key) not in (("device",), ("dtype",)):
            continue
        if a.key.view == "end_to_end" and not (a.copies or b.copies):
            continue  # identical to the resident comparison: no data moves on either side
        pairs.append((a, b))
    return pairs


# ---- comparing two series -------------------------------------------------------------------

class _Bootstrap:
    """Log medians of bootstrap resamples, one array per (series, size), computed once.

    Each point draws from its own generator seeded by (seed, series, size), so a point's
    replicates are the same in every pair it is part of, whatever the order of comparison.
    """

    def __init__(self, resamples: int, seed: int) -> None:
        self.resamples, self.seed = resamples, seed
        self.cache: dict[tuple[SeriesKey, float], np.ndarray] = {}

    def log_medians(self, key: SeriesKey, point: Point) -> np.ndarray:
        found = self.cache.get((key, point.x))
        if found is None:
            tag = zlib.crc32(repr((key, point.size)).encode())
            rng = np.random.default_rng([self.seed, tag])
            found = self.cache[(key, point.x)] = np.log(_resampled_medians(
                point.samples_s, self.resamples, rng))
        return found


def _resampled_medians(samples: Sequence[float], resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` bootstrap resamples of ``samples``.

    Equal to ``np.median(data[picks], axis=1)`` but without sorting each resample: a
    resample's median is the sorted data at the rank where the cumulative count of picks
    (of sorted positions) reaches the middle, which costs O(n) per resample.
    """
    data = np.sort(np.asarray(samples, dtype=float))
    n = len(data)
    small = np.int16 if n < 2**15 else np.int64  # 16-bit draws are several times faster
    picks = rng.integers(0, n, size=(resamples, n), dtype=small)
    rows = np.arange(resamples, dtype=np.int64)[:, None] * n
    counts = np.bincount((picks + rows).ravel(), minlength=resamples * n)
    reached = counts.reshape(resamples, n).cumsum(axis=1, dtype=np.int32)
    lower = (reached < (n + 1) // 2).sum(axis=1)  # first position reaching rank ceil(n/2)
    upper = (reached < n // 2 + 1).sum(axis=1)  # rank n/2 + 1 (the same rank for odd n)
    return (data[lower] + data[upper]) / 2


def _ratio_at(pa: Point, pb: Point, log_reps: np.ndarray, level: float, sizes: int) -> RatioAt:
    tail = (1 - level) / 2
    p_a = float(np.mean(log_reps < 0) + 0.5 * np.mean(log_reps == 0))
    lo, hi = np.exp(np.quantile(log_reps, [tail, 1 - tail]))
    decide = tail / sizes  # Bonferroni: every size decided wrongly with probability <= 1-level
    winner = "a" if p_a >= 1 - decide else "b" if p_a <= decide else "tie"
    return RatioAt(pa.size, pa.x, pa.median_s / pb.median_s, (float(lo), float(hi)), p_a, winner)


def _zero_of_fit(log_x: np.ndarray, log_r: np.ndarray) -> np.ndarray:
    """Where the least-squares line of ``log_r`` (k x R) on ``log_x`` (k) is zero, per column."""
    dx = log_x - log_x.mean()
    slope = (dx[:, None] * (log_r - log_r.mean(axis=0))).sum(axis=0) / (dx**2).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = log_x.mean() - log_r.mean(axis=0) / slope
    return np.clip(zero, log_x[0], log_x[-1])


def _crossing(a: SeriesKey, b: SeriesKey, ratios: Sequence[RatioAt], reps: np.ndarray,
              i: int, j: int, level: float) -> Crossing:
    lo, hi = ratios[i], ratios[j]
    log_x = np.log([r.x for r in ratios[i:j + 1]])
    medians = np.log([[r.ratio] for r in ratios[i:j + 1]])
    x = float(np.exp(_zero_of_fit(log_x, medians)[0]))
    below_a = lo.winner == "a"
    agree = ((reps[i] < 0) == below_a) & ((reps[j] < 0) != below_a)
    positions = _zero_of_fit(log_x, reps[i:j + 1])[agree]
    positions = positions[np.isfinite(positions)]
    tail = (1 - level) / 2
    interval = (tuple(float(v) for v in np.exp(np.quantile(positions, [tail, 1 - tail])))
                if positions.size else (lo.x, hi.x))
    gap = hi.x / lo.x > REFINED_BRACKET
    if gap:  # nothing measured inside: the crossing may lie anywhere in the bracket
        interval = (min(interval[0], lo.x), max(interval[1], hi.x))
    return Crossing(x, interval, lo.size, lo.x, hi.size, hi.x,  # type: ignore[arg-type]
                    a if below_a else b, b if below_a else a, float(np.mean(agree)), gap)


def bisection_sizes(lower_x: float, upper_x: float, have: Iterable[float] = (),
                    points: int = BISECTION_POINTS) -> list[int]:
    """Integer sizes to measure inside the bracket (``lower_x``, ``upper_x``): ``points``
    evenly spaced in log size, without the sizes already measured (``have``)."""
    known = {round(v) for v in have}
    ratio = (upper_x / lower_x) ** (1 / (points + 1))
    picks = {round(lower_x * ratio**i) for i in range(1, points + 1)}
    return sorted(v for v in picks if lower_x < v < upper_x and v not in known)


def check_settings(level: float, resamples: int) -> None:
    """Refuse a confidence level or resample count the bootstrap cannot honour."""
    if not 0.5 <= level < 1:
        raise InvalidInputError(f"confidence level must be in [0.5, 1), got {level}")
    if resamples < 100:
        raise InvalidInputError(f"need at least 100 bootstrap resamples, got {resamples}")


def compare(a: Series, b: Series, *, level: float = 0.95, resamples: int = 2000,
            seed: int = 0, _boot: _Bootstrap | None = None) -> Crossover:
    """Find where the faster of ``a`` and ``b`` changes over the sizes both measured."""
    check_settings(level, resamples)
    boot = _boot or _Bootstrap(resamples, seed)
    by_x = {p.x: p for p in b.points}
    common = [(p, by_x[p.x]) for p in a.points if p.x in by_x]
    reps = np.array([boot.log_medians(a.key, pa) - boot.log_medians(b.key, pb)
                     for pa, pb in common]).reshape(len(common), resamples)
    ratios = [_ratio_at(pa, pb, rep, level, len(common))
              for (pa, pb), rep in zip(common, reps, strict=True)]
    decided = [i for i, r in enumerate(ratios) if r.winner != "tie"]
    crossings = tuple(_crossing(a.key, b.key, ratios, reps, i, j, level)
                      for i, j in pairwise(decided)
                      if ratios[i].winner != ratios[j].winner)
    winners = {ratios[i].winner for i in decided}
    faster = None
    if not crossings and len(winners) == 1:
        faster = a.key if winners == {"a"} else b.key
    return Crossover(a.key, b.key, KINDS[min(len(crossings), 2)], crossings, tuple(ratios),
                     faster, a.copies or b.copies, level, resamples)


# ---- limits, throughput, and the whole analysis ------------------------------------------

def _summary(ms: Sequence[Measurement], position: Position, unit: str,
             guard_limit: str | None, rate_from: set[int] | None = None) -> SeriesSummary:
    """Fit (tried, largest that ran, first that did not fit) from every point; the best rate
    only from the points whose ``id`` is in ``rate_from`` (all when None): a point measured
    while the machine was shared still shows what fits, not how fast it runs."""
    ranked = sorted((position(m.workload, m.size), i, m) for i, m in enumerate(ms))
    ooms = [x for x, _, m in ranked if m.status == "oom"]
    first_oom = min(ooms) if ooms else math.inf
    fitting = [(x, m) for x, _, m in ranked if m.ok and x < first_oom]
    rated = [(rate_of(m, unit), m.size) for _, m in fitting
             if rate_from is None or id(m) in rate_from]
    best_rate, best_size = max(rated) if rated else (math.nan, None)
    m0 = ms[0]
    return SeriesSummary(
        m0.workload, m0.device, m0.dtype, m0.mode, tried=len(ms), ok=sum(m.ok for m in ms),
        largest_ok=fitting[-1][1].size if fitting else None,
        first_oom=next((m.size for x, _, m in ranked if x == first_oom), None),
        best_size=best_size, best_rate=best_rate, rate_unit=unit, guard_limit=guard_limit,
        problem=next((f"{m.status}: {m.note}" for m in ms if m.status not in ("ok", "oom")), ""))


def summarize(measurements: Iterable[Measurement], position: Position | None = None,
              limits: Mapping[tuple[str, str, str, str], str | None] | None = None,
              rated: Iterable[Measurement] | None = None) -> list[SeriesSummary]:
    """Largest fitting size and best-throughput size of every (workload, device, dtype, mode).

    ``limits`` maps the same key to the largest size the memory guard admits (predicted).
    ``rated``: the points the best throughput may come from (all when None; the analysis
    passes those screening kept, while fit is read from every point).
    """
    position = position or default_position
    ms = list(measurements)
    rate_from = None if rated is None else {id(m) for m in rated}
    units = {w: rate_unit(m for m in ms if m.workload == w) for w in {m.workload for m in ms}}
    return [_summary(group, position, units[key[0]], (limits or {}).get(key), rate_from)
            for key, group in _groups(ms).items()]


def analyze(measurements: Iterable[Measurement], *, position: Position | None = None,
            limits: Mapping[tuple[str, str, str, str], str | None] | None = None,
            level: float = 0.95, resamples: int = 2000, seed: int = 0) -> SweepAnalysis:
    """Every crossover between comparable series, and every series' limits and best rate."""
    check_settings(level, resamples)
    measurements = list(measurements)
    screened = screen(measurements)  # contended points: left out, or kept and labelled
    ms = list(screened.kept)
    # series in the order the run measured them, whichever points screening left out (so
    # which side of a pair is "a" does not depend on which points were contended)
    order: dict[tuple[str, str, str, str], int] = {}
    for m in measurements:
        order.setdefault((m.workload, m.device, m.dtype, m.mode), len(order))
    series = sorted(build_series(ms, VIEWS, position),
                    key=lambda s: order.get(_series_id(s.key), len(order)))
    boot = _Bootstrap(resamples, seed)  # shared: each point is resampled once for all pairs
    crossovers = tuple(
        replace(compare(a, b, level=level, resamples=resamples, seed=seed, _boot=boot),
                from_contended=screened.marked(_series_id(a.key), _series_id(b.key)))
        for a, b in comparable_pairs(series))
    summaries = summarize(measurements, position, limits, rated=ms)
    return SweepAnalysis(crossovers, tuple(summaries), level, resamples,
                         len(screened.left_out))


def _series_id(key: SeriesKey) -> tuple[str, str, str, str]:
    return (key.workload, key.device, key.dtype, key.mode)
