"""Scaling arithmetic: device-count ladders, batches per scaling mode, efficiency."""

from __future__ import annotations

import pytest

from chipfit.analysis.scaling import ScalingPoint, ScalingResult, device_counts
from chipfit.errors import InvalidInputError
from chipfit.pipelines.scale_jax import _global_batches
from chipfit.results import Measurement


def _point(devices: int, batch: int, seconds: float) -> ScalingPoint:
    m = Measurement("mlp", str(batch), f"jax:cpu:0-{devices - 1}", block_times_s=(seconds,) * 5,
                    items_per_call=batch)
    return ScalingPoint(devices, batch, m)


def test_device_counts_double_and_end_at_n():
    assert device_counts(1) == [1]
    assert device_counts(4) == [1, 2, 4]
    assert device_counts(6) == [1, 2, 4, 6]


def test_weak_scaling_grows_the_global_batch_and_strong_splits_it():
    assert _global_batches([1, 2, 4], 8, "weak") == [8, 16, 32]
    assert _global_batches([1, 2, 4], 8, "strong") == [8, 8, 8]
    with pytest.raises(InvalidInputError, match="does not split evenly over 4"):
        _global_batches([1, 2, 4], 6, "strong")
    with pytest.raises(InvalidInputError):
        _global_batches([1], 0, "weak")


def test_efficiency_is_throughput_over_n_times_one_device_throughput():
    # weak: per-device batch 8; the step on 4 devices takes 2x as long -> 50% efficient
    weak = ScalingResult("mlp", "train", "float32", "cpu", "weak",
                         (_point(1, 8, 1.0), _point(4, 32, 2.0)))
    assert weak.speedup(weak.points[1]) == pytest.approx(2.0)
    assert weak.efficiency(weak.points[1]) == pytest.approx(0.5)  # T1 / TN
    # strong: global batch 8; 4 devices take 1/4 of the time -> perfect
    strong = ScalingResult("mlp", "train", "float32", "cpu", "strong",
                           (_point(1, 8, 1.0), _point(4, 8, 0.25)))
    assert strong.efficiency(strong.points[1]) == pytest.approx(1.0)  # T1 / (N TN)
    data = strong.to_dict()
    assert data["format"] == "chipfit-scaling" and data["points"][1]["per_device_batch"] == 2


def test_a_failed_point_has_no_efficiency_and_json_stays_valid():
    failed = ScalingPoint(2, 16, Measurement("mlp", "16", "jax:cpu:0-1", status="oom"))
    result = ScalingResult("mlp", "train", "float32", "cpu", "weak", (_point(1, 8, 1.0), failed))
    data = result.to_dict()
    assert data["points"][1]["efficiency"] is None and data["points"][1]["median_s"] is None
