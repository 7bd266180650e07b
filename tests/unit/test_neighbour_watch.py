"""The suite's own neighbour reading (tests/_neighbours.py), which decides whether a test that
compares two real runs may fail: a busy process outside this test's tree is counted, this
test's own children are not, and a short burst is not averaged away."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from _neighbours import PEAK_SHARE, NeighbourWatch, own_cpu_s

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")

#: Burns ``CPU`` seconds of its own CPU time (however loaded the machine is), then writes DONE.
_BURN = """
import sys, time
cpu, done = float(sys.argv[1]), sys.argv[2]
while time.process_time() < cpu:
    pass
open(done, "w").close()
"""
#: Forks a child that burns and exits at once: the burner is nobody's child here (a neighbour).
_DETACHED = """
import os, subprocess, sys
if os.fork() == 0:
    os.setsid()
    subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    os._exit(0)
"""


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, "the burner never finished"
        time.sleep(0.02)


def test_a_process_outside_this_tree_is_a_neighbour_and_a_short_burst_is_not_diluted(
        tmp_path: Path) -> None:
    done = tmp_path / "done"
    with NeighbourWatch() as watch:
        subprocess.run([sys.executable, "-c", _DETACHED, _BURN, "0.6", str(done)], check=True,
                       timeout=60)
        _wait_for(done)
        time.sleep(0.3)  # the window after the burst: the average is lower than the peak
    assert watch.others_s >= 0.45, watch.describe()  # the burner's 0.6 CPU-s, give or take
    assert watch.peak_share >= PEAK_SHARE and watch.busy, watch.describe()
    assert watch.peak_share >= watch.mean_share
    assert "CPU-s" in watch.describe()


def test_this_tests_own_children_are_not_neighbours(tmp_path: Path) -> None:
    done = tmp_path / "done"
    with NeighbourWatch() as watch:
        child = subprocess.Popen([sys.executable, "-c", _BURN, "0.5", str(done)])
        _wait_for(done)
        # sampled while the child was still alive and after it was reaped: counted as ours
        child.wait(timeout=60)
    # the child's 0.5 CPU-s were read as this test's own, so they are not put on others
    assert watch.own_s >= 0.45, watch.describe()
    assert own_cpu_s() >= watch.own_s  # this process's tree, reaped children included
