"""Run comparison: the Mann-Whitney U test, and verdicts on injected changes.

The runs here are synthetic (a pure algorithm under test): per-call times drawn from a
log-normal around a median, the shape timing noise has. tests/e2e/test_history_cli.py compares
real measured runs through the CLI.
"""

from __future__ import annotations

import math
import random

import pytest

from chipfit.analysis.compare import compare_point, compare_runs, mann_whitney_u
from chipfit.errors import InvalidInputError
from chipfit.results import Measurement, Run

scipy_stats = pytest.importorskip("scipy.stats")


def _m(size: str, median: float, rng: random.Random, n: int = 30, spread: float = 0.03,
       status: str = "ok", device: str = "torch:cpu") -> Measurement:
    times = tuple(median * math.exp(rng.gauss(0, spread)) for _ in range(n))
    return Measurement("matmul", size, device, block_times_s=times if status == "ok" else (),
                       status=status, stop_reason="ci_target")


def _run(run_id: str, points: dict[str, float], seed: int, fingerprint: str = "abc",
         n: int = 30, spread: float = 0.03) -> Run:
    rng = random.Random(seed)
    return Run(run_id, "bench", "2026-01-01T00:00:00+00:00",
               machine=(("fingerprint", fingerprint),),
               measurements=tuple(_m(s, t, rng, n, spread) for s, t in points.items()))


BASE = {"64": 2e-5, "256": 4e-4, "1024": 2.5e-2}


# ---- the test itself ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_mann_whitney_matches_scipy(seed: int) -> None:
    rng = random.Random(seed)
    n1, n2 = rng.randint(1, 14), rng.randint(1, 14)
    tied = seed % 3 == 0  # rounded values: ties, so the tie-corrected normal approximation
    draw = (lambda: round(rng.gauss(0, 1), 1)) if tied else (lambda: rng.gauss(0, 1))
    shift = (0.0, 0.7, 3.0)[seed % 3]
    x, y = [draw() for _ in range(n1)], [draw() + shift for _ in range(n2)]
    u, p = mann_whitney_u(x, y)
    expected = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
    assert u == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_mann_whitney_exact_small_case_by_hand() -> None:
    # x entirely below y: U = 0; 2 of the C(6,3) = 20 orderings are this extreme -> p = 0.1
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]) == (0.0, pytest.approx(0.1))
    assert mann_whitney_u([5.0] * 4, [5.0] * 4)[1] == 1.0  # all tied: no evidence
    with pytest.raises(InvalidInputError):
        mann_whitney_u([], [1.0])


# ---- verdicts -------------------------------------------------------------------------------
def test_an_injected_2x_slowdown_is_flagged() -> None:
    a = _run("A", BASE, seed=1)
    b = _run("B", {**BASE, "256": BASE["256"] * 2}, seed=2)
    result = compare_runs(a, b)
    slow = {p.key[1]: p for p in result.points}
    assert slow["256"].verdict == "regression" and slow["256"].flagged
    assert slow["256"].ratio == pytest.approx(2.0, rel=0.05)
    assert slow["256"].p_value < 1e-6
    assert [p.key[1] for p in result.regressions] == ["256"]
    assert result.same_machine


@pytest.mark.parametrize("seed", range(25))
def test_a_rerun_of_the_same_workload_flags_nothing(seed: int) -> None:
    a = _run("A", BASE, seed=100 + seed)
    b = _run("B", BASE, seed=200 + seed)  # same distributions, fresh draws
    result = compare_runs(a, b)
    assert result.regressions == () and result.improvements == ()
    assert {p.verdict for p in result.points} == {"unchanged"}


def test_a_speedup_is_an_improvement_and_small_changes_do_not_count() -> None:
    a = _run("A", BASE, seed=3, spread=0.002)
    b = _run("B", {"64": BASE["64"] * 0.5, "256": BASE["256"] * 1.02, "1024": BASE["1024"]},
             seed=4, spread=0.002)
    by_size = {p.key[1]: p for p in compare_runs(a, b).points}
    assert by_size["64"].verdict == "improvement"
    assert by_size["256"].p_value < 0.01  # a real 2% change, significant ...
    assert by_size["256"].verdict == "unchanged"  # ... but under the 5% threshold
    assert compare_runs(a, b, threshold=0.01).points[1].verdict == "regression"


def test_a_big_change_in_too_few_samples_is_unsure() -> None:
    a = _run("A", {"64": 1e-3}, seed=5, n=3, spread=0.3)
    b = _run("B", {"64": 1.3e-3}, seed=6, n=3, spread=0.3)
    point = compare_runs(a, b).points[0]
    assert point.p_value >= 0.01  # 3 vs 3 samples can never reach p < 0.01 (min p = 0.1)
    assert point.verdict in ("unsure", "unchanged") and not point.flagged


def test_failures_and_points_in_one_run_only() -> None:
    rng = random.Random(7)
    ok, oom = _m("64", 1e-3, rng), _m("64", 1e-3, rng, status="oom")
    assert compare_point(ok, oom).verdict == "broken" and compare_point(ok, oom).flagged
    assert compare_point(oom, ok).verdict == "fixed"
    assert compare_point(oom, oom).verdict == "failed"
    assert compare_point(ok, None).verdict == "only_a"
    assert compare_point(None, ok).verdict == "only_b"
    a = _run("A", {"64": 1e-3}, seed=8)
    b = _run("B", {"128": 1e-3}, seed=9, fingerprint="other")
    result = compare_runs(a, b)
    assert [p.verdict for p in result.points] == ["only_a", "only_b"]
    assert not result.same_machine


def test_end_to_end_view_adds_the_copies() -> None:
    rng = random.Random(10)
    a = _m("64", 1e-3, rng)
    b = Measurement(**{**a.__dict__, "transfer_h2d_s": 1e-3})  # same compute, slow copy in
    assert compare_point(a, b).verdict == "unchanged"
    assert compare_point(a, b, view="end_to_end").verdict == "regression"


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"alpha": 1.5}, {"view": "wall"}])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    a = _run("A", BASE, seed=1)
    with pytest.raises(InvalidInputError):
        compare_runs(a, a, **kwargs)
