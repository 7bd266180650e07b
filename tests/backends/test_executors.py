"""The subprocess executor on real torch: isolation per device, timeouts, crashes, mistakes.

Faults are injected through the executor's ``runner`` seam: the runners below wrap the real
``run_job`` and misbehave (hang, exit, segfault) for one chosen size only.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from chipfit.errors import InvalidInputError, UsageError
from chipfit.execute import get_executor
from chipfit.execute._worker import tagged
from chipfit.execute.inline import InlineExecutor
from chipfit.execute.job import run_job
from chipfit.execute.subprocess import SubprocessExecutor, groups
from chipfit.pipelines.bench import bench, plan
from chipfit.results import Discovery, Measurement
from chipfit.spec import DeviceRef, Job, TimingConfig

pytest.importorskip("torch")

TIMING = TimingConfig(warmup_s=0.01, min_block_s=0.002, min_samples=5, budget_s=0.15,
                      target_rel_ci=0.05)


def _torch() -> Discovery:
    from chipfit.discovery import discover

    return discover(["torch"])


def pid_runner(job: Job, discovery: Discovery) -> Measurement:
    return tagged(run_job(job, discovery), pid=str(os.getpid()))


@pytest.fixture(autouse=True)
def _no_contention_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests follow which process measured which point; re-measuring a point found
    contended (chipfit.execute.retry) would hand it to a later process, so it is off here."""
    from chipfit.execute import retry

    monkeypatch.setattr(retry, "MAX_ROUNDS", 0)


def faulty_runner(job: Job, discovery: Discovery) -> Measurement:
    """Size 24 exits abruptly, 40 segfaults, 56 hangs; the rest measure for real."""
    if job.size == "24":
        os._exit(7)
    if job.size == "40":
        os.kill(os.getpid(), signal.SIGSEGV)
    if job.size == "56":
        time.sleep(120)
    return pid_runner(job, discovery)


def test_each_device_group_runs_in_its_own_fresh_process_measuring_what_inline_does() -> None:
    """One subprocess bench for both: its workers' pids (one per device group, in the
    groups' order), and the same jobs run inline (the plan's order, every point ok, the same
    FLOPs and sizes)."""
    found = _torch()
    run = bench(["matmul"], ["torch:cpu", "torch:cpu@1t"], sizes=["16", "32"], timing=TIMING,
                executor=SubprocessExecutor(runner=pid_runner), discovery=found)
    assert [m.status for m in run.measurements] == ["ok"] * 4
    assert [m.device for m in run.measurements] == ["torch:cpu"] * 2 + ["torch:cpu@1t"] * 2
    pids = {d: {m.meta["pid"] for m in run.measurements if m.device == d}
            for d in ("torch:cpu", "torch:cpu@1t")}
    assert all(len(p) == 1 for p in pids.values())  # one process per group ...
    assert pids["torch:cpu"] != pids["torch:cpu@1t"]  # ... a different one per group
    assert str(os.getpid()) not in pids["torch:cpu"] | pids["torch:cpu@1t"]
    assert all(m.meta["executor"] == "subprocess" for m in run.measurements)
    assert dict(run.settings)["executor"] == "subprocess"

    jobs = plan(["matmul"], [DeviceRef("torch", "cpu"), DeviceRef("torch", "cpu", None, 1)],
                sizes=["16", "32"], timing=TIMING)
    inline = list(InlineExecutor().run(jobs, found))
    assert [j.key for j, _ in inline] == [j.key for j in jobs]
    assert [m.key for m in run.measurements] == [j.key for g in groups(jobs) for j in g]
    assert all(m.ok for _, m in inline)
    isolated = {m.key: (m.flops, m.size) for m in run.measurements}
    assert [(m.flops, m.size) for _, m in inline] == [isolated[j.key] for j in jobs]


def test_crashes_and_hangs_are_recorded_and_the_suite_goes_on() -> None:
    sizes = ["16", "24", "32", "40", "48", "56", "64"]
    run = bench(["matmul"], ["torch:cpu@1t"], sizes=sizes, timing=TIMING,
                executor=SubprocessExecutor(timeout_s=3, runner=faulty_runner),
                discovery=_torch())
    by_size = {m.size: m for m in run.measurements}
    assert [m.size for m in run.measurements] == sizes  # every job has a result, in order
    assert by_size["24"].status == "error" and "exit code 7" in by_size["24"].note
    assert by_size["40"].status == "error" and "SIGSEGV" in by_size["40"].note
    assert by_size["56"].status == "timeout" and "3 s" in by_size["56"].note
    assert by_size["24"].flops > 0  # failed points keep their analytic cost
    for size in ("16", "32", "48", "64"):
        assert by_size[size].ok, by_size[size].note
    pids = [by_size[s].meta["pid"] for s in ("16", "32", "48", "64")]
    assert len(set(pids)) == 4  # after each casualty, a new process takes the rest


def test_a_user_mistake_in_a_job_stops_the_suite_like_inline() -> None:
    job = Job("no-such-workload", "16", DeviceRef("torch", "cpu"), timing=TIMING)
    with pytest.raises(UsageError, match="no-such-workload"):
        list(SubprocessExecutor().run([job], Discovery(())))


def test_groups_keep_first_seen_order_and_split_thread_pins() -> None:
    cpu, one = DeviceRef("torch", "cpu"), DeviceRef("torch", "cpu", None, 1)
    jobs = [Job("matmul", s, d) for s in ("1", "2") for d in (cpu, one)]
    assert [[j.key for j in g] for g in groups(jobs)] == [
        [jobs[0].key, jobs[2].key], [jobs[1].key, jobs[3].key]]
    assert Counter(str(g[0].device) for g in groups(jobs)) == {"torch:cpu": 1, "torch:cpu@1t": 1}


def test_executor_names_and_options_are_checked() -> None:
    from chipfit.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'subprocess'"):
        get_executor("subproces")
    with pytest.raises(InvalidInputError):
        get_executor("subprocess", timeout_s=0)
    assert get_executor("inline").name == "inline"
