"""Crossover words, HTML escaping and plot-label helpers (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from chipfit.analysis.crossover import Point, Series, SeriesKey, SeriesSummary, compare
from chipfit.report.crossover_view import (
    crossover_sentence,
    fmt_position,
    series_name,
    summary_sentence,
)
from chipfit.report.html import Safe, esc, num
from chipfit.report.plots import plain, size_tick, slug


def series(device: str, times: dict[int, float], dtype: str = "float32") -> Series:
    rng = np.random.default_rng(len(device) + len(dtype))
    return Series(SeriesKey("matmul", device, dtype, "inference"),
                  tuple(Point(str(x), float(x), tuple(t * rng.lognormal(0, 0.01, 9)))
                        for x, t in times.items()))


def test_sentences_for_one_none_and_several():
    cpu = series("torch:cpu", {16: 1e-6, 32: 2e-6, 64: 8e-6, 128: 6e-5})
    gpu = series("torch:cuda:0", {16: 1e-5, 32: 1e-5, 64: 1e-5, 128: 1.1e-5})
    one = crossover_sentence(compare(cpu, gpu), "n")
    assert one.startswith("matmul [inference, no copies: resident = end to end] "
                          "torch:cpu vs torch:cuda:0: one crossover at n ≈ ")
    assert "(between the measured 64 and 128): torch:cpu is faster below, torch:cuda:0 above" in one
    assert "bootstrap" in one and one.endswith("(measured).")
    slow = series("torch:cpu@1t", {16: 3e-6, 32: 6e-6, 64: 2.4e-5, 128: 1.8e-4})
    none = crossover_sentence(compare(cpu, slow), "n")
    assert "no crossover from n = 16 to 128: torch:cpu is faster at every size" in none
    wobble = series("jax:cpu:0", {16: 2e-6, 32: 1e-6, 64: 1.6e-5, 128: 3e-5})
    several = crossover_sentence(compare(cpu, wobble), "n")
    assert "3 crossovers - the faster one changes more than once" in several


def test_dtype_pairs_are_named_by_dtype():
    a = series("torch:cpu", {16: 1e-6, 32: 2e-6}, "float32")
    b = series("torch:cpu", {16: 2e-6, 32: 4e-6}, "bfloat16")
    text = crossover_sentence(compare(a, b), "n")
    assert "float32 on torch:cpu vs bfloat16 on torch:cpu" in text
    assert series_name(a.key, "device") == "torch:cpu"


def test_summary_sentence_tags_measured_and_predicted():
    s = SeriesSummary("cnn", "torch:cpu", "float32", "inference", tried=5, ok=4,
                      largest_ok="16", first_oom="32", best_size="8", best_rate=1234.5,
                      rate_unit="items/s", guard_limit="24")
    text = summary_sentence(s, "batch")
    assert "largest that fits: batch = 16; 32 did not fit" in text
    assert "memory guard admits up to batch = 24 (predicted" in text
    assert "highest throughput at batch = 8: 1,234 items/s (measured)" in text


@pytest.mark.parametrize("x, text", [(10013.2, "10,000"), (18.44, "18.4"), (0.01234, "0.0123"),
                                     (float("nan"), "?"), (256.0, "256")])
def test_fmt_position_three_significant_figures(x, text):
    assert fmt_position(x) == text


def test_esc_escapes_user_text_once():
    assert esc('<script>"x" & \'y\'</script>') == (
        "&lt;script&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/script&gt;")
    assert esc(esc("<b>")) == "&lt;b&gt;"  # Safe passes through, never double-escaped
    tagged = num("<1>", "predicted")
    assert isinstance(tagged, Safe) and "&lt;1&gt;" in tagged and "src-predicted" in tagged


def test_plot_label_helpers():
    assert plain("cost $5 and $6") == r"cost \$5 and \$6"
    assert plain("C:\\models\\a.pt") == "C:\\models\\a.pt"
    assert slug("<script>alert(1)</script>") == "script-alert-1-script"
    assert slug("../../etc") == "etc" and slug("***") == "x"
    assert [size_tick(v) for v in (16, 65536, 2**20, 3e6, 0.5)] == [
        "16", "65,536", "2²⁰", "3,000,000", "0.5"]


def test_a_series_that_never_ran_says_why():
    s = SeriesSummary("resnet50", "jax:cpu:0", "float32", "inference", tried=2, ok=0,
                      largest_ok=None, first_oom=None, best_size=None, best_rate=float("nan"),
                      rate_unit="items/s", problem="unsupported: resnet50 has no jax builder")
    assert summary_sentence(s, "batch") == (
        "jax:cpu:0 float32 inference: no size ran (unsupported: resnet50 has no jax builder).")
