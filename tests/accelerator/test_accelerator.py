"""Checks that need a real GPU or TPU; skipped where none is present."""

from __future__ import annotations

import pytest

import chipfit
from chipfit.spec import TimingConfig

pytestmark = pytest.mark.accelerator
FAST = TimingConfig(warmup_s=0.05, budget_s=1.0, target_rel_ci=0.05)


def _accelerators() -> list[str]:
    return [d.ref for d in chipfit.discover().devices if d.kind != "cpu"]


@pytest.fixture(scope="module")
def accelerator() -> str:
    found = _accelerators()
    if not found:
        pytest.skip("no GPU or TPU on this machine")
    return found[0]


def test_accelerator_is_discovered_with_memory(accelerator):
    info = chipfit.discover().get(accelerator)
    assert info.kind in ("gpu", "tpu")
    assert info.memory_bytes is None or info.memory_bytes > 2**30


def test_copies_are_measured_apart_from_compute(accelerator):
    m = chipfit.measure("matmul", 1024, accelerator, timing=FAST)
    assert m.ok and m.transfer_h2d_s > 0 and m.transfer_d2h_s > 0
    assert m.transfer_h2d_bytes == 2 * 1024 * 1024 * 4
    assert m.end_to_end_s > m.median_s
    assert m.meta["copies"] == "measured"


def test_device_events_agree_with_the_fenced_wall_clock(accelerator):
    if not accelerator.startswith("torch:"):
        pytest.skip("device events are a torch feature")
    m = chipfit.measure("matmul", 2048, accelerator, timing=FAST)
    assert len(m.device_block_times_s) == len(m.block_times_s)
    ratio = sum(m.device_block_times_s) / sum(m.block_times_s)
    assert 0.5 < ratio <= 1.05


def test_large_matmul_beats_the_cpu(accelerator):
    big = chipfit.measure("matmul", 4096, accelerator, timing=FAST)
    cpu = chipfit.measure("matmul", 4096, "torch:cpu", timing=FAST)
    assert big.median_s < cpu.median_s


def test_fallback_detection_runs_on_the_accelerator(accelerator):
    from chipfit.pipelines.advise import detect_fallbacks
    from chipfit.spec import DeviceRef
    from chipfit.workloads import get_workload

    if not accelerator.startswith("torch:"):
        pytest.skip("fallback warnings are a torch feature")
    found = detect_fallbacks(get_workload("mlp"), DeviceRef.parse(accelerator), "4", "float32",
                             "inference", chipfit.discover())
    assert isinstance(found, tuple)  # an MLP uses only core ops: normally empty
