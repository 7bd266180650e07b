"""The sweep library on real torch: OOM-aware ladders and the memory guard's limit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipfit.discovery import discover
from chipfit.errors import InvalidInputError
from chipfit.pipelines.sweep import guard_limit, guard_limits, sweep
from chipfit.results import GuardLimit
from chipfit.spec import TimingConfig


@pytest.fixture(autouse=True)
def _no_pause_before_remeasuring(monkeypatch):
    """Points measured beside a neighbour (under xdist, the other worker) are re-measured
    after a pause (1 s, then 2 s, per ladder rung: up to 12 s a sweep here). Re-measuring
    still happens, as it does for a user; only the pause is cut: these tests check ladders,
    limits and counts, none of which depends on its length."""
    from chipfit.execute import retry

    monkeypatch.setattr(retry, "BACKOFF_S", 0.01)


FAST = TimingConfig(warmup_s=0.01, min_block_s=0.002, min_samples=3, target_rel_ci=0.1,
                    budget_s=0.1)


def small_memory_discovery(mib: int):
    """This machine's torch CPU, but claiming only ``mib`` MiB, so the guard refuses sizes."""
    found = discover(["torch"])
    cpu = replace(found.get("torch:cpu"), memory_bytes=mib * 2**20)
    return replace(found, devices=(cpu,))


def test_sizes_past_the_first_that_does_not_fit_are_not_tried():
    # 4 MiB claimed (the guard's arithmetic is the same at any size; the largest size really
    # measured is 256K elements, 3 MiB, not 4M elements, 48 MiB)
    found = small_memory_discovery(4)
    # elementwise needs 3 x 4 bytes per element: 4 MiB x 0.9 headroom admits ~315K elements
    result = sweep("elementwise", ["torch:cpu@1t"], start="2^6", stop="2^26", points=6,
                   timing=FAST, discovery=found)
    sizes = [(m.size, m.status) for m in result.run.measurements]
    assert sizes == [("64", "ok"), ("1024", "ok"), ("16384", "ok"), ("262144", "ok"),
                     ("4194304", "oom")]  # 2^26 is not tried once 2^22 did not fit
    assert "does not fit" in result.run.measurements[-1].note
    (summary,) = result.analysis.summaries
    assert summary.largest_ok == "262144" and summary.first_oom == "4194304"
    limit = int(summary.guard_limit)
    assert 262144 <= limit < 4194304
    assert limit == int(4 * 2**20 * 0.9 // 12)
    # recorded with the run (a field, not a settings key), so a report shows it without
    # estimating again
    assert result.run.guard_limits == (
        GuardLimit("elementwise", "torch:cpu@1t", "float32", "inference", str(limit)),)
    assert not any(k.startswith("guard_limit") for k, _ in result.run.settings)
    assert guard_limits(result.run, compute=False) == {
        ("elementwise", "torch:cpu@1t", "float32", "inference"): str(limit)}


def test_guard_limit_is_none_without_a_memory_estimate_or_device_memory():
    found = small_memory_discovery(64)
    from chipfit.spec import DeviceRef

    no_memory = replace(found, devices=(replace(found.devices[0], memory_bytes=None),))
    assert guard_limit("matmul", "float32", "inference", DeviceRef.parse("torch:cpu"),
                       no_memory) is None
    # matmul holds 3 n^2 floats: with 64 MiB, n is about 2^11.8
    n = int(guard_limit("matmul", "float32", "inference", DeviceRef.parse("torch:cpu"), found))
    assert 3 * n * n * 4 <= 0.9 * 64 * 2**20 < 3 * (n + 1) ** 2 * 4


def test_progress_counts_every_job_once():
    seen = []
    result = sweep("matmul", ["torch:cpu@1t", "torch:cpu"], start="8", stop="16",
                   timing=FAST, on_result=lambda i, n, job, m, run: seen.append((i, n)))
    assert seen[:4] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # a crossing between 8 and 16 is bisected: those jobs are counted once each as well
    assert len(seen) == len(result.run.measurements) and not result.run.interrupted
    assert len({(m.size, m.device) for m in result.run.measurements}) == len(seen)


def test_an_interrupted_sweep_resumes_with_only_the_missing_points(tmp_path):
    from chipfit.spec import TimingConfig
    from chipfit.store import open_store

    timing = TimingConfig(warmup_s=0.005, min_block_s=0.001, budget_s=0.1, target_rel_ci=0.1)
    store = open_store(tmp_path / "db.sqlite3")
    seen = []

    def stop_after_two(i, n, job, m, run):
        seen.append(job.key)
        if len(seen) == 2:
            raise KeyboardInterrupt

    args = dict(start="16", stop="64", timing=timing, store=store)
    first = sweep("matmul", ["torch:cpu", "torch:cpu@1t"], on_result=stop_after_two, **args)
    assert first.run.interrupted and len(first.run.measurements) == 2
    done = sweep("matmul", ["torch:cpu", "torch:cpu@1t"], resume=True, **args)
    assert done.run.run_id == first.run.run_id and not done.run.interrupted
    keys = [(m.size, m.device) for m in done.run.measurements]
    assert len(keys) == len(set(keys))  # none measured twice
    ladder = {(s, d) for s in ("16", "32", "64") for d in ("torch:cpu", "torch:cpu@1t")}
    assert ladder <= set(keys)
    # anything beyond the ladder is a bisection of a crossing found in a gap, on both series
    extra = set(keys) - ladder
    assert all(16 < int(s) < 64 for s, _ in extra)
    assert {s for s, d in extra if d == "torch:cpu"} == {s for s, d in extra if d != "torch:cpu"}
    with pytest.raises(InvalidInputError, match="no unfinished sweep run"):
        sweep("matmul", ["torch:cpu", "torch:cpu@1t"], resume=True, **args)
