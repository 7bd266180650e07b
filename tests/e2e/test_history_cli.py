"""``chipfit runs``, ``show`` and ``compare`` on real measured runs, as a user runs them."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chipfit.store import SCHEMA_VERSION, open_store
from chipfit.store.runs import load_run

BENCH = ("bench", "-w", "matmul", "-d", "torch:cpu", "-s", "32,64", "--quick")
#: Other processes' share of the machine's CPUs while a run was measured (this test's own
#: reading, independent of chipfit's) above which a flagged change may be theirs.
NEIGHBOUR_SHARE = 0.10
_NEIGHBOURS: dict[str, float] = {}


@contextlib.contextmanager
def _neighbours(name: str) -> Iterator[None]:
    """Record in _NEIGHBOURS[name] the share of every CPU that processes other than this one
    and its children used while the block ran (/proc/stat busy jiffies minus our CPU time)."""
    def busy_s() -> float:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [float(x) for x in fh.readline().split()[1:8]]
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")

    def own_s() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    if not os.path.exists("/proc/stat"):
        yield
        return
    start, busy, own = time.monotonic(), busy_s(), own_s()
    yield
    wall = max(time.monotonic() - start, 1e-3)
    others = max(0.0, (busy_s() - busy) - (own_s() - own))
    _NEIGHBOURS[name] = max(_NEIGHBOURS.get(name, 0.0), others / (wall * (os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A database with one real run and a copy of it made twice as slow: (db, A, B)."""
    home = tmp_path_factory.mktemp("history-home")
    db = home / "h.sqlite3"
    with _neighbours("A"):
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
    assert data["regressions"] == len(quiet)
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
    with _neighbours("B"):
        cli(*BENCH, "--db", str(db), check=True)  # the same work again, right after
    proc = cli("compare", a, "latest", "--db", str(db), "--fail-on-regression", "--json", "-")
    data = json.loads(proc.stdout)
    assert len(data["points"]) == 2
    assert all(p["noise_floor"] is not None for p in data["points"])
    if data["busy"]:  # chipfit saw the neighbours: nothing flagged, and the verdict says why
        assert data["verdict"] == "inconclusive: machine busy"
        assert all(p["contended"] for p in data["points"])
    neighbours = max(_NEIGHBOURS.get("A", 0.0), _NEIGHBOURS.get("B", 0.0))
    if data["regressions"] and neighbours >= NEIGHBOUR_SHARE:
        pytest.skip(f"other processes used {neighbours:.0%} of the CPUs while the runs were "
                    "measured, which chipfit's evidence did not show: the flagged change may be "
                    f"theirs ({[p['verdict'] for p in data['points']]})")
    assert proc.returncode == 0, proc.stdout
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
