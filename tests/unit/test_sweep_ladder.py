"""Sweep ladders: geometric, per-axis defaults, and the axis check."""

from __future__ import annotations

import pytest

from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.pipelines.sweep import geometric_ladder, ladder_for, plan_sweep
from chipfit.spec import DeviceRef, TimingConfig
from chipfit.workloads import get_workload


@pytest.mark.parametrize("start, stop, points, expect", [
    (16, 256, None, [16, 32, 64, 128, 256]),
    (16, 200, None, [16, 30, 57, 106, 200]),  # not a power-of-two span: evenly in log
    (1, 1000, 4, [1, 10, 100, 1000]),
    (5, 5, None, [5]),
])
def test_geometric_ladder(start, stop, points, expect):
    assert geometric_ladder(start, stop, points) == expect


@pytest.mark.parametrize("start, stop, points", [(0, 4, None), (8, 4, None), (1, 8, 0)])
def test_bad_ladders_are_usage_errors(start, stop, points):
    with pytest.raises(InvalidInputError):
        geometric_ladder(start, stop, points)


def test_default_and_quick_ladders_per_axis():
    matmul, elementwise = get_workload("matmul"), get_workload("elementwise")
    assert ladder_for(matmul) == [str(2**k) for k in range(4, 12)]  # 16 .. 2048
    assert ladder_for(matmul, quick=True) == [str(2**k) for k in range(4, 10)]  # 16 .. 512
    assert ladder_for(elementwise, quick=True)[0] == "1024"
    assert ladder_for(matmul, "64", "2^8") == ["64", "128", "256"]
    assert ladder_for(matmul, start="4096") == ["4096"]  # --from above the default top


def test_axis_must_be_the_workloads_own():
    matmul, elementwise = get_workload("matmul"), get_workload("elementwise")
    assert ladder_for(elementwise, "1Ki", "2Ki", axis="n") == ["1024", "2048"]
    with pytest.raises(InvalidInputError, match="sweeps its n axis, not batch"):
        ladder_for(matmul, axis="batch")
    with pytest.raises(UnknownNameError):
        ladder_for(matmul, axis="width")


def test_plan_runs_sizes_in_increasing_order_every_device_per_size():
    refs = [DeviceRef.parse("torch:cpu"), DeviceRef.parse("torch:cpu@1t")]
    jobs = plan_sweep("matmul", ["16", "32"], refs, ["float32", "bfloat16"], "inference",
                      TimingConfig())
    assert [(j.size, j.dtype, str(j.device)) for j in jobs][:4] == [
        ("16", "float32", "torch:cpu"), ("16", "float32", "torch:cpu@1t"),
        ("16", "bfloat16", "torch:cpu"), ("16", "bfloat16", "torch:cpu@1t")]
    assert len(jobs) == 8
