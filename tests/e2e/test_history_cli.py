"""``chipfit runs``, ``show`` and ``compare`` on real measured runs, as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from _neighbours import NeighbourWatch
from chipfit.store import SCHEMA_VERSION, open_store
from chipfit.store.runs import load_run

BENCH = ("bench", "-w", "matmul", "-d", "torch:cpu", "-s", "32,64", "--quick")
#: Other processes' use of the CPUs while the two real runs were measured (this test's own
#: reading, independent of chipfit's; see tests/_neighbours.py).
WATCH = NeighbourWatch()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A database with one real run and a copy of it made twice as slow: (db, A, B)."""
    home = tmp_path_factory.mktemp("history-home")
    db = home / "h.sqlite3"
    with WATCH:
        proc = subprocess.run([sys.executable, "-m", "chipfit", *BENCH, "--db", str(db)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "CHIPFIT_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    with open_store(db) as store:
        a = store.load_run("latest")
        slow = tuple(replace(m, block_times_s=tuple(2 * t for t in m.block_times_s))
                     for m in a.measurements)
        b = replace(a, run_id="20000101T000000Z-5104e0", measurements=slow)  # "slow"
        store.save_run(b)
    return db, a.run_id, b.run_id


def test_runs_lists_machine_devices_and_versions(history, cli) -> None:
    db, a, b = history
    proc = cli("runs", "--db", str(db), check=True)
    assert a in proc.stdout and b in proc.stdout
    assert "torch:cpu" in proc.stdout and "bench" in proc.stdout and "matmul" in proc.stdout
    assert "torch 2." not in proc.stdout and "--wide" in proc.stdout  # versions: --wide only
    assert "torch 2." in cli("runs", "--db", str(db), "--wide", check=True).stdout
    listed = json.loads(cli("runs", "--db", str(db), "--json", check=True).stdout)
    mine = next(r for r in listed if r["run_id"] == a)
    assert mine["command"] == "bench" and mine["workloads"] == ["matmul"]
    assert mine["state"] == "complete" and mine["devices"] == ["torch:cpu"]
    assert mine["planned"] == mine["measured"] == mine["ok"] == 2
    assert len(mine["fingerprint"]) == 16 and "torch" in mine["versions"]


def test_show_prints_and_exports_a_run(history, cli, tmp_path: Path) -> None:
    db, a, _ = history
    proc = cli("show", a[:12], "--db", str(db), "--json", str(tmp_path / "r.json"), "--csv",
               str(tmp_path / "r.csv"), check=True)
    assert f"Run {a}" in proc.stdout and "matmul" in proc.stdout and "fingerprint" in proc.stdout
    run = load_run(tmp_path / "r.json")
    assert run.run_id == a and len(run.measurements) == 2 and run.measurements[0].block_times_s
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["size"] for r in rows] == ["32", "64"]
    raw = json.loads(cli("show", a, "--db", str(db), "--json", "-", check=True).stdout)
    assert raw["run_id"] == a


def test_compare_flags_an_injected_2x_slowdown(history, cli, tmp_path: Path) -> None:
    db, a, b = history
    proc = cli("compare", a, b, "--db", str(db), "--fail-on-regression", "--csv",
               str(tmp_path / "c.csv"))
    data = json.loads(cli("compare", a, b, "--db", str(db), "--json", "-").stdout)
    # The machine is shared: a point measured while it was busy is reported as "contended"
    # ("unsure" when its chunks overlap, "unchanged" when its own drift exceeds the change),
    # never flagged; every quiet point is flagged.
    quiet = [p for p in data["points"] if not p["contended"]]
    if data["regressions"] < len(quiet) and WATCH.busy:
        # a neighbour chipfit did not see (it watches its own cores between timing windows)
        # can widen a run's own drift past the 2x change: this test's reading saw one
        pytest.skip(f"another process shared the machine: {WATCH.describe()}, which chipfit's "
                    "evidence did not show; its drift may hide the change "
                    f"({[p['verdict'] for p in data['points']]})")
    assert data["regressions"] == len(quiet), WATCH.describe()
    assert proc.returncode == (1 if quiet else 0), proc.stderr
    assert f"{len(quiet)} regression(s)" in proc.stdout
    for point in data["points"]:
        assert point["ratio"] == pytest.approx(2.0)
        if point["contended"]:
            assert point["verdict"] in ("contended", "unsure", "unchanged")
            assert not point["flagged"]
        else:
            assert point["verdict"] == "regression" and point["p_value"] < 0.01
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [r["verdict"] for r in rows] == [p["verdict"] for p in data["points"]]


def test_compare_of_two_real_back_to_back_runs_flags_nothing(history, cli, tmp_path: Path) -> None:
    db, a, _ = history
    with WATCH:
        cli(*BENCH, "--db", str(db), check=True)  # the same work again, right after
    proc = cli("compare", a, "latest", "--db", str(db), "--fail-on-regression", "--json", "-")
    data = json.loads(proc.stdout)
    assert len(data["points"]) == 2
    assert all(p["noise_floor"] is not None for p in data["points"])
    if data["busy"]:  # chipfit saw the neighbours: nothing flagged, and the verdict says why
        assert data["verdict"] == "inconclusive: machine busy"
        assert all(p["contended"] for p in data["points"])
    if data["regressions"] and WATCH.busy:
        # chipfit watches its own cores between its timing windows; a neighbour that came and
        # went (or ran on another core and took the memory bandwidth) can slip past it. This
        # test's own reading saw one: the flagged change may be theirs, so it cannot fail here.
        pytest.skip(f"another process shared the machine: {WATCH.describe()}, which chipfit's "
                    "evidence did not show; the flagged change may be theirs "
                    f"({[p['verdict'] for p in data['points']]})")
    # Nobody else ran (or chipfit saw them): two runs of the same work must not differ.
    assert proc.returncode == 0, (WATCH.describe(), proc.stdout)
    assert data["regressions"] == 0


def test_compare_of_a_run_with_itself_or_a_json_copy_flags_nothing(history, cli,
                                                                   tmp_path: Path) -> None:
    db, a, _ = history
    cli("show", a, "--db", str(db), "--json", str(tmp_path / "a.json"), check=True)
    proc = cli("compare", str(tmp_path / "a.json"), a, "--db", str(db), "--fail-on-regression")
    assert proc.returncode == 0, proc.stderr
    assert "0 regression(s)" in proc.stdout


def test_a_newer_or_corrupt_database_is_a_one_line_error(tmp_path: Path, cli) -> None:
    newer = tmp_path / "newer.sqlite3"
    open_store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 'x')", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(os.urandom(4096))
    for db, words in ((newer, "newer than this chipfit"), (corrupt, "is damaged")):
        for args in (("runs",), ("show",), ("bench", "-w", "matmul", "-s", "16", "--quick")):
            proc = cli(*args, "--db", str(db))
            assert proc.returncode == 2, (args, proc.stderr)
            assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_history_commands_on_an_empty_or_missing_database(tmp_path: Path, cli) -> None:
    proc = cli("runs", "--db", str(tmp_path / "missing.sqlite3"))
    assert proc.returncode == 2 and "no chipfit database" in proc.stderr
    open_store(tmp_path / "empty.sqlite3").close()
    assert "no runs" in cli("runs", "--db", str(tmp_path / "empty.sqlite3"), check=True).stdout
    proc = cli("show", "nope", "--db", str(tmp_path / "empty.sqlite3"))
    assert proc.returncode == 2 and "no run 'nope'" in proc.stderr


def test_bench_keeps_runs_in_the_default_database(cli) -> None:
    proc = cli(*BENCH, check=True)
    default = Path(os.environ["CHIPFIT_HOME"]) / "chipfit.sqlite3"
    assert f"kept in {default}" in proc.stderr
    assert "2 ok of 2" in cli("show", check=True).stdout
    listed = json.loads(cli("runs", "--json", check=True).stdout)
    assert len(listed) == 1 and listed[0]["ok"] == 2
    cli(*BENCH, "--no-save", check=True)
    assert len(json.loads(cli("runs", "--json", check=True).stdout)) == 1  # --no-save: not kept
