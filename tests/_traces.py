"""Checks shared by the files that trace the built-in workloads (test_costs.py traces the
non-model ones, test_one_answer.py the models: each workload is traced once per run)."""

from __future__ import annotations

from typing import Any

import pytest


def costable_checks(wl: Any, costs: Any, size: str) -> None:
    """What every built-in workload's trace must show: counted work, every operator priced,
    and FLOPs near the workload's own formula."""
    assert costs.flops > 0 and costs.kernels > 0, wl.name
    assert not [n for n in costs.notes if "no FLOP formula" in n], (wl.name, costs.notes)
    analytic = wl.cost(size, "float32", wl.modes[0]).flops
    if analytic:
        assert costs.flops == pytest.approx(analytic, rel=0.5), wl.name
