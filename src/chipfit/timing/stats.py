"""Distribution-free statistics over raw timing samples.

Timings are skewed (a floor plus a long right tail from interrupts, frequency changes and
other tenants), so chipfit summarises with the median and the interquartile range and puts a
confidence interval on the median from order statistics: with ``n`` samples the number below
the true median is Binomial(n, 1/2), so the interval ``[x_(j), x_(n-j+1)]`` covers the median
with probability ``1 - 2 P(B <= j-1)`` (Conover, *Practical Nonparametric Statistics*, 3rd ed.,
section 3.2). No normality is assumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["median", "median_ci", "quantile", "rel_ci_halfwidth", "rel_iqr"]


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) of ``values``."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def rel_iqr(values: Sequence[float]) -> float:
    """Interquartile range over the median: the spread the noisy warning looks at."""
    mid = median(values)
    if not values or mid == 0:
        return math.nan
    return (quantile(values, 0.75) - quantile(values, 0.25)) / mid


@lru_cache(maxsize=4096)
def _order_rank(n: int, confidence: float) -> int:
    """Largest 1-based rank j with 2 P(Binomial(n, 1/2) <= j-1) <= 1 - confidence (0 if none)."""
    alpha = 1.0 - confidence
    if n > 1000:  # normal approximation, exact enough and O(1)
        z = 1.959963984540054 if abs(confidence - 0.95) < 1e-9 else _z(confidence)
        return max(0, math.floor(n / 2 - z * math.sqrt(n) / 2))
    total, cdf, best = 2.0**n, 0.0, 0
    for j in range(1, n // 2 + 1):
        cdf += math.comb(n, j - 1) / total
        if 2 * cdf <= alpha:
            best = j
        else:
            break
    return best


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median; infinite when n is too small."""
    n = len(values)
    j = _order_rank(n, confidence)
    if j < 1:
        return (-math.inf, math.inf)
    data = sorted(values)
    return (data[j - 1], data[n - j])


def rel_ci_halfwidth(values: Sequence[float], confidence: float = 0.95) -> float:
    """Half the CI width over the median (0.02 means +-2%); ``inf`` when not yet defined."""
    lo, hi = median_ci(values, confidence)
    mid = median(values)
    if not math.isfinite(lo) or not math.isfinite(hi) or mid <= 0:
        return math.inf
    return (hi - lo) / 2 / mid
