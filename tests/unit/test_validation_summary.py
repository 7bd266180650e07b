"""What the validation summary may rest on: cases measured while the machine was shared, or too
noisy to trust, are left out of every median and mean, counted, and named; a device left with
no case gets no median at all (pure: the cases are built here)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.analysis.validation import EXCLUSIONS, Case, ValidationReport


def _case(error: float, device: str = "torch:cpu", contended: bool = False,
          noisy: bool = False, spread: float = 0.02, status: str = "ok") -> Case:
    measured = 1e-3
    return Case("matmul", "64", "float32", "inference", device, measured * (1 + error), measured,
                status=status, contended=contended, noisy=noisy or contended, spread=spread)


def _report(*cases: Case, devices: tuple[str, ...] = ("torch:cpu",)) -> ValidationReport:
    return ValidationReport(tuple(cases), (), "t0", "t1", True, devices)


def test_contended_and_noisy_cases_are_left_out_counted_and_named() -> None:
    # the bug report: busy cases with errors of 700% and more dragged the mean to 717%
    report = _report(_case(0.1), _case(-0.2), _case(0.3), _case(40.0, contended=True),
                     _case(9.0, noisy=True, spread=0.6), _case(0.5, status="oom"))
    assert report.local_mape() == pytest.approx(0.2)
    assert report.local_mean_ape() == pytest.approx(0.2)
    local = report.summary()["local"]["torch:cpu"]
    assert local["cases"] == 3 and local["excluded"] == 2
    assert local["excluded_why"] == {"contended": 1, "noisy": 1} and local["refused"] is None
    top = report.summary()["excluded"]
    assert top["cases"] == 2 and top["contended"] == 1 and top["noisy"] == 1
    assert "measured while the machine was shared" in top["rule"]
    rows = json.loads(json.dumps(report.to_dict()))["cases"]
    assert [r["excluded"] for r in rows] == [None, None, None, "contended", "noisy", None]


def test_a_case_stopped_by_its_budget_with_a_tight_spread_still_counts() -> None:
    budget = _case(0.25, noisy=True, spread=0.03)  # noisy only because the CI target was missed
    assert budget.excluded is None
    assert _case(0.25, noisy=True, spread=math.nan).excluded == "noisy"  # nothing says it's sound
    assert _report(_case(0.05), budget).summary()["local"]["torch:cpu"]["cases"] == 2


def test_a_device_with_only_busy_cases_gets_no_median_and_says_why() -> None:
    report = _report(_case(49.5, contended=True), _case(7.0, contended=True),
                     _case(3.0, noisy=True, spread=0.4), _case(0.1, device="jax:cpu:0"),
                     devices=("torch:cpu", "jax:cpu:0"))
    s = report.summary()["local"]
    assert s["torch:cpu"]["mape"] is None and s["torch:cpu"]["mean_ape"] is None
    assert s["torch:cpu"]["cases"] == 0 and s["torch:cpu"]["excluded"] == 3
    why = report.refused("torch:cpu")
    assert why.startswith("no median error for torch:cpu: every one of its 3 cases was left out")
    assert "2 measured while the machine was shared" in why and "1 noisy" in why
    assert "\n" not in why and s["torch:cpu"]["refused"] == why
    assert s["jax:cpu:0"]["mape"] == pytest.approx(0.1) and report.refused("jax:cpu:0") is None
    # a device whose cases all failed has nothing to refuse: no scored case at all
    failed = _report(_case(0.1, status="error"))
    assert failed.refused("torch:cpu") is None and failed.summary()["local"]["torch:cpu"][
        "mape"] is None


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(-0.99, 100.0), st.booleans(), st.booleans(),
                          st.floats(0.0, 1.0)), max_size=12))
def test_no_left_out_case_ever_reaches_the_statistics(rows) -> None:
    cases = [_case(e, contended=c, noisy=n, spread=sp) for e, c, n, sp in rows]
    report = _report(*cases)
    kept = [abs(c.error) for c in cases if c.excluded is None]
    local = report.summary()["local"]["torch:cpu"]
    assert local["cases"] == len(kept)
    assert local["excluded"] == len(cases) - len(kept)
    if kept:
        assert local["mean_ape"] == pytest.approx(sum(kept) / len(kept))
        assert min(kept) - 1e-12 <= local["mape"] <= max(kept) + 1e-12
    else:
        assert local["mape"] is None and (report.refused("torch:cpu") is None) == (not cases)
    assert set(local["excluded_why"]) <= set(EXCLUSIONS)
