"""The fused-engine stack against published MLPerf rows it was not fitted on.

The architectures are traced on the meta device (no weights, no compute); nothing is timed.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from chipfit.analysis.stacks import fit_engine  # noqa: E402
from chipfit.pipelines.engines import engine_rows  # noqa: E402


@pytest.fixture(scope="module")
def resnet_rows():
    return engine_rows(models=("resnet50",))


@pytest.mark.slow
def test_left_out_offline_row_is_predicted_within_30_percent(resnet_rows):
    left_out = next(r for r in resnet_rows if r.id == "mlperf-v3.0-a100-rn50-off")
    others = [r for r in resnet_rows if r.id != left_out.id and r.family == "gpu"]
    fit = fit_engine(others, "test: A100 offline row left out")
    assert left_out.id not in fit.rows
    assert abs(left_out.error(fit)) < 0.30
    pred = left_out.predict(fit)
    assert pred.stack == "tensorrt" and pred.dtype == "int8"
    assert pred.low_s < pred.seconds < pred.high_s


@pytest.mark.slow
def test_engine_is_several_times_faster_than_eager_on_a_gpu(resnet_rows):
    row = next(r for r in resnet_rows if r.id == "mlperf-v3.0-a100-rn50-off")
    fit = fit_engine([r for r in resnet_rows if r.family == "gpu"])
    # The MLPerf engines are 4-10x faster than eager; the model must say so, not merely differ.
    assert row.eager.seconds / row.predict(fit).seconds > 3


def test_the_shipped_engine_fit_is_the_fit_of_the_shipped_rows():
    """Prediction reads hardware/data/engine_fit.json (benchmarks/engine_fit.py --write): a
    changed reference row, catalog figure or engine model without a new file fails here."""
    import dataclasses

    from chipfit.pipelines.engines import engine_fit
    from chipfit.predictors.fits import shipped_engine_fit

    shipped, median, rows = shipped_engine_fit()
    fitted = engine_fit()
    assert rows == len(fitted.rows)
    for name in ("kernel_s", "token_fraction"):
        assert getattr(shipped, name) == pytest.approx(getattr(fitted, name), rel=1e-9), name
    assert dict(shipped.efficiency) == pytest.approx(dict(fitted.efficiency), rel=1e-9)
    assert dataclasses.replace(shipped, efficiency=(), kernel_s=0, token_fraction=0) == \
        dataclasses.replace(fitted, efficiency=(), kernel_s=0, token_fraction=0)
