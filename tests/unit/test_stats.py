import math
import random

import pytest
from scipy import stats as sps

from chipfit.timing import stats


def test_quantiles_match_numpy_linear_method():
    import numpy as np

    data = [random.Random(i).random() for i in range(37)]
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert stats.quantile(data, q) == pytest.approx(float(np.quantile(data, q)))


@pytest.mark.parametrize("n", [6, 7, 10, 25, 100, 999])
def test_median_ci_rank_is_exact_binomial(n):
    j = stats._order_rank(n, 0.95)
    # coverage of [x_(j), x_(n-j+1)] is 1 - 2 P(B <= j-1); j is the largest rank keeping >= 95%
    assert 1 - 2 * sps.binom.cdf(j - 1, n, 0.5) >= 0.95
    assert 1 - 2 * sps.binom.cdf(j, n, 0.5) < 0.95


def test_ci_undefined_for_tiny_samples():
    assert stats.median_ci([1.0, 2.0, 3.0]) == (-math.inf, math.inf)
    assert stats.rel_ci_halfwidth([1.0, 2.0, 3.0]) == math.inf


def test_median_ci_covers_true_median_about_95_percent():
    rng = random.Random(7)
    hits = 0
    for _ in range(400):
        sample = [rng.expovariate(1.0) for _ in range(41)]  # skewed, median ln 2
        lo, hi = stats.median_ci(sample)
        hits += lo <= math.log(2) <= hi
    assert 0.92 <= hits / 400 <= 0.995


def test_rel_iqr():
    assert stats.rel_iqr([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert stats.rel_iqr([0.9, 1.0, 1.1]) == pytest.approx(0.1)
