"""Contention on the real machine: busy-loop processes beside a real ``chipfit bench``.

The busy test starts more pure-Python busy loops than there are usable cores, so every
thread of the bench must queue for a core whatever else runs on this shared machine: its
points must come out contended, and the warning must say so. A quiet run cannot be promised
on a shared machine (other processes may load it), so the quiet test checks what can be
checked anywhere: every point's stored evidence reproduces its verdict, a point whose
evidence is quiet is not marked, and the warning appears exactly when a point is marked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from chipfit.timing.contention import judge

BENCH = ("bench", "--quick", "--workloads", "matmul", "--sizes", "64,256", "--devices",
         "torch:cpu,torch:cpu@1t", "--no-save")


@pytest.fixture
def busy_loops():
    """``cores + 2`` processes spinning in ``while True: pass`` (stopped by their own pids)."""
    count = len(os.sched_getaffinity(0)) + 2
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    time.sleep(1.0)  # let them reach the run queue
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=30)


def _points(path) -> tuple[list[dict], dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [m for m in data["measurements"] if m["status"] == "ok"], data["contention"]


@pytest.mark.slow
def test_busy_loops_beside_a_real_bench_mark_its_points_contended(busy_loops, cli, tmp_path):
    out = tmp_path / "busy.json"
    proc = cli(*BENCH, "--json", str(out), check=True)
    assert all(p.poll() is None for p in busy_loops)  # they were loading the cores throughout
    points, summary = _points(out)
    assert len(points) == 4
    assert all(m["contended"] is True for m in points), [m["contention"] for m in points]
    for m in points:
        assert m["contention_note"] and m["contention"]["cores"] >= 1
        assert m["attempts"] >= 2  # re-measured after a back-off, and still contended
    assert summary["contended"] == 4 and summary["still_contended"] == 4
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "machine busy" in warning[0]
    assert "4 of 4 points contended" in warning[0] and "stayed contended" in warning[0]
    assert "busy" in proc.stdout  # the table marks the cells


def test_stored_evidence_reproduces_every_verdict_and_quiet_evidence_is_not_flagged(cli,
                                                                                    tmp_path):
    out = tmp_path / "run.json"
    proc = cli(*BENCH, "--json", str(out), check=True)
    points, summary = _points(out)
    assert len(points) == 4
    for m in points:
        verdict = judge(m["contention"])
        assert verdict.contended is m["contended"]
        assert bool(m["contention_note"]) is bool(m["contended"])
        if not verdict.reasons:  # quiet evidence: not marked, whatever the neighbours did before
            assert m["contended"] is False
    marked = sum(m["contended"] for m in points)
    assert summary["contended"] == marked
    assert ("warning: machine busy" in proc.stderr) is (marked > 0)


def test_a_point_measured_through_the_api_carries_its_evidence():
    import chipfit
    from chipfit.spec import TimingConfig

    m = chipfit.measure("matmul", 64, "torch:cpu@1t", timing=TimingConfig.quick())
    assert m.ok and m.contended in (True, False)  # Linux: the evidence is readable here
    numbers = dict(m.contention)
    assert numbers["cores"] >= 1 and numbers["window_s"] > 0 and "wait_share" in numbers
    assert judge(numbers).contended is m.contended
