"""The HTML report's pieces, without a browser: one run per series, one row per device, the
per-model summary's provenance, contended confidence, unbroken flags, the LLM row's sources."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from chipfit.analysis.crossover import Crossing, Crossover, SeriesKey
from chipfit.report.crossover_view import confidence_text, crossing_item, no_crossing_item
from chipfit.report.html import (
    device_rows,
    newest_series,
    prepare,
    report_figures,
    text,
    workload_summary,
)
from chipfit.results import DeviceInfo, Discovery, Measurement, Run

CPU = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "AMD EPYC 7B13", cores=2, threads=4)
MACHINE = (("hostname", "box"), ("fingerprint", "f00d"))


def point(size: int, seconds: float, device: str = "torch:cpu", **kw) -> Measurement:
    return Measurement("m.py:make", str(size), device, block_times_s=(seconds,) * 5,
                       stop_reason="ci_target", **kw)


def run(run_id: str, started: str, *ms: Measurement) -> Run:
    return Run(run_id, "bench", started, machine=MACHINE, discovery=Discovery((CPU,)),
               measurements=ms)


def test_a_series_measured_by_two_runs_is_shown_from_the_newest_only():
    old = run("20250101T000000Z-aaaaaa", "2025-01-01T00:00:00+00:00", point(1, 0.002),
              point(2, 0.003), point(1, 0.5, "torch:cpu@1t"))
    new = run("20250102T000000Z-bbbbbb", "2025-01-02T00:00:00+00:00", point(1, 0.09),
              point(4, 0.2))
    assert newest_series([new, old])[("m.py:make", "torch:cpu", "float32", "inference")] == 0
    data = prepare([old, new], resamples=100)
    shown = {(m.device, m.size, m.median_s) for m in data.measurements}
    assert shown == {("torch:cpu", "1", 0.09), ("torch:cpu", "4", 0.2),
                     ("torch:cpu@1t", "1", 0.5)}  # a series only the old run measured stays
    assert data.superseded == (("m.py:make", "torch:cpu", old.run_id, new.run_id),)
    assert "1 older run(s) of it left out" in workload_summary(data, "m.py:make")


def test_one_device_row_per_device_however_many_runs_saw_it():
    runs = [run(f"2025010{i}T000000Z-aaaaa{i}", f"2025-01-0{i}T00:00:00+00:00",
                point(1, 0.01), point(1, 0.02, "torch:cpu@1t")) for i in range(1, 9)]
    data = prepare(runs, resamples=100, ceilings={})
    rows = device_rows(data, {})
    assert [r[0] for r in rows] == ["torch:cpu", "torch:cpu@1t"]
    assert rows[0][-1] == "8 runs" and "pinned to 1 thread(s)" in rows[1][1]


def test_the_summary_names_the_model_and_tags_contended_figures():
    busy = run("20250101T000000Z-aaaaaa", "2025-01-01T00:00:00+00:00",
               point(1, 0.01, contended=True), point(8, 0.05, contended=True))
    data = prepare([busy], resamples=100, ceilings={})
    line = workload_summary(data, "m.py:make")
    assert line.startswith("<strong>m.py:make</strong>: fastest at size 1: torch:cpu")
    assert line.count("src-contended") == 2  # both figures come from contended points
    time_fig = report_figures(data)[0][2]  # the plot's legend says so too
    assert [t.get_text() for t in time_fig.legends[0].get_texts()] == ["torch:cpu (contended)"]
    quiet = replace(busy, measurements=tuple(replace(m, contended=False)
                                             for m in busy.measurements))
    assert "src-contended" not in workload_summary(prepare([quiet], resamples=100,
                                                           ceilings={}), "m.py:make")


def crossover(contended: bool) -> Crossover:
    a = SeriesKey("matmul", "torch:cpu", "float32", "inference")
    b = replace(a, device="torch:cpu@1t")
    x = Crossing(111.0, (90.0, 130.0), "64", 64.0, "128", 128.0, b, a, 1.0)
    return Crossover(a, b, "one", (x,), (), None, False, 0.95, 2000,
                     from_contended=contended)


def test_all_busy_points_cannot_give_a_confident_crossover():
    quiet, busy = crossover(False), crossover(True)
    assert confidence_text(quiet, quiet.crossings[0]) == "100%"
    assert confidence_text(busy, busy.crossings[0], short=True) == "low (contended)"
    line = crossing_item(busy, busy.crossings[0], "n")
    assert line.startswith("n ≈ 111 (measured 64 and 128): torch:cpu@1t faster below")
    assert "confidence low: from contended points" in line and "100%" in line
    assert "100%" not in crossing_item(busy, busy.crossings[0], "n").split("low")[0]
    from chipfit.report.crossover_view import crossover_sentence

    assert "confidence low" in crossover_sentence(busy, "n")  # the terminal says it too
    assert "100% of 2000 bootstrap resamples" in crossover_sentence(quiet, "n")
    flat = replace(quiet, kind="none", crossings=())
    assert no_crossing_item(flat).endswith("not compared (fewer than two sizes measured on both)")


@pytest.mark.parametrize("raw, kept", [
    ("run chipfit calibrate --devices torch:cpu", '<span class="nw">--devices</span>'),
    ("-o out.html or --json", '<span class="nw">-o</span>'),
    ("<b>--x</b>", '&lt;b&gt;<span class="nw">--x</span>&lt;/b&gt;'),
    ("a - b, x-y, 3-4", None),
])
def test_flags_are_kept_on_one_line_and_markup_stays_text(raw, kept):
    out = text(raw)
    assert "<b>" not in out
    if kept is None:
        assert "nw" not in out
    else:
        assert kept in out


def test_the_llm_row_says_where_capacity_and_price_come_from():
    from chipfit.report.llm_section import llm_row

    memory = SimpleNamespace(total=18.5e9)
    local = SimpleNamespace(hardware="local", devices_needed=1, memory_capacity=25e9,
                            capacity_source="measured", memory=memory, max_batch=4,
                            prediction=None, why="no calibration")
    row = llm_row(local)
    assert "src-measured" in row[3] and "25 GB" in row[3]  # probed here, not "catalog"
    assert row[8] == "- (no price)" and row[9] == "no calibration"
