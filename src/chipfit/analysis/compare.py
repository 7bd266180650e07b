"""Compare two runs point by point: the ratio of medians, a rank test on the raw samples,
and a verdict.

A point is a job key (workload, size, device, dtype, mode). Run B is *slower* at a point
when its median per-call time exceeds A's by more than ``threshold`` (default 5%) **and**
the two-sided Mann-Whitney U test on the per-call samples gives p < ``alpha`` (default 0.01).
Both are needed: a big change seen in three noisy samples is ``unsure``, and a significant
change smaller than the threshold is ``unchanged`` (timers resolve differences far below
what matters). The test is rank-based, so it assumes no distribution for timings, which are
skewed (a few slow outliers) and rarely normal.

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

from chipfit.errors import InvalidInputError
from chipfit.results import Measurement, Run

__all__ = ["VERDICTS", "PointComparison", "RunComparison", "compare_runs", "mann_whitney_u"]

#: regression/improvement: significant and past the threshold; unchanged: within it;
#: unsure: past it but not significant; broken/fixed: a point that stopped/started working;
#: only_a/only_b: measured in one run only.
VERDICTS = ("regression", "improvement", "unchanged", "unsure", "broken", "fixed", "only_a",
            "only_b", "failed")
_EXACT_MAX_N = 8


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

    @property
    def regressions(self) -> tuple[PointComparison, ...]:
        return tuple(p for p in self.points if p.flagged)

    @property
    def improvements(self) -> tuple[PointComparison, ...]:
        return tuple(p for p in self.points if p.verdict in ("improvement", "fixed"))


def _key(m: Measurement) -> Key:
    return (m.workload, m.size, m.device, m.dtype, m.mode)


def _samples(m: Measurement, view: str) -> list[float]:
    """Per-call times; end to end adds the (separately measured) copy times to each."""
    extra = m.transfer_h2d_s + m.transfer_d2h_s if view == "end_to_end" else 0.0
    return [t + extra for t in m.times_s]


def _verdict(ratio: float, p: float, threshold: float, alpha: float) -> str:
    if max(ratio, 1 / ratio) <= 1 + threshold:
        return "unchanged"
    if p >= alpha:
        return "unsure"
    return "regression" if ratio > 1 else "improvement"


def compare_point(a: Measurement | None, b: Measurement | None, *, threshold: float = 0.05,
                  alpha: float = 0.01, view: str = "resident") -> PointComparison:
    """Compare one point; either side may be missing (measured in one run only)."""
    key = _key(a or b)  # type: ignore[arg-type]
    if a is None or b is None:
        return PointComparison(key, a, b, math.nan, math.nan, "only_b" if a is None else "only_a")
    if not (a.ok and b.ok):
        verdict = "broken" if a.ok else "fixed" if b.ok else "failed"
        return PointComparison(key, a, b, math.nan, math.nan, verdict)
    ratio = b.seconds(view) / a.seconds(view)
    p = mann_whitney_u(_samples(a, view), _samples(b, view))[1]
    return PointComparison(key, a, b, ratio, p, _verdict(ratio, p, threshold, alpha))


def compare_runs(a: Run, b: Run, *, threshold: float = 0.05, alpha: float = 0.01,
                 view: str = "resident") -> RunComparison:
    """Compare run ``b`` against baseline ``a``, point by point, in A's order then B's new ones.

    ``threshold`` is the relative change that matters (0.05 = 5%); ``alpha`` the significance
    level of the rank test; ``view`` ``resident`` or ``end_to_end`` (with copies).
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
    points = tuple(compare_point(left.get(k), right.get(k), threshold=threshold, alpha=alpha,
                                 view=view) for k in keys)
    fingerprint_a, fingerprint_b = dict(a.machine).get("fingerprint"), dict(b.machine).get(
        "fingerprint")
    return RunComparison(a.run_id, b.run_id, threshold, alpha, view,
                         bool(fingerprint_a) and fingerprint_a == fingerprint_b, points)
