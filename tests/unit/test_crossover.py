"""The crossover finder on constructed series: one crossover, none, several, noisy."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from chipfit.analysis.crossover import (
    Point,
    Series,
    SeriesKey,
    analyze,
    bisection_sizes,
    build_series,
    comparable_pairs,
    compare,
    rate_unit,
    summarize,
)
from chipfit.errors import InvalidInputError
from chipfit.results import Measurement
from chipfit.spec import DeviceRef, Job

SIZES = [2**k for k in range(6, 21)]  # 64 .. 1M


def cpu_like(x: float) -> float:
    return 1e-5 + 1e-8 * x  # little overhead, slow per unit of work


def gpu_like(x: float) -> float:
    return 1e-4 + 1e-9 * x  # launch overhead, fast per unit: crosses cpu_like at x = 1e4


def make_series(device: str, model, sizes=SIZES, noise: float = 0.01, n: int = 9,
                seed: int = 1, dtype: str = "float32") -> Series:
    rng = np.random.default_rng(seed)
    points = tuple(Point(str(x), float(x), tuple(model(x) * rng.lognormal(0.0, noise, n)))
                   for x in sizes)
    return Series(SeriesKey("w", device, dtype, "inference"), points)


def test_one_crossover_interpolated_in_log_space():
    a, b = make_series("cpu", cpu_like, seed=1), make_series("gpu", gpu_like, seed=2)
    result = compare(a, b)
    assert result.kind == "one"
    (cross,) = result.crossings
    assert (cross.lower, cross.upper) == ("8192", "16384")
    assert cross.faster_below == a.key and cross.faster_above == b.key
    # exact crossing of the two models is 1e4; log-log interpolation lands within a few %
    assert cross.x == pytest.approx(1e4, rel=0.05)
    lo, hi = cross.interval
    assert cross.lower_x <= lo <= cross.x <= hi <= cross.upper_x
    assert cross.confidence > 0.95
    assert result.faster is None and result.source == "measured"


def test_order_of_the_pair_does_not_move_the_crossing():
    a, b = make_series("cpu", cpu_like, seed=1), make_series("gpu", gpu_like, seed=2)
    ab, ba = compare(a, b).crossings[0], compare(b, a).crossings[0]
    assert ab.x == pytest.approx(ba.x, rel=1e-9)
    assert ba.faster_below == a.key


def test_no_crossover_names_the_faster_series_throughout():
    a = make_series("slow", lambda x: 2 * cpu_like(x), seed=3)
    b = make_series("fast", cpu_like, seed=4)
    result = compare(a, b)
    assert result.kind == "none" and result.crossings == ()
    assert result.faster == b.key
    assert all(r.winner == "b" and r.ratio == pytest.approx(2, rel=0.05) for r in result.ratios)
    lo, hi = result.ratios[0].interval
    assert lo < result.ratios[0].ratio < hi


def test_several_crossovers_each_bracketed():
    ratio = {x: (0.5 if i < 5 else 2.0 if i < 10 else 0.5) for i, x in enumerate(SIZES)}
    a = make_series("a", lambda x: 1e-3 * ratio[x], seed=5)
    b = make_series("b", lambda x: 1e-3, seed=6)
    result = compare(a, b)
    assert result.kind == "several" and len(result.crossings) == 2
    first, second = result.crossings
    assert (first.lower, first.upper) == (str(SIZES[4]), str(SIZES[5]))
    assert (second.lower, second.upper) == (str(SIZES[9]), str(SIZES[10]))
    assert first.faster_below == a.key and second.faster_below == b.key
    # equal and opposite log ratios (up to 1% noise): the crossing is near the geometric midpoint
    assert first.x == pytest.approx(math.sqrt(SIZES[4] * SIZES[5]), rel=0.02)


@pytest.mark.parametrize("seed", range(8))
def test_noise_alone_makes_no_crossover(seed):
    # identical distributions with 20% noise: medians flip back and forth, but every size is
    # a tie in the bootstrap, so nothing is reported
    a = make_series("a", cpu_like, noise=0.2, seed=100 + seed)
    b = make_series("b", cpu_like, noise=0.2, seed=200 + seed)
    result = compare(a, b)
    assert result.kind == "none", [(r.size, r.p_a_faster) for r in result.ratios]
    signs = {r.ratio < 1 for r in result.ratios}
    assert signs == {True, False}  # the naive median comparison would have crossed
    assert result.faster is None


def test_noisy_real_crossover_is_found_once_with_a_wider_interval():
    clean = compare(make_series("a", cpu_like, seed=1), make_series("b", gpu_like, seed=2))
    noisy = compare(make_series("a", cpu_like, noise=0.15, seed=7),
                    make_series("b", gpu_like, noise=0.15, seed=8))
    assert noisy.kind == "one"
    (cross,) = noisy.crossings
    assert cross.lower_x <= 1e4 <= cross.upper_x
    width = math.log(cross.interval[1] / cross.interval[0])
    clean_width = math.log(clean.crossings[0].interval[1] / clean.crossings[0].interval[0])
    assert width > clean_width


def test_ties_between_decided_sizes_widen_the_bracket():
    # a faster below 256, a tie at 256 and 512 (same distribution), b faster from 1024 on
    table = {64: 0.5, 128: 0.5, 256: 1.0, 512: 1.0, 1024: 2.0, 2048: 2.0}
    sizes = list(table)
    a = make_series("a", lambda x: 1e-3 * table[x], sizes=sizes, noise=0.05, seed=9)
    b = make_series("b", lambda x: 1e-3, sizes=sizes, noise=0.05, seed=10)
    result = compare(a, b)
    (cross,) = result.crossings
    assert [r.winner for r in result.ratios[2:4]] == ["tie", "tie"]
    assert (cross.lower, cross.upper) == ("128", "1024")
    assert 128 < cross.x < 1024


def test_no_common_sizes_is_no_crossover():
    a = make_series("a", cpu_like, sizes=[64, 128])
    b = make_series("b", gpu_like, sizes=[256, 512])
    result = compare(a, b)
    assert result.kind == "none" and result.ratios == () and result.faster is None
    assert all(math.isnan(v) for v in result.span)


@pytest.mark.parametrize("level, resamples", [(0.2, 2000), (1.0, 2000), (0.95, 10)])
def test_bad_settings_are_usage_errors(level, resamples):
    a = make_series("a", cpu_like)
    with pytest.raises(InvalidInputError):
        compare(a, a, level=level, resamples=resamples)


# ---- from measurements: one code path for every kind of pair ------------------------------

def measurement(device: str, size: int, seconds: float, *, dtype: str = "float32",
                copy_s: float = 0.0, status: str = "ok", items: int = 1,
                flops: float = 0.0, seed: int = 0) -> Measurement:
    rng = np.random.default_rng(seed + size)
    times = tuple(seconds * rng.lognormal(0, 0.01, 7)) if status == "ok" else ()
    return Measurement("w", str(size), device, dtype, status=status, block_times_s=times,
                       transfer_h2d_s=copy_s / 2, transfer_d2h_s=copy_s / 2,
                       items_per_call=items, flops=flops,
                       stop_reason="ci_target" if times else "")


def sweep_of(device: str, model, *, dtype: str = "float32", copy=lambda x: 0.0, seed=0):
    return [measurement(device, x, model(x), dtype=dtype, copy_s=copy(x), seed=seed)
            for x in SIZES]


def test_device_pairs_and_dtype_pairs_go_through_the_same_comparison():
    ms = (sweep_of("torch:cpu", cpu_like, seed=1)
          + sweep_of("torch:cpu@1t", gpu_like, seed=2)
          + sweep_of("torch:cpu", lambda x: 1.5 * cpu_like(x), dtype="bfloat16", seed=3))
    analysis = analyze(ms, resamples=500)
    pairs = {(c.a.device, c.a.dtype, c.b.device, c.b.dtype): c for c in analysis.crossovers}
    # device pair (same dtype), dtype pair (same device); the cross pair differs in both
    assert set(pairs) == {("torch:cpu", "float32", "torch:cpu@1t", "float32"),
                          ("torch:cpu", "float32", "torch:cpu", "bfloat16")}
    assert pairs["torch:cpu", "float32", "torch:cpu@1t", "float32"].kind == "one"
    assert pairs["torch:cpu", "float32", "torch:cpu", "bfloat16"].differs == "dtype"
    assert all(c.view == "resident" for c in analysis.crossovers)  # nothing copies


def test_end_to_end_view_adds_copies_and_moves_the_crossover():
    # A GPU-like device that also pays a copy proportional to the data: end to end, the
    # crossover moves up (the seeds' point about transfers).
    ms = (sweep_of("torch:cpu", cpu_like, seed=1)
          + sweep_of("torch:cuda:0", gpu_like, copy=lambda x: 2e-4 + 2e-9 * x, seed=2))
    analysis = analyze(ms, resamples=500)
    by_view = {c.view: c for c in analysis.crossovers}
    assert set(by_view) == {"resident", "end_to_end"} and by_view["end_to_end"].copies
    resident, e2e = by_view["resident"].crossings[0], by_view["end_to_end"].crossings[0]
    assert resident.x == pytest.approx(1e4, rel=0.05)
    # 1e-5 + 1e-8 x = 3e-4 + 3e-9 x  ->  x = 2.9e-4 / 7e-9 ~ 41429
    assert e2e.x == pytest.approx(41429, rel=0.08)


def test_series_skip_failed_points_and_pairs_need_one_difference():
    ms = [measurement("a", 64, 1e-3), measurement("a", 128, 0, status="error"),
          measurement("b", 64, 2e-3, dtype="bfloat16")]
    series = build_series(ms, views=("resident",))
    assert [len(s.points) for s in series] == [1, 1]
    assert comparable_pairs(series) == []  # device and dtype both differ


def test_largest_fitting_size_stops_at_the_first_oom_and_best_throughput():
    ms = [measurement("dev", x, 1e-3 * x / 64, items=x) for x in (64, 128, 256)]
    ms += [measurement("dev", 512, 0, status="oom"), measurement("dev", 1024, 1e-1, items=1024)]
    (summary,) = summarize(ms, limits={("w", "dev", "float32", "inference"): "300"})
    assert summary.largest_ok == "256" and summary.first_oom == "512"
    assert summary.tried == 5 and summary.ok == 4
    assert summary.rate_unit == "items/s" and summary.guard_limit == "300"
    # time is linear in size, so items/s is flat; the 1024 point above the OOM is ignored
    assert summary.best_size in {"64", "128", "256"}
    assert summary.best_rate == pytest.approx(64 / 1e-3, rel=0.05)


def test_best_rate_unit_follows_the_work():
    flop = [measurement("d", x, 1e-3, flops=2.0 * x**3) for x in (64, 128)]
    assert rate_unit(flop) == "FLOP/s"
    (s,) = summarize(flop)
    assert s.best_size == "128" and s.first_oom is None and s.largest_ok == "128"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 10, 501])
def test_fast_bootstrap_medians_equal_numpy_on_the_same_resamples(n):
    from chipfit.analysis.crossover import _resampled_medians

    data = np.random.default_rng(n).lognormal(0, 0.5, n)
    fast = _resampled_medians(data, 400, np.random.default_rng(7))
    picks = np.random.default_rng(7).integers(0, n, size=(400, n), dtype=np.int16)
    assert np.allclose(fast, np.median(np.sort(data)[picks], axis=1))


def test_a_series_that_never_ran_is_not_paired_and_says_why():
    ms = sweep_of("torch:cpu", cpu_like)[:3] + [
        Measurement("w", str(x), "jax:cpu:0", status="unsupported",
                    note="w has no jax implementation") for x in SIZES[:3]]
    analysis = analyze(ms, resamples=200)
    assert analysis.crossovers == ()
    jax = next(s for s in analysis.summaries if s.device == "jax:cpu:0")
    assert jax.largest_ok is None and jax.problem == "unsupported: w has no jax implementation"


# ---- interpolation gaps, bisection, contended points ----------------------------------------
def test_a_crossing_in_a_ladder_gap_spans_the_whole_gap():
    a, b = make_series("cpu", cpu_like, seed=1), make_series("gpu", gpu_like, seed=2)
    (cross,) = compare(a, b).crossings
    # the bootstrap alone is sure to a few percent, but nothing was measured in 8192..16384
    assert cross.gap and cross.interval == (cross.lower_x, cross.upper_x)


def test_sizes_measured_inside_the_bracket_narrow_the_interval():
    extra = bisection_sizes(8192, 16384)
    assert len(extra) == 3 and all(8192 < v < 16384 for v in extra)
    sizes = sorted(SIZES + extra)
    a = make_series("cpu", cpu_like, sizes=sizes, seed=1)
    b = make_series("gpu", gpu_like, sizes=sizes, seed=2)
    (cross,) = compare(a, b).crossings
    assert not cross.gap and cross.upper_x / cross.lower_x < 1.5
    lo, hi = cross.interval
    assert cross.lower_x <= lo < hi <= cross.upper_x and hi / lo < 1.2
    assert lo <= 1e4 <= hi * 1.05


def test_bisection_sizes_skip_what_was_measured():
    assert bisection_sizes(32, 128, have=[32, 64, 128]) == [45, 91]
    assert bisection_sizes(16, 17) == []  # no integer between


def _measured(device: str, size: int, seconds: float, contended: bool | None = None):
    rng = np.random.default_rng(size)
    return Measurement("matmul", str(size), device, stop_reason="ci_target",
                       block_times_s=tuple(seconds * rng.lognormal(0, 0.01, 9)),
                       contended=contended)


def test_contended_points_are_left_out_or_the_crossover_is_labelled():
    sizes = [64, 128, 256, 512, 1024]
    ms = [_measured("torch:cpu@1t", x, cpu_like(x * 40)) for x in sizes]
    ms += [_measured("torch:cpu", x, gpu_like(x * 40), contended=(x == 256)) for x in sizes]
    result = analyze(ms, resamples=200)
    assert result.left_out == 1  # torch:cpu at 256 was measured while the machine was busy
    (c,) = [c for c in result.crossovers if c.view == "resident"]
    assert not c.from_contended and "256" not in [r.size for r in c.ratios]
    busy = [replace(m, contended=True) if m.device == "torch:cpu" else m for m in ms]
    shared = analyze(busy, resamples=200)
    (c,) = [c for c in shared.crossovers if c.view == "resident"]
    assert shared.left_out == 0 and c.from_contended
    from chipfit.report.crossover_view import crossover_sentence

    assert "from contended points" in crossover_sentence(c, "n")


def test_a_contended_point_still_shows_what_fits_but_sets_no_best_rate():
    ms = [_measured("torch:cpu", x, 1e-6 * x, contended=(x == 1024)) for x in (64, 256, 1024)]
    ms[-1] = replace(ms[-1], block_times_s=tuple(t / 4 for t in ms[-1].block_times_s))
    ms.append(Measurement("matmul", "4096", "torch:cpu", status="oom", note="does not fit"))
    result = analyze(ms, resamples=200)
    (summary,) = result.summaries
    assert result.left_out == 1 and summary.tried == 4 and summary.ok == 3
    assert summary.largest_ok == "1024" and summary.first_oom == "4096"  # it ran: it fits
    assert summary.best_size != "1024"  # its 4x rate was measured on a shared machine


def test_a_sweep_bisects_a_gap_on_both_series_of_the_crossing():
    from chipfit.pipelines.sweep import bisection_jobs
    from chipfit.spec import TimingConfig

    sizes = [16, 32, 64, 128, 256]
    ms = [_measured("torch:cpu@1t", x, cpu_like(x * 100)) for x in sizes]  # cross at 100
    ms += [_measured("torch:cpu", x, gpu_like(x * 100)) for x in sizes]
    analysis = analyze(ms, resamples=200)
    (cross,) = [c for c in analysis.crossovers if c.view == "resident"][0].crossings
    assert (cross.lower, cross.upper, cross.gap) == ("64", "128", True)
    timing = TimingConfig.quick()
    jobs = [Job("matmul", str(x), DeviceRef.parse(d), timing=timing) for x in sizes
            for d in ("torch:cpu@1t", "torch:cpu")]
    extra = bisection_jobs(analysis, jobs)
    inside = sorted({int(j.size) for j in extra})
    assert inside == bisection_sizes(cross.lower_x, cross.upper_x)
    assert {str(j.device) for j in extra} == {"torch:cpu@1t", "torch:cpu"}
    assert all(j.timing == timing for j in extra) and len(extra) == 2 * len(inside)
