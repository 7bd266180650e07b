"""Compare two runs point by point: the ratio of medians against the run-to-run noise, a
rank test on run-level units, and a verdict.

A point is a job key (workload, size, device[+stack], dtype, mode). Samples *within* one run are not
independent draws: the machine drifts (frequency, cache state, neighbours) over seconds, so
every block of a run shares that run's state, and a test that treats the blocks of two runs
as two independent samples calls any drift between the runs significant (two back-to-back
runs of identical work gave p = 1e-14). So the unit of comparison is a stretch of time:

- each point's blocks are split, in the order they ran, into :data:`CHUNKS` consecutive
  chunks, and the chunk medians are the samples (blocks spaced in time, far less correlated
  than neighbouring blocks);
- the *noise floor* of a point is how far apart two runs of the same work can land by drift
  alone: :data:`FLOOR_Z` standard deviations of the difference of two run levels, each
  wandering as much as that run's chunk medians do (a robust SD of their logs, from the
  median absolute deviation). Extra runs of the baseline's work (``noise_runs``) add the
  spread of their run-level medians (``max / min - 1``): the measured run-to-run noise. It is
  never under :data:`ABS_FLOOR_S` of the baseline's time: runs of a few-microsecond operation
  land that far apart however steady each run is.

Run B is *slower* at a point when its median per-call time exceeds A's by more than
``max(threshold, noise floor)`` (``threshold`` is the minimum effect that matters, default
10%) **and** the two-sided Mann-Whitney U test on the chunk medians gives p < ``alpha``
(default 0.01; with 5-6 chunks a side that needs the chunks of the two runs to separate
completely). A big change that fails the test is ``unsure``; a change within the floor is
``unchanged``. A change past the bar at a point measured while the machine was shared
(either side, see :mod:`chipfit.timing.contention`) is ``contended``, not a regression: the
neighbours may be what changed, so it is reported, never flagged, and wants a quiet re-run.

A point's own verdict can miss a neighbour that came and went between its windows (two
identical back-to-back runs differed by 22% at points marked quiet while another process ran).
So the runs' stored evidence is read as a whole too (:func:`busy_evidence`): when either run
had a contended point, a point whose stored load shows more runnable tasks than CPUs, or one
during which other processes used :data:`BUSY_OTHERS_SHARE` of our cores, every point counts
as contended (nothing is flagged but a point that stopped working), and the run-level verdict
is ``inconclusive: machine busy`` with the evidence named.

Mann-Whitney U: H. B. Mann and D. R. Whitney, "On a test of whether one of two random
variables is stochastically larger than the other", Ann. Math. Statist. 18 (1947) 50-60.
The p-value is exact (the null distribution of U counted by recursion, ibid. eq. 2) when a
sample has at most 8 values and there are no ties, else the normal approximation with
continuity and tie corrections (E. L. Lehmann, *Nonparametrics*, 1975, ch. 1 sec. 4) - the
same choice as ``scipy.stats.mannwhitneyu(method="auto")``, which the tests check it against.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from chipfit.errors import InvalidInputError
from chipfit.results import Measurement, Run
from chipfit.timing.contention import LOAD_EXCESS, OTHERS_MIN_S
from chipfit.timing.stats import median

__all__ = ["BUSY_OTHERS_SHARE", "CHUNKS", "INCONCLUSIVE", "MIN_EFFECT", "VERDICTS",
           "PointComparison", "RunComparison", "busy_evidence", "chunk_medians", "compare_runs",
           "mann_whitney_u", "noise_floor"]

#: regression/improvement: significant and past the bar; unchanged: within it;
#: unsure: past it but not significant; contended: significant and past it, but measured while
#: the machine was shared; broken/fixed: a point that stopped/started working;
#: only_a/only_b: measured in one run only.
VERDICTS = ("regression", "improvement", "unchanged", "unsure", "contended", "broken", "fixed",
            "only_a", "only_b", "failed")
_EXACT_MAX_N = 8
#: Run-level units per point: enough that 6 vs 6 can reach p = 0.002 (complete separation),
#: few enough that each chunk spans a stretch of the run's time.
CHUNKS = 6
#: The smallest change worth flagging, whatever the noise: timers resolve far less, but two
#: runs minutes apart on one machine routinely differ by a few percent.
MIN_EFFECT = 0.10
#: How many standard deviations of the drift a change must clear (3: a run-to-run shift that
#: big happens by drift alone well under 1% of the time for a normal level).
FLOOR_Z = 3.0
#: Two runs of a few-microsecond operation land up to about this far apart however steady
#: each run is (allocation addresses and cache placement change between runs; timer and
#: dispatch jitter are of this order): a change must clear it as well (3.6 us vs 4.15 us,
#: two back-to-back runs of a 32x32 matmul, was a false regression without it).
ABS_FLOOR_S = 1e-6
#: Other processes' share of our cores during any point of a run that makes the whole run
#: suspect (half the bar that marks one point contended: a quiet machine's daemons take a few
#: percent).
BUSY_OTHERS_SHARE = 0.10
#: The run-level verdict when either run's evidence says the machine was busy.
INCONCLUSIVE = "inconclusive: machine busy"


# ---- the test -----------------------------------------------------------------------------
def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values``, and the sizes of the tied groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties, i = [], 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) orderings give U = 0, 1, ..., n1*n2 (no ties)."""
    if n1 == 0 or n2 == 0:
        return (1,)
    fewer_x, fewer_y = _u_counts(n1 - 1, n2), _u_counts(n1, n2 - 1)
    # The largest value is either an x (which then beats all n2 y's) or a y (beats none).
    return tuple((fewer_x[u - n2] if 0 <= u - n2 < len(fewer_x) else 0) +
                 (fewer_y[u] if u < len(fewer_y) else 0) for u in range(n1 * n2 + 1))


def _exact_p(u: float, n1: int, n2: int) -> float:
    counts = _u_counts(n1, n2)
    upper = sum(counts[math.ceil(max(u, n1 * n2 - u)):])
    return min(1.0, 2 * upper / sum(counts))


def _normal_p(u: float, n1: int, n2: int, ties: Sequence[int]) -> float:
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:  # every value equal: no evidence of any difference
        return 1.0
    z = (max(u, n1 * n2 - u) - n1 * n2 / 2 - 0.5) / sigma
    return min(1.0, math.erfc(z / math.sqrt(2)))  # 2 * (1 - Phi(z))


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """The U statistic of ``x`` and the two-sided p-value that x and y share a distribution."""
    if not x or not y:
        raise InvalidInputError("the Mann-Whitney U test needs at least one value per sample")
    ranks, ties = _ranks(list(x) + list(y))
    n1, n2 = len(x), len(y)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    tied = any(t > 1 for t in ties)
    if (n1 <= _EXACT_MAX_N or n2 <= _EXACT_MAX_N) and not tied:
        return u, _exact_p(u, n1, n2)
    return u, _normal_p(u, n1, n2, ties)


# ---- comparing runs -----------------------------------------------------------------------
Key = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class PointComparison:
    """One job key in both runs. ``ratio`` is B's median time over A's (2.0: twice as slow)."""

    key: Key
    a: Measurement | None
    b: Measurement | None
    ratio: float
    p_value: float
    verdict: str
    noise_floor: float = math.nan  # relative change the runs' own drift can explain
    contended: bool = False  # either side measured while the machine was shared

    @property
    def flagged(self) -> bool:
        """A change for the worse: slower past the threshold, or no longer working."""
        return self.verdict in ("regression", "broken")


@dataclass(frozen=True)
class RunComparison:
    """Every point of two runs, compared; ``same_machine`` from their fingerprints."""

    run_a: str
    run_b: str
    threshold: float
    alpha: float
    view: str
    same_machine: bool
    points: tuple[PointComparison, ...]
    busy: tuple[str, ...] = ()  # why the machine was busy around either run (busy_evidence)

    @property
    def regressions(self) -> tuple[PointComparison, ...]:
        return tuple(p for p in self.points if p.flagged)

    def __str__(self) -> str:
        """A short summary: the verdict, the counts, and each flagged point (B's median
        time over A's: x1.25 is 25% slower)."""
        head = (f"B = {self.run_b} vs A = {self.run_a}: {self.verdict}; "
                f"{len(self.regressions)} regression(s), {len(self.improvements)} "
                f"improvement(s) in {len(self.points)} point(s)")
        lines = [head] + [f"  {' '.join(p.key)}: x{p.ratio:.3g} ({p.verdict}, "
                          f"p = {p.p_value:.2g})" for p in self.regressions[:5]]
        if len(self.regressions) > 5:
            lines.append(f"  ... {len(self.regressions) - 5} more in .regressions")
        return "\n".join(lines)

    @property
    def improvements(self) -> tuple[PointComparison, ...]:
        return tuple(p for p in self.points if p.verdict in ("improvement", "fixed"))

    @property
    def verdict(self) -> str:
        """The run-level verdict: ``regression`` (a point flagged: slower past the bar, or
        broken), INCONCLUSIVE (the machine was busy around either run: no timing change can
        be told from the neighbours), ``improvement`` or ``unchanged``."""
        if self.regressions:
            return "regression"
        if self.busy:
            return INCONCLUSIVE
        return "improvement" if self.improvements else "unchanged"


def _key(m: Measurement) -> Key:
    """The point ``m`` measured; a stack other than the default is part of the device label
    (``torch:cpu+int8``), so each stack is compared with the same stack."""
    from chipfit.analysis.crossover import series_device

    return (m.workload, m.size, series_device(m), m.dtype, m.mode)


def _samples(m: Measurement, view: str) -> list[float]:
    """Per-call times; end to end adds the (separately measured) copy times to each."""
    extra = m.transfer_h2d_s + m.transfer_d2h_s if view == "end_to_end" else 0.0
    return [t + extra for t in m.times_s]


def chunk_medians(samples: Sequence[float], chunks: int = CHUNKS) -> list[float]:
    """Medians of ``chunks`` consecutive, near-equal stretches of ``samples`` (in run order)."""
    n = len(samples)
    k = min(chunks, n)
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [median(samples[lo:hi]) for lo, hi in pairwise(bounds)]


def _spread(values: Sequence[float]) -> float:
    good = [v for v in values if v > 0 and math.isfinite(v)]
    return max(good) / min(good) - 1 if len(good) > 1 else 0.0


def _robust_sd(values: Sequence[float]) -> float:
    """Standard deviation of log ``values`` from their median absolute deviation (one chunk
    hit by a burst of interrupts does not inflate it)."""
    logs = [math.log(v) for v in values if v > 0 and math.isfinite(v)]
    if len(logs) < 2:
        return 0.0
    mid = median(logs)
    return 1.4826 * median([abs(v - mid) for v in logs])


def noise_floor(a_chunks: Sequence[float], b_chunks: Sequence[float],
                run_medians: Sequence[float] = ()) -> float:
    """The relative change the runs' own drift explains: FLOOR_Z standard deviations of the
    difference of two run levels, each wandering as much as its chunk medians do, or the
    spread of the run-level medians of repeated baseline runs, whichever is larger."""
    sd = math.hypot(_robust_sd(a_chunks), _robust_sd(b_chunks))
    return max(math.exp(FLOOR_Z * sd) - 1, _spread(run_medians))


def _verdict(ratio: float, p: float, bar: float, alpha: float) -> str:
    if max(ratio, 1 / ratio) <= 1 + bar:
        return "unchanged"
    if p >= alpha:
        return "unsure"
    return "regression" if ratio > 1 else "improvement"


def busy_evidence(run: Run, label: str = "") -> tuple[str, ...]:
    """Why the machine was busy around ``run``'s points, from the evidence stored with them
    (empty: nothing says so): contended points, the heaviest load against the CPUs where it
    exceeded them by LOAD_EXCESS, the largest share of our cores other processes used where it
    reached BUSY_OTHERS_SHARE. ``label`` prefixes each reason (``run A``)."""
    ok = [m for m in run.measurements if m.ok]
    reasons = []
    contended = sum(bool(m.contended) for m in ok)
    if contended:
        reasons.append(f"{contended} of {len(ok)} points contended")
    loads, others = [], []
    for m in ok:
        numbers = dict(m.contention)
        load1, cpus = numbers.get("load1", math.nan), numbers.get("cpus", numbers.get("cores"))
        if cpus and math.isfinite(load1) and load1 - cpus >= LOAD_EXCESS:
            loads.append((load1 / cpus, load1, cpus))
        share = numbers.get("others_share", math.nan)
        if share >= BUSY_OTHERS_SHARE and numbers.get("others_s", 0.0) >= OTHERS_MIN_S:
            others.append(share)
    if loads:
        _, load1, cpus = max(loads)
        reasons.append(f"load {load1:.1f} on {cpus:.0f} CPUs")
    if others:
        reasons.append(f"other processes used up to {max(others):.0%} of our cores")
    return tuple(f"{label}: {r}" if label else r for r in reasons)


def compare_point(a: Measurement | None, b: Measurement | None, *, threshold: float = MIN_EFFECT,
                  alpha: float = 0.01, view: str = "resident",
                  repeats: Sequence[Measurement] = (), busy: bool = False) -> PointComparison:
    """Compare one point; either side may be missing (measured in one run only).

    ``repeats`` are the same point in further runs of the baseline's work (the noise floor);
    ``busy``: the machine was busy around the runs (:func:`busy_evidence`), so the point
    counts as contended whatever its own verdict said.
    """
    key = _key(a or b)  # type: ignore[arg-type]
    if a is None or b is None:
        return PointComparison(key, a, b, math.nan, math.nan, "only_b" if a is None else "only_a")
    if not (a.ok and b.ok):
        verdict = "broken" if a.ok else "fixed" if b.ok else "failed"
        return PointComparison(key, a, b, math.nan, math.nan, verdict)
    ratio = b.seconds(view) / a.seconds(view)
    chunks_a, chunks_b = chunk_medians(_samples(a, view)), chunk_medians(_samples(b, view))
    p = mann_whitney_u(chunks_a, chunks_b)[1]
    runs = [a.seconds(view)] + [r.seconds(view) for r in repeats if r.ok]
    floor = max(noise_floor(chunks_a, chunks_b, runs if repeats else ()),
                ABS_FLOOR_S / a.seconds(view))
    verdict = _verdict(ratio, p, max(threshold, floor), alpha)
    contended = bool(a.contended or b.contended) or busy
    if contended and verdict in ("regression", "improvement"):
        verdict = "contended"
    return PointComparison(key, a, b, ratio, p, verdict, floor, contended)


def compare_runs(a: Run, b: Run, *, threshold: float = MIN_EFFECT, alpha: float = 0.01,
                 view: str = "resident", noise_runs: Sequence[Run] = ()) -> RunComparison:
    """Compare run ``b`` against baseline ``a``, point by point, in A's order then B's new ones.

    ``threshold`` is the smallest relative change that matters (0.10 = 10%); the bar a change
    must pass is the larger of it and the point's noise floor. ``alpha`` is the significance
    level of the rank test on chunk medians; ``view`` ``resident`` or ``end_to_end`` (with
    copies); ``noise_runs`` are repeats of the baseline's work whose spread joins the floor.
    """
    if not 0 < threshold < 10:
        raise InvalidInputError(f"threshold {threshold} must be a fraction such as 0.05 (5%)")
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha {alpha} must be between 0 and 1, such as 0.01")
    if view not in ("resident", "end_to_end"):
        raise InvalidInputError(f"view {view!r} must be resident or end_to_end")
    left = OrderedDict((_key(m), m) for m in a.measurements)
    right = OrderedDict((_key(m), m) for m in b.measurements)
    keys = list(left) + [k for k in right if k not in left]
    repeats = [OrderedDict((_key(m), m) for m in r.measurements) for r in noise_runs]
    busy = busy_evidence(a, "run A") + busy_evidence(b, "run B")
    points = tuple(compare_point(left.get(k), right.get(k), threshold=threshold, alpha=alpha,
                                 view=view, repeats=[r[k] for r in repeats if k in r],
                                 busy=bool(busy))
                   for k in keys)
    fingerprint_a, fingerprint_b = dict(a.machine).get("fingerprint"), dict(b.machine).get(
        "fingerprint")
    return RunComparison(a.run_id, b.run_id, threshold, alpha, view,
                         bool(fingerprint_a) and fingerprint_a == fingerprint_b, points, busy)
