"""Run comparison: the Mann-Whitney U test, the noise floor, and verdicts on injected changes.

The runs here are synthetic (a pure algorithm under test): per-call times drawn from a
log-normal around a median, the shape timing noise has. tests/e2e/test_history_cli.py compares
real measured runs through the CLI.
"""

from __future__ import annotations

import math
import random

import pytest

from chipfit.analysis.compare import (
    chunk_medians,
    compare_point,
    compare_runs,
    mann_whitney_u,
    noise_floor,
)
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
    assert slow["256"].p_value < 0.01  # 6 chunk medians a side, completely separated
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
    assert by_size["256"].verdict == "unchanged"  # ... but under the 10% minimum effect
    assert by_size["256"].noise_floor < 0.01  # the runs barely drift: the floor is no bar
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


# ---- between-run variation ------------------------------------------------------------------
def _drifting(median: float, n: int, drift: float, rng: random.Random,
              noise: float = 0.01) -> tuple[float, ...]:
    """Blocks whose machine speed wanders as the run goes on (a mean-reverting AR(1) level,
    correlation 0.9 block to block, stationary spread ``drift``): neighbouring blocks share
    the machine's state, so the blocks of one run are not independent draws."""
    phi = 0.9
    step = drift * math.sqrt(1 - phi**2)
    level, out = rng.gauss(0, drift), []
    for _ in range(n):
        level = phi * level + rng.gauss(0, step)
        out.append(median * math.exp(level + rng.gauss(0, noise)))
    return tuple(out)


def _drift_run(run_id: str, medians: dict[str, float], seed: int, offset: float = 1.0,
               drift: float = 0.03) -> Run:
    rng = random.Random(seed)
    ms = tuple(Measurement("matmul", s, "torch:cpu", stop_reason="ci_target",
                           block_times_s=_drifting(t * offset, 60, drift, rng))
               for s, t in medians.items())
    return Run(run_id, "bench", "2026-01-01T00:00:00+00:00", machine=(("fingerprint", "x"),),
               measurements=ms)


@pytest.mark.parametrize("seed", range(20))
def test_identical_runs_shifted_by_drift_flag_nothing(seed: int) -> None:
    # Two runs of the same work; the machine ran B 3% slower (drift between the runs), and
    # within each run it wandered by 3% (SD) too. Raw samples "prove" a difference (p ~ 1e-14
    # in the bug report); run-level units and the noise floor do not flag it.
    a = _drift_run("A", BASE, seed=300 + seed)
    b = _drift_run("B", BASE, seed=400 + seed, offset=1.03)
    raw = [mann_whitney_u(p.a.times_s, p.b.times_s)[1] for p in compare_runs(a, b).points]
    assert min(raw) < 1e-3  # the old test on raw samples would have flagged these
    result = compare_runs(a, b)
    assert result.regressions == ()
    assert all(p.verdict in ("unchanged", "unsure") for p in result.points)


@pytest.mark.parametrize("seed", range(10))
def test_an_injected_2x_slowdown_is_flagged_despite_drift(seed: int) -> None:
    a = _drift_run("A", BASE, seed=500 + seed)
    b = _drift_run("B", {**BASE, "1024": BASE["1024"] * 2}, seed=600 + seed)
    result = compare_runs(a, b)
    assert [p.key[1] for p in result.regressions] == ["1024"]
    (slow,) = result.regressions
    assert slow.ratio == pytest.approx(2.0, rel=0.15) and slow.noise_floor < 1.0


def test_chunks_keep_run_order_and_the_floor_is_the_largest_drift() -> None:
    assert chunk_medians([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) == [1.5, 3.5, 5.5, 7.5, 9.5,
                                                                     11.5]
    assert chunk_medians([5.0, 1.0, 3.0]) == [5.0, 1.0, 3.0]  # fewer blocks than chunks
    # a robust spread: one burst (the 9.0 chunk) does not set the floor
    quiet = noise_floor([1.0, 1.02, 0.98, 1.01, 0.99, 1.0], [1.0] * 6)
    assert quiet == pytest.approx(noise_floor([1.0, 1.02, 0.98, 1.01, 0.99, 9.0], [1.0] * 6),
                                  rel=0.6)
    assert 0.01 < quiet < 0.1
    assert noise_floor([1.0] * 6, [1.0] * 6) == 0.0
    wandering = noise_floor([1.0, 1.1, 0.9, 1.05, 0.95, 1.0], [1.0, 1.1, 0.9, 1.05, 0.95, 1.0])
    assert wandering > 0.2  # 3 SDs of the difference of two levels that each wander ~7%
    assert noise_floor([1.0] * 6, [1.0] * 6, run_medians=[1.0, 1.3]) == pytest.approx(0.3)


def test_repeated_baseline_runs_raise_the_floor() -> None:
    # A 15% change, significant within two runs; but three repeats of A already spread 25%
    a = _run("A", {"64": 1e-3}, seed=11, spread=0.005)
    b = _run("B", {"64": 1.15e-3}, seed=12, spread=0.005)
    assert compare_runs(a, b).points[0].verdict == "regression"
    repeats = [_run(f"A{i}", {"64": t}, seed=20 + i, spread=0.005)
               for i, t in enumerate((1.1e-3, 1.25e-3))]
    point = compare_runs(a, b, noise_runs=repeats).points[0]
    assert point.noise_floor == pytest.approx(0.25, rel=0.05)
    assert point.verdict == "unchanged" and not point.flagged


def test_a_change_at_a_contended_point_is_reported_not_flagged() -> None:
    rng = random.Random(13)
    a = _m("64", 1e-3, rng)
    b = Measurement(**{**_m("64", 2e-3, rng).__dict__, "contended": True})
    point = compare_point(a, b)
    assert point.verdict == "contended" and point.contended and not point.flagged
    assert compare_point(a, _m("64", 2e-3, rng)).verdict == "regression"
    same = Measurement(**{**_m("64", 1e-3, rng).__dict__, "contended": True})
    assert compare_point(a, same).verdict == "unchanged" and compare_point(a, same).contended


def test_a_microsecond_shift_between_runs_of_a_tiny_op_is_not_a_regression() -> None:
    rng = random.Random(7)
    # two back-to-back runs of a 32x32 matmul: each steady, levels 3.6 us and 4.15 us apart
    a, b = _m("32", 3.6e-6, rng, spread=0.005), _m("32", 4.15e-6, rng, spread=0.005)
    same = compare_point(a, b)
    assert same.verdict == "unchanged" and same.noise_floor >= 1e-6 / a.seconds("resident")
    # a real 2x slowdown of the same op still clears the microsecond floor
    assert compare_point(a, _m("32", 7.2e-6, rng, spread=0.005)).verdict == "regression"
    # at milliseconds the microsecond floor is no bar: a 15% change is flagged
    slow = compare_point(_m("1024", 2.5e-3, rng, spread=0.005),
                         _m("1024", 2.9e-3, rng, spread=0.005))
    assert slow.verdict == "regression"


# ---- the machine busy around the runs -------------------------------------------------------
QUIET_EVIDENCE = (("cores", 2.0), ("cpus", 2.0), ("load1", 0.4), ("others_s", 0.004),
                  ("others_share", 0.01))


def _with(run: Run, index: int | None = None, drop: tuple[str, ...] = (),
          **evidence: float) -> Run:
    """``run`` with each point's stored evidence quiet, or ``evidence`` at point ``index`` (all
    points when None; ``drop``: keys it lacks); every point's own verdict stays quiet."""
    from dataclasses import replace

    out = []
    for i, m in enumerate(run.measurements):
        numbers = dict(QUIET_EVIDENCE)
        if index is None or i == index:
            numbers.update(evidence)
            numbers = {k: v for k, v in numbers.items() if k not in drop}
        out.append(replace(m, contended=False, contention=tuple(sorted(numbers.items()))))
    return replace(run, measurements=tuple(out))


def test_a_neighbour_the_points_missed_makes_the_whole_comparison_inconclusive() -> None:
    # the bug report: two identical back-to-back runs, every point contended: false, another
    # process running; a 22% "regression" was flagged in 3 of 7 tries
    a = _with(_run("A", BASE, seed=31), load1=0.5)
    b = _with(_run("B", {**BASE, "256": BASE["256"] * 1.22}, seed=32), index=1, load1=3.4)
    result = compare_runs(a, b)
    assert result.busy == ("run B: load 3.4 on 2 CPUs",)
    assert result.verdict == "inconclusive: machine busy" and result.regressions == ()
    changed = {p.key[1]: p for p in result.points}["256"]
    assert changed.verdict == "contended" and changed.contended and not changed.flagged
    assert all(p.contended for p in result.points)
    # the same change on a quiet machine is a regression
    quiet = compare_runs(a, _with(_run("B", {**BASE, "256": BASE["256"] * 1.22}, seed=32)))
    assert quiet.busy == () and quiet.verdict == "regression"
    assert [p.key[1] for p in quiet.regressions] == ["256"]


@pytest.mark.parametrize(("evidence", "busy"), [
    ({"others_share": 0.12, "others_s": 0.05}, "run A: other processes used up to 12% of our cores"),
    ({"others_share": 0.08, "others_s": 0.05}, None),  # a quiet machine's daemons
    ({"others_share": 0.5, "others_s": 0.01}, None),  # two jiffies: no neighbour
    ({"load1": 2.9}, None),  # fewer runnable tasks than CPUs + LOAD_EXCESS
    ({"load1": 3.0}, "run A: load 3.0 on 2 CPUs"),
    ({"load1": 6.0, "cpus": 8.0}, None),
    # evidence stored before ``cpus`` was: read against the cores, as the verdict did then
    ({"load1": 5.0, "drop": ("cpus",)}, "run A: load 5.0 on 2 CPUs"),
])
def test_which_stored_evidence_says_the_machine_was_busy(evidence: dict, busy: str | None) -> None:
    a = _with(_run("A", BASE, seed=41), index=0, **evidence)
    result = compare_runs(a, _with(_run("B", BASE, seed=42)))
    assert result.busy == ((busy,) if busy else ())
    assert result.verdict == ("inconclusive: machine busy" if busy else "unchanged")


def test_a_contended_point_anywhere_makes_every_point_suspect() -> None:
    from dataclasses import replace

    a = _with(_run("A", BASE, seed=51))
    b = _with(_run("B", {**BASE, "1024": BASE["1024"] * 2}, seed=52))
    first = replace(b.measurements[0], contended=True, contention_note="CPU steal 9%")
    b = replace(b, measurements=(first, *b.measurements[1:]))
    result = compare_runs(a, b)
    assert result.busy == ("run B: 1 of 3 points contended",)
    assert {p.key[1]: p.verdict for p in result.points}["1024"] == "contended"
    assert result.verdict == "inconclusive: machine busy" and not result.regressions


def test_a_point_that_broke_is_flagged_however_busy_the_machine() -> None:
    rng = random.Random(61)
    a = _with(_run("A", {"64": 1e-3}, seed=61), load1=9.0)
    broken = Run("B", "bench", "2026-01-01T00:00:00+00:00", machine=(("fingerprint", "abc"),),
                  measurements=(_m("64", 1e-3, rng, status="oom"),))
    result = compare_runs(a, broken)
    assert result.busy and [p.verdict for p in result.regressions] == ["broken"]
    assert result.verdict == "regression"


def test_the_run_verdict_without_a_neighbour() -> None:
    a = _with(_run("A", BASE, seed=71))
    assert compare_runs(a, _with(_run("B", BASE, seed=72))).verdict == "unchanged"
    fast = _with(_run("B", {**BASE, "1024": BASE["1024"] / 2}, seed=73))
    assert compare_runs(a, fast).verdict == "improvement"
    # runs from before chipfit stored evidence: nothing says busy (unknown is not busy)
    assert compare_runs(_run("A", BASE, seed=74), _run("B", BASE, seed=75)).busy == ()


def test_the_compare_output_states_the_run_verdict_and_why() -> None:
    from rich.console import Console

    from chipfit.report.history_view import compare_dict, compare_table

    a = _with(_run("A", BASE, seed=81), load1=7.5)
    result = compare_runs(a, _with(_run("B", {**BASE, "256": BASE["256"] * 2}, seed=82)))
    data = compare_dict(result)
    assert data["verdict"] == "inconclusive: machine busy" and data["regressions"] == 0
    assert data["busy"] == ["run A: load 7.5 on 2 CPUs"]
    console = Console(width=300, record=True, force_terminal=False)
    console.print(compare_table(result))
    text = console.export_text()
    assert "verdict: inconclusive: machine busy; 0 regression(s)" in text
    assert "the machine was busy (run A: load 7.5 on 2 CPUs)" in text
