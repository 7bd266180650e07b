"""The input-pipeline comparison on hand-built numbers (pure), its words, and the flag parsers."""

from __future__ import annotations

import io
import math

import pytest

from chipfit.analysis.feed import (
    CPU_ENOUGH,
    Consumer,
    Supply,
    compare_feed,
    consumer_from_prediction,
    supply_from_times,
    workers_needed,
)
from chipfit.errors import InvalidInputError


def _supply(workers: int, rate: float, contended: bool = False) -> Supply:
    return Supply(workers, rate, rate * 0.95, rate * 1.05, 0.1, contended)


def _gpu(rate: float, name: str = "l4") -> Consumer:
    return Consumer(name, name.upper(), "gpu", rate, rate * 0.9, rate * 1.1, "predicted", 32)


def _cpu(rate: float) -> Consumer:
    return Consumer("torch:cpu", "EPYC", "cpu", rate, rate * 0.97, rate * 1.03, "measured", 32,
                    local=True)


SUPPLIES = [_supply(0, 100.0), _supply(1, 180.0), _supply(2, 340.0)]


def test_a_fast_gpu_is_starved_and_needs_more_workers_than_cores():
    report = compare_feed(SUPPLIES, [_gpu(2900.0)], cores=2)
    (f,) = report.findings
    assert report.best.workers == 2 and f.status == "starved"
    assert f.delivered == 340.0 and f.busy_share == pytest.approx(340 / 2900)
    assert f.workers_needed == math.ceil(2900 / 180)  # best per-worker rate: 1 worker, 180/s
    assert report.verdict == "io-bound"


def test_a_slow_gpu_is_fed_and_an_overlapping_band_is_borderline():
    report = compare_feed(SUPPLIES, [_gpu(200.0, "t4"), _gpu(345.0, "a10")], cores=2)
    t4, a10 = report.findings
    assert (t4.status, t4.delivered, t4.workers_needed) == ("fed", 200.0, None)
    assert a10.status == "borderline" and a10.delivered == 340.0
    assert report.verdict == "fed"


def test_the_cpu_prepares_and_computes_on_the_same_cores():
    report = compare_feed(SUPPLIES, [_cpu(60.0), _gpu(2900.0)], cores=2)
    cpu = report.findings[0]
    assert cpu.supply.workers == 0  # the in-process rate, not the best worker count
    assert cpu.delivered == pytest.approx(1 / (1 / 100 + 1 / 60))
    assert report.verdict == "io-bound"  # starved GPU still far ahead of the CPU


def test_io_bound_everywhere_makes_the_cpu_the_right_choice():
    supplies = [_supply(0, 400.0), _supply(2, 420.0)]
    report = compare_feed(supplies, [_cpu(5000.0), _gpu(2900.0), _gpu(9000.0, "h100")], cores=2)
    cpu = report.findings[0]
    assert cpu.delivered == pytest.approx(1 / (1 / 400 + 1 / 5000))
    assert cpu.delivered >= CPU_ENOUGH * 420.0
    assert report.verdict == "io-bound-cpu"


def test_contended_supply_points_are_set_aside_unless_nothing_else_exists():
    noisy = [_supply(0, 100.0), _supply(2, 9000.0, contended=True)]
    report = compare_feed(noisy, [_gpu(500.0)], cores=2)
    assert report.best.workers == 0 and not report.from_contended
    all_busy = [_supply(0, 100.0, True), _supply(2, 300.0, True)]
    report = compare_feed(all_busy, [_gpu(500.0)], cores=2)
    assert report.best.workers == 2 and report.from_contended


def test_nothing_to_compare():
    assert compare_feed([], [_gpu(100.0)], cores=2).verdict == "none"
    assert compare_feed(SUPPLIES, [], cores=2).verdict == "none"
    assert compare_feed(SUPPLIES, [_cpu(50.0)], cores=2).verdict == "cpu-only"


def test_workers_needed_from_the_in_process_rate_alone():
    assert workers_needed([_supply(0, 100.0)], 250.0) == 3
    assert workers_needed([], 250.0) is None


def test_a_prediction_becomes_a_consumer_with_the_copy_and_its_band():
    c = consumer_from_prediction("l4", "NVIDIA L4", "gpu", 32, seconds=0.010, low_s=0.008,
                                 high_s=0.0125, transfer_s=0.002, batch=32, basis="gpu model")
    assert c.source == "predicted" and c.rate == pytest.approx(32 / 0.012)
    assert c.low == pytest.approx(32 / (0.0125 * 1.2)) and c.high == pytest.approx(32 / (0.008 * 1.2))


def test_a_supply_without_a_ci_claims_no_band():
    s = supply_from_times(2, 8, 0.01, (math.nan, math.nan))
    assert s.low == s.high == s.rate == pytest.approx(800.0)


def test_the_words_say_every_source_and_fit_80_columns():
    from rich.console import Console

    from chipfit.report.feed_view import feed_dict, feed_lines, feed_renderable

    report = compare_feed(SUPPLIES, [_cpu(60.0), _gpu(2900.0)], cores=2)
    lines = feed_lines(report, "images")
    assert lines[0].startswith("Feed first") and "340 samples/s with 2 workers (measured)" in lines[0]
    gpu = lines[2]
    assert "2,900 samples/s (predicted, 2,610-3,190)" in gpu and "starved" in gpu
    assert "~17 workers (estimated)" in gpu and "2 cores" in gpu and "DALI" in gpu
    assert "estimated" in lines[1] and "same cores" in lines[1]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(feed_renderable(report, "images", "chipfit feed resnet50"))
    assert max(len(line) for line in console.export_text().splitlines()) <= 80
    data = feed_dict(report, "text")
    assert data["verdict"] == "io-bound" and data["devices"][1]["source"] == "predicted"
    assert "tokenise the dataset once" in data["devices"][1]["line"]


def test_worker_and_source_parsers():
    from chipfit.pipelines.feed import parse_source, parse_workers

    assert parse_workers(None, cores=2) == (0, 1, 2)
    assert parse_workers(None, cores=12) == (0, 1, 2, 4, 8, 12)
    assert parse_workers("2, 0,2", cores=2) == (0, 2)
    assert parse_source("500x375") == (500, 375)
    for bad in ("1,x", "-1", "", "1e3", "٣"):
        with pytest.raises(InvalidInputError, match="--workers"):
            parse_workers(bad, cores=2)
    with pytest.raises(InvalidInputError, match="too many"):
        parse_workers("99999999999", cores=2)
    for bad in ("0x0", "500", "x375", "99999x2", "5e2x3"):
        with pytest.raises(InvalidInputError, match="--source-size"):
            parse_source(bad)


def test_our_own_workers_are_not_someone_elses_load():
    from chipfit.pipelines.feed import _own_workers

    busy = {"cores": 2.0, "load1": 3.5, "window_s": 60.0, "nivcsw": 400.0,
            "nivcsw_per_s": 300.0, "wait_share": 0.4, "wait_s": 24.0}
    assert _own_workers(tuple(busy.items()), workers=0, cores=2).contended
    # two workers for a minute add 2 x (1 - 1/e) = 1.26 to the 1-minute load average, and
    # with as many workers as cores the consumer's wait for a core is part of the measurement
    mine = _own_workers(tuple(busy.items()), workers=2, cores=2)
    assert mine.contended is False and dict(mine.numbers)["load1"] == pytest.approx(2.236, abs=1e-3)


def test_advice_never_asks_for_workers_that_were_measured_and_fell_short():
    from chipfit.report.feed_view import finding_line

    supplies = [_supply(1, 200.0), _supply(2, 210.0)]  # two workers barely beat one
    (f,) = compare_feed(supplies, [_gpu(380.0)], cores=4).findings
    assert f.status == "starved" and f.workers_needed == 2 and f.most_workers == 2
    line = finding_line(f, "images")
    assert "2 workers were measured and do not reach it" in line and "add workers" not in line
    (g,) = compare_feed([_supply(1, 200.0)], [_gpu(380.0)], cores=4).findings
    assert "~2 workers would feed it (estimated): add workers" in finding_line(g, "images")
