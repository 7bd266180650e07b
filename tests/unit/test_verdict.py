"""The advise verdict: stay or switch, ties stated as ties, no contradictory reasons."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipfit.analysis.evidence import Evidence, ModelFacts, Option, Reason
from chipfit.analysis.ranking import recommend
from chipfit.analysis.verdict import CLEAR_GAIN, decide
from chipfit.report.advise_view import display_name, verdict_text


def _cpu(seconds: float, price: float | None = 0.08, device: str = "torch:cpu") -> Option:
    return Option(device, "cpu", "AMD EPYC", True, 1, seconds, "measured", price_usd_hr=price,
                  price_source="estimated: test")


def _acc(key: str, name: str, seconds: float, kind: str = "gpu", price: float | None = 0.7,
         band: float = 0.5) -> Option:
    return Option(key, kind, name, False, 1, seconds, "predicted", bound="compute",
                  price_usd_hr=price, band=band)


def _verdict(options, objective="latency", reasons=()):
    ev = Evidence(ModelFacts("m", 10, 1e6), 1, "inference", tuple(options))
    rec = recommend(ev, objective)
    rec = replace(rec, reasons=tuple(reasons))
    return decide(rec, ev)


def test_a_clearly_faster_accelerator_is_a_switch_with_price_and_speed():
    v = _verdict([_cpu(0.090), _acc("l4", "NVIDIA L4", 0.010), _acc("t4", "NVIDIA T4", 0.02)])
    assert v.action == "switch" and v.best.device == "l4" and not v.tie
    assert v.gain == pytest.approx(9.0)
    text = verdict_text(v, 1)
    assert text.startswith("Use an L4: 9.0x faster than this CPU at batch 1 (predicted)")
    assert "at $0.7/h" in text and "per 1M samples" in text


def test_the_cpu_clearly_faster_means_stay():
    v = _verdict([_cpu(10e-6), _acc("h100-sxm", "NVIDIA H100 SXM5 80GB", 45e-6)])
    assert v.action == "stay" and not v.tie and v.best.device == "torch:cpu"
    assert verdict_text(v, 1).startswith("Stay on this CPU: it is 4.5x faster at batch 1")


def test_an_accelerator_inside_its_prediction_band_is_a_tie_and_we_stay():
    # 1.4x predicted gain with a +-50% band: not clearly better.
    v = _verdict([_cpu(0.014), _acc("l4", "NVIDIA L4", 0.010)])
    assert v.action == "stay" and v.tie and v.margin == pytest.approx(1.5)
    text = verdict_text(v, 1)
    assert text.startswith("Stay on this CPU: a tie") and "not clearly better" in text
    # a measured-vs-predicted gain under CLEAR_GAIN is a tie even with a narrow band
    v = _verdict([_cpu(0.012), _acc("l4", "NVIDIA L4", 0.010, band=0.05)])
    assert v.tie and v.margin == CLEAR_GAIN


def test_reasons_against_the_verdict_are_set_aside():
    launch = Reason("launch-bound", "cpu", (), "predicted", "seeds/003")
    parallel = Reason("parallel-work", "gpu", (), "predicted", "seeds/000")
    switch = _verdict([_cpu(0.016), _acc("l4", "NVIDIA L4", 0.010)], reasons=(launch, parallel))
    assert switch.action == "switch"  # 1.6x > the 1.5 margin
    assert [r.code for r in switch.supporting] == ["parallel-work"]
    assert [r.code for r in switch.set_aside] == ["launch-bound"]
    tie = _verdict([_cpu(0.012), _acc("l4", "NVIDIA L4", 0.010)], reasons=(launch, parallel))
    assert [r.code for r in tie.supporting] == ["launch-bound"]


def test_cpu_gpu_not_tpu_reason_is_dropped_when_a_tpu_outranks_the_gpus():
    irregular = Reason("recurrent-or-irregular", "cpu", (), "measured", "seeds/000")
    v = _verdict([_cpu(1e-5), _acc("tpu-v5e", "Google TPU v5e", 2e-5, kind="tpu"),
                  _acc("l4", "NVIDIA L4", 3e-5)], reasons=(irregular,))
    assert v.action == "stay" and not v.supporting and v.set_aside == (irregular,)
    slow_tpu = _verdict([_cpu(1e-5), _acc("tpu-v5e", "Google TPU v5e", 1e-3, kind="tpu"),
                         _acc("l4", "NVIDIA L4", 3e-5)], reasons=(irregular,))
    assert slow_tpu.supporting == (irregular,)  # consistent with the numbers: kept


def test_cost_without_a_local_price_says_so():
    v = _verdict([_cpu(0.01, price=None), _acc("t4", "NVIDIA T4", 0.01, price=0.5)], "cost")
    assert v.action == "switch" and v.unpriced_here
    assert "--local-price" in verdict_text(v, 1)


def test_cost_verdict_compares_dollars():
    v = _verdict([_cpu(0.010, price=0.08), _acc("t4", "NVIDIA T4", 0.0001, price=0.5)], "cost")
    assert v.action == "switch" and "cheaper per sample than this CPU" in verdict_text(v, 1)


@pytest.mark.parametrize("name, expect", [
    ("NVIDIA L4", "an L4"), ("NVIDIA T4", "a T4"), ("NVIDIA H100 SXM5 80GB", "an H100 SXM5 80GB"),
    ("AMD Instinct MI300X", "an MI300X"), ("Google TPU v5e", "a TPU v5e"),
    ("NVIDIA GeForce RTX 4090", "an RTX 4090"), ("Apple M3 Max GPU (40-core)", "an M3 Max GPU"),
])
def test_names_read_as_a_person_says_them(name, expect):
    v = _verdict([_cpu(1.0), _acc("x", name, 0.01)])
    assert verdict_text(v).startswith(f"Use {expect}:")
    assert display_name(_acc("x", name, 1)) == expect.split(" ", 1)[1]


def test_accelerators_tied_on_speed_are_split_by_price():
    v = _verdict([_cpu(0.055), _acc("apple-m3-max-gpu", "Apple M3 Max GPU (40-core)", 0.00261,
                                    price=None),
                  _acc("h100-sxm", "NVIDIA H100 SXM5 80GB", 0.00264, price=12.29),
                  _acc("l4", "NVIDIA L4", 0.00267, price=0.56),
                  _acc("t4", "NVIDIA T4", 0.009, price=0.53)])
    assert v.action == "switch" and v.best.device == "l4"
    assert {o.device for o in v.tied_with} == {"apple-m3-max-gpu", "h100-sxm"}
    text = verdict_text(v, 1)
    assert text.startswith("Use an L4: 21x faster than this CPU") and "a tie on latency" in text


def test_settled_recommendation_names_the_verdicts_device_first():
    """A catalog device ahead by less than its band leaves the verdict here; the settled
    recommendation's choice and first row follow the verdict (one question, one answer)."""
    from chipfit.analysis.verdict import settle

    ev = Evidence(ModelFacts("m", 10, 1e6), 1, "inference",
                  (_cpu(0.011), _acc("l4", "NVIDIA L4", 0.0095, price=0.56, band=0.1)))
    raw = recommend(ev, "latency")
    assert raw.ranked[0].device == "l4"  # faster on paper, by less than CLEAR_GAIN
    rec, verdict = settle(raw, ev)
    assert verdict.action == "stay" and verdict.best.present
    assert rec.choice is verdict.best is rec.ranked[0]
    assert settle(rec, ev)[0] is rec  # settling is idempotent
