"""A CPU vs accelerator sweep through the same crossover code as the CPU-only pairs."""

from __future__ import annotations

import pytest

import chipfit
from chipfit.pipelines.sweep import sweep
from chipfit.report.crossover_view import crossover_sentence
from chipfit.spec import TimingConfig

pytestmark = pytest.mark.accelerator
FAST = TimingConfig(warmup_s=0.05, budget_s=0.5, target_rel_ci=0.05)


@pytest.fixture(scope="module")
def accelerator() -> str:
    found = [d.ref for d in chipfit.discover().devices
             if d.kind != "cpu" and d.backend == "torch"]
    if not found:
        pytest.skip("no torch GPU or TPU on this machine")
    return found[0]


def test_cpu_vs_accelerator_has_resident_and_end_to_end_comparisons(accelerator):
    result = sweep("matmul", ["torch:cpu", accelerator], start="16", stop="2048", timing=FAST)
    assert all(m.ok for m in result.run.measurements)
    by_view = {c.view: c for c in result.analysis.crossovers}
    assert set(by_view) == {"resident", "end_to_end"}  # the accelerator copies
    e2e = by_view["end_to_end"]
    assert e2e.copies and len(e2e.ratios) == 8
    # end to end the accelerator pays the copies, so its time ratio to the CPU can only rise
    for resident, end_to_end in zip(by_view["resident"].ratios, e2e.ratios, strict=True):
        assert end_to_end.ratio <= resident.ratio * 1.05  # a = torch:cpu, b = accelerator
    text = crossover_sentence(e2e, "n")
    assert "end to end, with host<->device copies" in text
    summaries = {s.device: s for s in result.analysis.summaries}
    assert summaries[accelerator].guard_limit is not None  # device memory is known
