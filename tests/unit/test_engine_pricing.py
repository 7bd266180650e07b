"""Engines priced honestly (issue 24, item 4): a device without the precision's peak is
unknown (no time, no band, out of every ranking), never priced at another peak; a token
model's engine row is priced at its real tokens (the fitted share of the window, or the
user's --seq-len as given), by one rule that predict and advise both call.

Pure: catalog entries, the shipped engine fit and hand-built predictions; no tracing.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipfit.analysis.evidence import Evidence, ModelFacts, Option
from chipfit.analysis.ranking import recommend
from chipfit.analysis.roofline import ClassTime, Prediction
from chipfit.analysis.rules import evaluate
from chipfit.analysis.stacks import engine_prediction, hardware_from_spec, tokens_scaled
from chipfit.hardware.catalog import load_catalog
from chipfit.predictors.engine import (
    NOT_TOKENS,
    TokenWindow,
    predict_engine,
    real_tokens,
    token_window,
)
from chipfit.predictors.fits import shipped_engine_fit


def _eager(hardware: str = "t4", attention: bool = True) -> Prediction:
    breakdown = (ClassTime("matmul", 48, 48, 8e11, 2e9, 5e-3, 0.0, 4e-4),
                 ClassTime("elementwise", 40, 40, 4e6, 3e8, 0.0, 2e-4, 4e-4))
    if attention:
        breakdown += (ClassTime("attention", 12, 12, 5e10, 2e8, 1e-3, 0.0, 1e-4),)
    return Prediction(hardware, hardware, "gpu", "bert", "8x128", "float32", "inference",
                      8e-3, 5e-3, 1.3e-2, 0.0, 6e-3, 2e-4, 1e-3, "compute", "catalog", 0.5,
                      "test", items=8, breakdown=breakdown, route="gpu-kernel-model")


# ------------------------------------------------------------------- real tokens

def test_without_seq_len_the_fitted_share_of_the_window_is_priced_and_said():
    real, note = real_tokens(TokenWindow(128), 0.3681)
    assert real == 47
    assert note.startswith("tokens: priced at 47 real tokens of the 128-token window")
    assert "the fitted share 37% of padded MLPerf-style inputs" in note


def test_a_given_seq_len_is_priced_as_real_tokens_and_said():
    real, note = real_tokens(TokenWindow(384, given=True, flag="--seq-len"), 0.3681)
    assert real == 384
    assert "384 real tokens" in note and "--seq-len 384" in note and "as given" in note


@given(st.integers(1, 10**6), st.floats(0.0, 1.0), st.booleans())
def test_real_tokens_stay_within_the_window(window, fraction, given_):
    real, note = real_tokens(TokenWindow(window, given=given_), fraction)
    assert 1 <= real <= window and note.startswith("tokens: priced at")
    assert (real == window) if given_ else real == min(window, max(1, round(window * fraction)))


def test_built_ins_and_configs_share_one_rule():
    """bert-base (a 128-token built-in) and a config without --seq-len (the 128-token
    default) get the same window, so the same real tokens; --seq-len is taken as given."""
    from chipfit.pipelines.model_predict import DEFAULT_SEQ_LEN
    from chipfit.workloads import get_workload

    builtin = token_window(get_workload("bert-base"))
    config = token_window(seq_len=None, default_seq_len=DEFAULT_SEQ_LEN, flag="--seq-len")
    assert builtin == TokenWindow(128) and (config.window, config.given) == (128, False)
    fraction = shipped_engine_fit()[0].token_fraction
    assert real_tokens(builtin, fraction)[0] == real_tokens(config, fraction)[0] == round(
        128 * fraction)
    assert token_window(seq_len=300, default_seq_len=128) == TokenWindow(300, given=True)
    assert token_window(get_workload("resnet50")) == NOT_TOKENS  # images: no token rule
    assert token_window(get_workload("vit-base")) == NOT_TOKENS  # patches are never padding
    assert token_window(get_workload("gpt2-small")) == TokenWindow(128)
    assert token_window(get_workload("mlp")) is None  # inputs chipfit cannot read as tokens
    assert token_window(seq_len=None, default_seq_len=0) == NOT_TOKENS  # an image config


def test_the_engine_prices_the_real_tokens_by_the_fit_scaling():
    from chipfit.predictors.core import sustained_share

    spec = load_catalog()["t4"]
    fit = shipped_engine_fit()[0]
    pred = predict_engine(_eager(), spec, "tensorrt", "int8", tokens=TokenWindow(128))
    real = round(128 * fit.token_fraction)
    scaled = engine_prediction(tokens_scaled(_eager(), real / 128),
                               hardware_from_spec(spec, "int8", sustained=sustained_share("t4")),
                               fit, stack="tensorrt", precision="int8")
    assert pred.seconds == pytest.approx(scaled.seconds)
    assert pred.notes[0].startswith(f"tokens: priced at {real} real tokens of the 128-token")
    full = predict_engine(_eager(), spec, "tensorrt", "int8",
                          tokens=TokenWindow(128, given=True, flag="--seq-len"))
    assert full.seconds > pred.seconds and "as given" in full.notes[0]
    untold = predict_engine(_eager(), spec, "tensorrt", "int8")  # a factory's tensors
    assert untold.seconds == pytest.approx(full.seconds)
    assert "cannot tell its padding" in untold.notes[0]
    plain = predict_engine(_eager(attention=False), spec, "tensorrt", "int8")
    assert not any(n.startswith("tokens:") for n in plain.notes)  # not a sequence model
    image = predict_engine(_eager(), spec, "tensorrt", "int8", tokens=NOT_TOKENS)  # ViT
    assert image.seconds == pytest.approx(full.seconds)
    assert not any(n.startswith("tokens:") for n in image.notes)


# ------------------------------------------------------------ a missing peak: unknown

@pytest.mark.parametrize(("key", "precision", "peak"), [
    ("v100-sxm2", "int8", "int8"), ("a100-sxm-80gb", "float8", "fp8"),
    ("p4", "float16", "fp16")])
def test_an_engine_without_its_peak_is_unknown_not_priced_at_another(key, precision, peak):
    spec = load_catalog()[key]
    assert spec.peak(peak) is None and spec.peak("fp32")
    pred = predict_engine(_eager(key), spec, "tensorrt", precision, tokens=TokenWindow(128))
    reason = f"no {peak} peak in the catalog"
    assert pred.unknown == reason and pred.missing_peak == peak and not pred.known
    assert all(math.isnan(x) for x in (pred.seconds, pred.low_s, pred.high_s, pred.band))
    assert pred.notes[0].startswith(f"unknown: {reason}") and len(pred.notes) == 1
    assert pred.precision and all(f"unknown: {reason}" in line for line in pred.precision)
    assert not any("stands in" in line or "fp32" in line for line in pred.precision)
    data = pred.to_dict()
    assert data["unknown"] == reason and data["missing_peak"] == peak
    assert all(data[k] is None for k in ("seconds", "low_s", "high_s", "band", "throughput",
                                         "end_to_end_s"))
    json.dumps(data, allow_nan=False, default=str)  # valid JSON: null, never NaN


def test_an_engine_with_its_peak_is_priced():
    pred = predict_engine(_eager("h100-sxm"), load_catalog()["h100-sxm"], "tensorrt", "float8")
    assert pred.known and pred.seconds > 0 and pred.missing_peak == ""


def test_the_unknown_row_has_no_number_and_no_band_in_the_table():
    from chipfit.report.predict_view import predictions_table

    class Row:
        def __init__(self, prediction):
            self.prediction, self.measurement, self.error = prediction, None, math.nan

    catalog = load_catalog()
    rows = [Row(predict_engine(_eager(k), catalog[k], "tensorrt", "int8"))
            for k in ("v100-sxm2", "t4")]
    table = predictions_table(rows)
    unknown, known = table.rows
    assert "(no int8 peak)" in str(unknown[0]) and str(unknown[2]) == "unknown"
    assert set(map(str, unknown[3:7])) == {"-"}  # band, items/s, e2e, bound
    assert "ms" in str(known[2]) and "unknown" not in str(known[0])
    assert "unknown: no <precision> peak in the catalog" in table.caption
    from chipfit.report.predict_view import breakdown_table

    assert "(unknown: no int8 peak in the catalog)" in str(breakdown_table(rows[0].prediction))
    from chipfit.pipelines.predict import PredictRow, Target

    line = str(PredictRow(Target("v100-sxm2", False, "gpu", "V100"), rows[0].prediction))
    assert line.endswith("(tensorrt int8 inference): unknown: no int8 peak in the catalog")


def test_an_unknown_engine_option_is_excluded_with_its_reason_and_rests_no_reason():
    from chipfit.pipelines.advise import _engine_option

    class Costs:
        ops = ()

    catalog = load_catalog()
    unknown = _engine_option(catalog["v100-sxm2"], _eager("v100-sxm2"), "tensorrt", 8, None,
                             Costs())
    assert math.isnan(unknown.latency_s) and unknown.missing_peak == "int8"
    known = Option("t4", "gpu", "T4", False, 8, 2e-3, "predicted", band=0.3)
    cpu = Option("torch:cpu", "cpu", "cpu", True, 8, 5e-2, "measured")
    ev = Evidence(ModelFacts("bert", 10**8, 1e10), 8, "inference", (unknown, known, cpu))
    rec = recommend(ev)
    assert rec.choice is known and unknown not in rec.ranked
    assert ("v100-sxm2 tensorrt", "no int8 peak in the catalog") in rec.excluded
    assert evaluate(ev) == evaluate(replace(ev, options=(known, cpu)))


def test_the_eager_kernel_route_keeps_its_fp32_lanes_and_says_so():
    """Eager bfloat16 on a T4 (no BF16 tensor cores) stays the kernel models' FP32-lane
    price, marked and with the assumption in the row's notes."""
    from chipfit.cost.records import OpCost, WorkloadCosts
    from chipfit.predictors import predict_catalog

    ops = (OpCost("mm", "matmul", "bfloat16", 2e9, 3e6, 1, 2),)
    pred = predict_catalog(WorkloadCosts("w", "8", "bfloat16", "inference", "torch", "test",
                                         ops, items=8), "t4")
    assert pred.known and pred.seconds > 0 and pred.missing_peak == "bf16"
    assert any(n.startswith("assumption:") and "no bf16 tensor peak" in n
               and "priced on FP32 lanes" in n for n in pred.notes)
