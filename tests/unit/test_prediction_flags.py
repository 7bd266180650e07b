"""What a prediction row must say about itself (issue 23, item 6): whether the call fits the
device's memory, which precision it is priced at, and a peak the catalog lacks.

Pure: catalog entries, hand-built costs and predictions; no framework, no timing.
"""

from __future__ import annotations

import pytest

from chipfit.analysis.evidence import Evidence, ModelFacts, Option
from chipfit.analysis.ranking import recommend
from chipfit.analysis.roofline import ClassTime, Prediction, catalog_roofs, fit_checked, predict
from chipfit.analysis.stacks import EngineFit, engine_prediction, hardware_from_spec
from chipfit.cost.records import OpCost, WorkloadCosts
from chipfit.hardware.catalog import load_catalog

GB = 1e9


def _costs(dtype: str = "float32") -> WorkloadCosts:
    ops = (OpCost("mm", "matmul", dtype, 2e9, 3e6, 1, 4),
           OpCost("relu", "elementwise", dtype, 1e6, 8e6, 1, 4))
    return WorkloadCosts("w", "8", dtype, "inference", "torch", "test", ops, items=8)


def _eager(hardware: str = "gpu-x", kind: str = "gpu") -> Prediction:
    breakdown = (ClassTime("matmul", 4, 4, 8e9, 12e6, 1e-3, 0.0, 4e-5),
                 ClassTime("conv", 2, 2, 4e9, 6e6, 5e-4, 0.0, 2e-5),
                 ClassTime("elementwise", 4, 4, 4e6, 32e6, 0.0, 2e-4, 4e-5))
    return Prediction(hardware, "GPU X", kind, "m", "8", "float32", "inference", 2e-3,
                      1e-3, 4e-3, 0.0, 1.5e-3, 2e-4, 1e-4, "compute", "catalog", 0.5, "test",
                      items=8, breakdown=breakdown,
                      precision=("float32 matmul: FP32 lanes (SIMT) (torch default)",))


# ------------------------------------------------------------- (c) the fit check

def test_a_call_larger_than_the_device_does_not_fit_and_says_so():
    pred = fit_checked(_eager(), 55.8 * GB, 16 * GB)
    assert pred.fits is False
    assert (pred.memory_need_bytes, pred.memory_have_bytes) == (55.8 * GB, 16 * GB)
    assert any(n.startswith("does not fit: needs ~55.8 GB") for n in pred.notes)
    data = pred.to_dict()
    assert data["fits"] is False and data["memory_need_bytes"] == 55.8 * GB
    assert data["memory_have_bytes"] == 16 * GB


@pytest.mark.parametrize(("need", "have", "fits"), [
    (8 * GB, 16 * GB, True), (16 * GB, 16 * GB, True), (None, 16 * GB, None),
    (8 * GB, None, None), (None, None, None)])
def test_fit_is_known_only_with_both_figures(need, have, fits):
    pred = fit_checked(_eager(), need, have)
    assert pred.fits is fits and pred.to_dict()["fits"] is fits
    assert not any(n.startswith("does not fit") for n in pred.notes)


def test_the_table_row_of_a_call_that_does_not_fit_is_marked():
    from chipfit.report.layout import Fitted
    from chipfit.report.predict_view import predictions_table

    class Row:
        def __init__(self, prediction):
            self.prediction, self.measurement, self.error = prediction, None, float("nan")

    table = predictions_table([Row(fit_checked(_eager("t4"), 55.8 * GB, 16 * GB)),
                               Row(fit_checked(_eager("h100-sxm"), 55.8 * GB, 80 * GB))])
    assert isinstance(table, Fitted)
    cells = {str(r[0]).split()[0]: str(r[0]) for r in table.rows}
    assert "does not fit" in cells["t4"] and "does not fit" not in cells["h100-sxm"]


# -------------------------------------------------- (f) a peak the catalog lacks

def test_a_dtype_without_its_catalog_peak_is_flagged_not_silently_priced_at_fp32():
    p4 = load_catalog()["p4"]  # Pascal: FP16 rate unsourced (the A10's tensor rates are in)
    assert p4.peak("fp16") is None and p4.peak("fp32")
    pred = predict(_costs("float16"), catalog_roofs(p4, "torch", dtypes=("float16",)))
    assert pred.missing_peak == "fp16"
    assert all("fp16 peak x" not in line for line in pred.precision)
    assert any("no fp16 peak in the catalog" in line and "fp32 peak" in line
               for line in pred.precision)
    assert pred.to_dict()["missing_peak"] == "fp16"


@pytest.mark.parametrize(("key", "dtype"), [("a10", "float32"), ("h100-sxm", "float16"),
                                            ("h100-sxm", "int8"), ("tpu-v5e", "float32")])
def test_devices_with_the_peak_are_not_flagged(key, dtype):
    spec = load_catalog()[key]
    assert predict(_costs(dtype), catalog_roofs(spec, "torch", dtypes=(dtype,))).missing_peak == ""


@pytest.mark.parametrize("key", ["v100-sxm2", "apple-m3-max-gpu"])
def test_an_engine_without_its_int8_peak_is_flagged_and_unknown(key):
    spec = load_catalog()[key]
    assert spec.peak("int8") is None
    hw = hardware_from_spec(spec, "int8")
    assert hw.missing_peak == "int8" and hw.peak == 0  # no other peak stands in
    fit = EngineFit((("gpu/int8", 0.5),), 10e-6, 1.0, ("r",), "test fit")
    pred = engine_prediction(_eager(key), hw, fit, stack="tensorrt", precision="int8")
    assert pred.missing_peak == "int8" and pred.unknown == "no int8 peak in the catalog"
    assert pred.seconds != pred.seconds  # NaN: no time
    assert any("no int8 peak in the catalog" in line for line in pred.precision)


def test_a_row_without_its_peak_is_marked_in_the_table():
    from chipfit.report.predict_view import predictions_table

    class Row:
        def __init__(self, prediction):
            self.prediction, self.measurement, self.error = prediction, None, float("nan")

    p4 = load_catalog()["p4"]
    pred = predict(_costs("float16"), catalog_roofs(p4, "torch", dtypes=("float16",)))
    table = predictions_table([Row(pred)])
    assert "no fp16 peak" in str(table.rows[0][0])


def _option(device: str, latency: float, **kw) -> Option:
    return Option(device, "gpu", device, False, 8, latency, "predicted", band=0.1, **kw)


def test_a_row_without_its_peak_is_kept_out_of_the_verdict():
    facts = ModelFacts("m", 1000, 1e9)
    options = (_option("a10", 1e-3, missing_peak="int8"), _option("l4", 2e-3))
    rec = recommend(Evidence(facts, 8, "inference", options))
    assert rec.choice is not None and rec.choice.device == "l4"
    assert ("a10", "no int8 peak in the catalog") in rec.excluded


# --------------------------------------------- (e) engines state their precision

def test_engine_rows_state_the_precision_they_are_priced_at():
    spec = load_catalog()["h100-sxm"]
    fit = EngineFit((("gpu/int8", 0.5), ("gpu/float16", 0.6)), 10e-6, 1.0, ("r",), "test fit")
    for precision, peak in (("int8", "int8"), ("float16", "fp16")):
        pred = engine_prediction(_eager("h100-sxm"), hardware_from_spec(spec, precision), fit,
                                 stack="tensorrt", precision=precision)
        assert pred.dtype == precision and pred.missing_peak == ""
        assert pred.precision, "an engine row states its precision"
        assert all(line.startswith(precision) and f"{peak} peak" in line
                   for line in pred.precision)
        assert not any("float32" in line or "FP32" in line for line in pred.precision)
        assert {line.split(":")[0] for line in pred.precision} == {
            f"{precision} matmul", f"{precision} conv"}


def test_the_gpu_kernel_route_flags_a_missing_tensor_peak_too():
    """A T4 has no BF16 tensor cores: the kernel models run bfloat16 on the FP32 lanes, a
    stand-in the row must show like the catalog route's."""
    from chipfit.analysis.gpu_precision import gpu_precision
    from chipfit.analysis.gpu_predict import missing_tensor_peak
    from chipfit.hardware.gpu_arch import gpu_figures

    t4, h100 = gpu_figures()["t4"], gpu_figures()["h100-sxm"]
    assert missing_tensor_peak((gpu_precision(t4, "bfloat16", "matmul"),)) == "bf16"
    assert missing_tensor_peak((gpu_precision(t4, "float16", "matmul"),)) == ""
    assert missing_tensor_peak((gpu_precision(h100, "bfloat16", "matmul"),)) == ""
    assert missing_tensor_peak((gpu_precision(t4, "float32", "matmul"),)) == ""  # FP32 as written


def test_an_engine_row_for_a_sequence_model_states_its_token_basis():
    from dataclasses import replace

    from chipfit.predictors.engine import predict_engine

    spec = load_catalog()["h100-sxm"]
    plain = predict_engine(_eager("h100-sxm"), spec, "tensorrt", "int8")
    assert not any(n.startswith("tokens:") for n in plain.notes)  # no attention: no note
    eager = _eager("h100-sxm")
    seq = replace(eager, size="8x384", breakdown=eager.breakdown + (
        ClassTime("attention", 2, 2, 1e9, 4e6, 2e-4, 0.0, 2e-5),))
    pred = predict_engine(seq, spec, "tensorrt", "int8")  # tensors of unknown padding
    note = next(n for n in pred.notes if n.startswith("tokens:"))
    assert "8x384" in note and "every token" in note and "padding" in note
