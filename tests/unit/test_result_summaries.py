"""Result objects read like str(advice): short human summaries, numbers without exponents,
ratios named as the sentence states them, a pinned CPU's device and threads apart."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipfit.analysis.evidence import Option
from chipfit.analysis.verdict import Verdict
from chipfit.report.advise_view import rule_words, stored_advice, verdict_text
from chipfit.report.fmt import fmt_num, fmt_rate, fmt_seconds
from chipfit.results import DeviceInfo, Discovery, Measurement, Problem, Run


@pytest.mark.parametrize(("value", "text"), [
    (1940.3, "1,940"), (0.0123, "0.0123"), (2.5e7, "25,000,000"), (12.25, "12.2"),
    (999.6, "1,000"), (15.0, "15"), (0.5, "0.5"), (3.2e-6, "3.2e-06"), (0, "0"),
    (-1940, "-1,940"), (math.nan, "-"), (None, "-"), (math.inf, "-")])
def test_fmt_num_writes_numbers_as_people_do(value, text):
    assert fmt_num(value) == text


def test_long_times_and_huge_rates_have_no_exponent():
    assert fmt_seconds(1940.0) == "1,940 s" and fmt_seconds(0.0151) == "15.1 ms"
    assert fmt_rate(72.3e9, "FLOP/s") == "72.3 GFLOP/s" and fmt_rate(2e15, "B/s") == "2 PB/s"


@given(st.floats(min_value=1e-4, max_value=1e15) | st.floats(min_value=-1e15, max_value=-1e-4))
def test_fmt_num_never_uses_an_exponent_and_keeps_the_value(value):
    text = fmt_num(value)
    assert "e" not in text
    assert float(text.replace(",", "")) == pytest.approx(value, rel=0.006)


def _m(device: str = "torch:cpu", median: float = 0.0123, **kw) -> Measurement:
    kw.setdefault("block_times_s", (median,) * 5)
    return Measurement("matmul", "1024", device, **kw)


def test_a_measurement_and_a_run_are_short_summaries():
    assert re.fullmatch(r"matmul 1024 on torch:cpu \(float32 inference\): 12\.3 ms per call "
                        r"(±[\d.]+% )?\(measured\)", str(_m())), str(_m())
    assert "oom (does not fit)" in str(_m(status="oom", note="does not fit", block_times_s=()))
    assert "while the machine was busy" in str(_m(contended=True))
    run = Run("20260101T000000Z-aaaaaa", "bench", "2026-01-01T00:00:00+00:00",
              measurements=tuple(_m(median=0.001 * (i + 1)) for i in range(11)))
    lines = str(run).splitlines()
    assert lines[0] == ("bench run 20260101T000000Z-aaaaaa: 11 of 11 point(s) ok on "
                        "torch:cpu")
    assert len(lines) == 10 and lines[-1] == "  ... 3 more in .measurements"
    found = Discovery((DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "Test CPU", cores=2),),
                      (Problem("jax", "not installed"),))
    assert str(found).splitlines() == ["1 device(s) usable here (probed):",
                                       "  torch:cpu (cpu, Test CPU, 2 cores)",
                                       "  1 backend(s)/device type(s) unavailable: .problems "
                                       "says why"]


def test_an_llm_report_reads_like_advice():
    import chipfit

    text = str(chipfit.llm("llama-3.1-8b", ["h100-sxm", "tpu-v5e"]))
    lines = text.splitlines()
    assert lines[0].startswith("llama-3.1-8b (8.03B params, bfloat16): prompt 512")
    assert re.match(r"  h100-sxm \(.*\): fits on one device, first token [\d.]+ ms, "
                    r"[\d.,]+ tok/s per sequence, \$[\d.]+ per 1M tokens \(predicted, ±\d+%\)$",
                    lines[1]), lines[1]
    assert "needs 2 devices" in lines[2] and "LlmReport(" not in text


def _option(device: str, latency: float, present: bool = True) -> Option:
    return Option(device, "cpu" if present else "gpu", "x", present, 1, latency,
                  "measured" if present else "predicted")


def test_speedup_is_the_ratio_the_sentence_states():
    here, away = _option("torch:cpu@1t", 1.0), _option("t4", 1.748, present=False)
    stay = Verdict("stay", "latency", here, here, away, 1 / 1.748, 1.25, False)
    assert stay.speedup == pytest.approx(1.748) and stay.gain == pytest.approx(0.572, abs=1e-3)
    assert "1.7x faster" in verdict_text(stay, 1)
    switch = Verdict("switch", "latency", away, here, away, 3.0, 1.25, False)
    assert switch.speedup == pytest.approx(3.0)
    assert Verdict("none", "latency", None, None, None, None, 1.25, False).speedup is None


def test_a_pinned_cpu_option_names_its_processor_and_threads_apart():
    pinned, plain, catalog = _option("torch:cpu@1t", 1), _option("torch:cpu", 1), _option(
        "h100-sxm", 1, present=False)
    assert (pinned.device, pinned.processor, pinned.threads) == ("torch:cpu@1t", "torch:cpu", 1)
    assert (plain.processor, plain.threads) == ("torch:cpu", None)
    assert (catalog.processor, catalog.threads) == ("h100-sxm", None)


def test_rule_citations_are_words():
    cite = ("seeds/003 (GPU importance in neural-network training): small tasks lose to "
            "transfer and launch time on a GPU")
    assert rule_words(cite) == ("the articles' rule: small tasks lose to transfer and launch "
                                "time on a GPU (seeds/003)")
    both = "seeds/000 (CPU vs GPU vs TPU: when to use them): TPUs like big batches; " \
           "seeds/002 (GPU vs TPU comparison)"
    assert rule_words(both) == ("the articles' rule: TPUs like big batches "
                                "(seeds/000; seeds/002)")
    assert "GPU vs TPU comparison" in rule_words(both, titles=True)
    assert rule_words("a vendor's guide") == "rule: a vendor's guide"


@pytest.mark.parametrize("record", [
    {}, {"verdict": "garbage", "ranked": "x", "reasons": 7},
    {"ranked": [{"device": 5, "latency_s": {"value": "fast"}}, None],
     "reasons": [{"text": None, "cite": 3}]},
    {"verdict": {"text": "\x1b[31mred"}, "ranked": [{"device": "t4" * 60}]}])
def test_a_damaged_stored_advice_still_renders(record):
    from rich.console import Console

    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(stored_advice(record))
    assert "Traceback" not in console.export_text()


@pytest.mark.parametrize(("spec", "name"), [
    ("mymodel.py:make", "mymodel.make"), ("src/models/net.py:build", "net.build"),
    ("pkg.models:make", "models.make"), ("models:make", "models.make")])
def test_a_factory_is_named_by_its_module_or_file(spec, name):
    from chipfit.workloads.user import _factory_name

    assert _factory_name(spec) == name


def _series(device: str, scale: float, run_id: str) -> Run:
    points = tuple(Measurement("matmul", str(n), d, block_times_s=tuple(
        t * (1 + 0.01 * i) for i in range(6)))
        for n, t0 in ((64, 1e-5), (256, 4e-4), (1024, 2e-2))
        for d, t in ((device, t0 * scale), ("torch:cpu@1t", t0 * (2.0 if n > 100 else 0.5))))
    return Run(run_id, "sweep", "2026-01-01T00:00:00+00:00", measurements=points,
               machine=(("fingerprint", "f" * 16),))


def test_a_comparison_and_a_sweep_are_short_summaries():
    import chipfit

    a = _series("torch:cpu", 1.0, "20260101T000000Z-aaaaaa")
    b = _series("torch:cpu", 1.0, "20260102T000000Z-bbbbbb")
    text = str(chipfit.compare_runs(a, b))
    assert text.startswith("B = 20260102T000000Z-bbbbbb vs A = 20260101T000000Z-aaaaaa: ")
    assert "0 regression(s)" in text and "RunComparison(" not in text
    sweep = str(chipfit.analyze_run(a)).splitlines()
    assert sweep[0].startswith("sweep run 20260101T000000Z-aaaaaa: 6 of 6 point(s) ok")
    crossing = next(line for line in sweep if "crossover at" in line)
    assert re.search(r"torch:cpu vs torch:cpu@1t .*: crossover at ≈ [\d,.]+ \([\d,.]+ to "
                     r"[\d,.]+\), torch:cpu@1t faster below \(measured\)", crossing), crossing


def test_a_feed_answer_is_a_short_summary():
    from chipfit.analysis.feed import Consumer, FeedFinding, FeedReport, Supply
    from chipfit.pipelines.feed import Feed

    supply = Supply(2, 1234.5, 1200.0, 1270.0)
    gpu = Consumer("l4", "NVIDIA L4", "gpu", 5000.0, 4000.0, 6000.0, "predicted", 32)
    report = FeedReport((supply,), (FeedFinding(gpu, supply, "starved", 1234.5, 0.25, 8, 2),),
                        "io-bound", supply, 2)
    feed = Feed("resnet50", "images", "JPEG decode", 32, Run("20260101T000000Z-aaaaaa",
                "feed", "2026-01-01T00:00:00+00:00"), report, (gpu,))
    assert str(feed).splitlines() == [
        "feed resnet50 at batch 32 (images): io-bound; best supply 1,230 samples/s with 2 "
        "worker(s) (measured)",
        "  l4: starved, consumes 5,000 samples/s (predicted), delivers 1,230 (estimated)"]
