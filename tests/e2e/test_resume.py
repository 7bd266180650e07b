"""``kill -9`` a running ``chipfit bench``, then ``--resume``: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _store_peek import count as _count
from _store_peek import rows as _rows

SIZES = "16,24,32,40,48,56,64,72,80,88"
# Each point times for about 0.2 s (a CI target it cannot reach), so the kill, sent within
# 0.05 s of the first measurement, lands with nine points (1.8 s) to go; every point is
# measured once in all, so its budget is what the test costs.
ARGS = ("bench", "-w", "matmul", "-d", "torch:cpu", "-s", SIZES, "--budget", "0.2",
        "--target", "0.0001")


def _stop_mid_suite(db: Path, sig: signal.Signals, *extra: str) -> int:
    """Start the bench, send ``sig`` once it stored one more measurement; return its status."""
    start = _count(db)
    proc = subprocess.Popen([sys.executable, "-m", "chipfit", *ARGS, "--db", str(db), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None and _count(db) <= start:
            time.sleep(0.05)
        assert proc.poll() is None, f"bench ended before the signal:\n{proc.stderr.read()}"
        os.kill(proc.pid, sig)
    finally:
        proc.wait(60)
        proc.stderr.close()
    return proc.returncode


@pytest.mark.slow
def test_kill_9_then_resume_covers_the_plan_exactly_once(tmp_path: Path, cli) -> None:
    db = tmp_path / "history.sqlite3"
    assert _stop_mid_suite(db, signal.SIGKILL) == -signal.SIGKILL
    kept = _count(db)
    planned = [tuple(json.loads(r[0])) for r in _rows(db, "SELECT job_key FROM planned_jobs")]
    assert len(planned) == len(SIZES.split(","))
    assert 1 <= kept < len(planned), "the kill should land mid-suite"
    before = _rows(db, "SELECT seq, data_json FROM measurements ORDER BY seq")
    [(run_id, finished)] = _rows(db, "SELECT run_id, finished_at FROM runs")
    assert finished == ""  # killed: never marked finished

    # Resumed in subprocesses (where jobs run is not part of the plan), then Ctrl-C'd ...
    assert _stop_mid_suite(db, signal.SIGINT, "--resume", "--executor", "subprocess") == 130
    [(interrupted,)] = _rows(db, "SELECT interrupted FROM runs")
    assert interrupted == 1 and kept < _count(db)
    # ... and resumed again to the end.
    done = cli(*ARGS, "--db", str(db), "--resume")
    assert done.returncode == 0, done.stderr
    assert run_id in done.stderr

    keys = [tuple(json.loads(r[0])) for r in _rows(db, "SELECT job_key FROM measurements")]
    assert Counter(keys) == Counter(planned)  # every planned point, each exactly once
    assert _rows(db, "SELECT seq, data_json FROM measurements ORDER BY seq")[:kept] == before
    assert len(_rows(db, "SELECT run_id FROM runs")) == 1  # the same run, not a new one
    [(finished, interrupted)] = _rows(db, "SELECT finished_at, interrupted FROM runs")
    assert finished and not interrupted
    assert {r[0] for r in _rows(db, "SELECT status FROM measurements")} == {"ok"}
    executors = Counter(dict(json.loads(r[0])["metadata"]).get("executor", "inline")
                        for r in _rows(db, "SELECT data_json FROM measurements"))
    assert executors["subprocess"] >= 1 and executors["inline"] >= 1

    # The run's JSON file (what `chipfit report` reads) holds the whole run too.
    saved = json.loads((Path(os.environ["CHIPFIT_HOME"]) / "runs" / f"{run_id}.json").read_text())
    assert len(saved["measurements"]) == len(planned)

    again = cli(*ARGS, "--db", str(db), "--resume", run_id)
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_resume_with_nothing_to_resume_is_a_one_line_error(tmp_path: Path, cli) -> None:
    db = tmp_path / "history.sqlite3"
    proc = cli("bench", "-w", "matmul", "-d", "torch:cpu", "-s", "16", "--quick", "--db",
               str(db), "--resume")
    assert proc.returncode == 2
    assert "no unfinished bench run with these settings" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("bench", "-w", "matmul", "--quick", "--no-save", "--resume")
    assert proc.returncode == 2 and "resuming needs the results database" in proc.stderr
