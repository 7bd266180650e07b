"""A workload that fails in any step, even counting its FLOPs, is a result, not a crash."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from chipfit.pipelines.bench import bench
from chipfit.results import Cost
from chipfit.workloads import register
from chipfit.workloads.base import Prepared, Workload


class _Uncountable(Workload):
    name = "hostile-uncountable"
    family = "test"
    default_sizes = quick_sizes = ("8",)

    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        raise RuntimeError("the FLOP counter exploded")

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        return Prepared(torch.add, (torch.ones(int(size)), torch.ones(int(size))))


@pytest.fixture
def uncountable():
    """Registered for one test only: other tests enumerate the workloads."""
    from chipfit import workloads

    register(_Uncountable())
    yield
    workloads._REGISTRY.pop(_Uncountable.name, None)


def test_a_workload_whose_flop_count_fails_is_an_error_and_the_run_goes_on(uncountable) -> None:
    run = bench(["hostile-uncountable", "matmul"], ["torch:cpu"], sizes=["16"], quick=True)
    by_workload = {m.workload: m for m in run.measurements}
    bad, good = by_workload["hostile-uncountable"], by_workload["matmul"]
    assert bad.status == "error" and "counting the FLOPs failed" in bad.note
    assert "exploded" in bad.note
    assert good.ok and good.flops == 2 * 16**3
    assert run.finished_at and not run.interrupted
