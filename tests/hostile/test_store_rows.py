"""The SQLite store keeps exactly what chipfit writes, or says what it lost.

- A re-measured point replaces its row in one transaction: a kill at any moment leaves exactly
  one row per job (appending, then rewriting at the end, left two after a kill).
- A database holding schema objects chipfit did not create (a trigger that deletes
  measurements, a view, a table, an index, a table redefined) is refused before anything is
  written: ``bench --db`` once exited 0, said the run was "kept" and kept 0 of 2 measurements.
- Every write is read back in its transaction: a change made behind the store's back (a
  trigger added while it was open) is an error that names what was lost, never a silent gap.
- The driver of a run is recorded with its process start time, so a PID reused after a
  ``kill -9`` is seen as another process; ``--takeover`` overrides a driver that looks alive.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hostile._support import assert_refused, copy_db, sql

from chipfit.errors import InvalidInputError
from chipfit.results import Discovery, Measurement, Run
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.store import open_store
from chipfit.store import sqlite as store_sqlite

RUN_ID = "20260101T000000Z-aaaaaa"


def _run(run_id: str = RUN_ID) -> Run:
    return Run(run_id, "bench", "2026-01-01T00:00:00+00:00", discovery=Discovery(()))


def _m(size: str = "64", scale: float = 1.0, **kw) -> Measurement:
    return Measurement("matmul", size, "torch:cpu",
                       block_times_s=tuple(scale * t for t in (1.0e-3, 1.1e-3, 1.2e-3)), **kw)


def test_replacing_a_measurement_keeps_one_row_in_its_place(tmp_path) -> None:
    first, other, again = _m("64"), _m("96", 2.0), _m("64", 0.5, attempts=2)
    with open_store(tmp_path / "h.sqlite3") as store:
        store.begin_run(_run())
        store.add_measurement(RUN_ID, first)
        store.add_measurement(RUN_ID, other)
        store.replace_measurement(RUN_ID, again)
        loaded = store.load_run(RUN_ID)
    assert [(m.size, m.attempts) for m in loaded.measurements] == [("64", 2), ("96", 1)]
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    rows = conn.execute("SELECT seq, size FROM measurements ORDER BY seq").fetchall()
    conn.close()
    assert rows == [(0, "64"), (1, "96")]


# ---- schema objects chipfit did not create ----------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


FOREIGN = [
    ("trigger-deletes-measurements", "CREATE TRIGGER eat AFTER INSERT ON measurements BEGIN "
     "DELETE FROM measurements WHERE rowid = NEW.rowid; END", "trigger 'eat'"),
    ("trigger-ignores-inserts", "CREATE TRIGGER skip BEFORE INSERT ON measurements BEGIN "
     "SELECT RAISE(IGNORE); END", "trigger 'skip'"),
    ("view", "CREATE VIEW everything AS SELECT * FROM runs", "view 'everything'"),
    ("extra-table", "CREATE TABLE notes (x TEXT)", "table 'notes'"),
    ("extra-index", "CREATE INDEX by_size ON measurements (size)", "index 'by_size'"),
    ("table-redefined", "ALTER TABLE runs ADD COLUMN evil TEXT DEFAULT 'x'", "table 'runs'"),
]


@pytest.mark.parametrize("case", FOREIGN, ids=[c[0] for c in FOREIGN])
def test_a_database_with_foreign_schema_objects_is_refused(case, stored_run, cli,
                                                           tmp_path) -> None:
    _, statement, says = case
    db = copy_db(stored_run, tmp_path / "h.sqlite3")
    sql(db, statement)
    digest = _digest(db)
    for args in (["runs"], ["bench", "-w", "matmul", "-s", "64", "-d", "torch:cpu", "--quick",
                            "--no-save"]):
        proc = cli(*args, "--db", str(db))
        assert_refused(proc, 2, says)
        assert "did not create" in proc.stderr
    assert _digest(db) == digest  # refused before a byte was written
    assert sql(db, "SELECT COUNT(*) FROM measurements") == [(2,)]


def test_a_database_from_an_older_chipfit_is_still_accepted(tmp_path) -> None:
    """Only objects chipfit did not create are refused: every older schema still migrates."""
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA application_id = {store_sqlite.APPLICATION_ID}")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT "
                 "NOT NULL, applied_at TEXT NOT NULL)")
    version, description, statements = store_sqlite._MIGRATIONS[0]
    for statement in statements:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (version, description))
    conn.execute("ANALYZE")  # sqlite_stat1: SQLite's own, harmless
    conn.commit()
    conn.close()
    with open_store(db) as store:
        assert store.schema_version == store_sqlite.SCHEMA_VERSION
        store.begin_run(_run())
    with open_store(db) as store:
        assert store.load_run(RUN_ID).run_id == RUN_ID


# ---- every write is read back ------------------------------------------------------------------
def _behind_its_back(db: Path, statement: str) -> None:
    """Another connection changes the schema while the store is open (past its open check)."""
    conn = sqlite3.connect(db)
    conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("trigger", [
    "CREATE TRIGGER eat AFTER INSERT ON measurements BEGIN DELETE FROM measurements; END",
    "CREATE TRIGGER skip BEFORE INSERT ON measurements BEGIN SELECT RAISE(IGNORE); END",
    "CREATE TRIGGER warp AFTER INSERT ON measurements BEGIN UPDATE measurements SET "
    "data_json = '{}' WHERE rowid = NEW.rowid; END",
])
def test_a_measurement_the_database_does_not_keep_is_an_error(trigger, tmp_path) -> None:
    db = tmp_path / "h.sqlite3"
    with open_store(db) as store:
        store.begin_run(_run())
        store.add_measurement(RUN_ID, _m("32"))
        _behind_its_back(db, trigger)
        with pytest.raises(InvalidInputError, match=r"did not keep .*matmul 64 torch:cpu"):
            store.add_measurement(RUN_ID, _m("64"))
        with pytest.raises(InvalidInputError, match="did not keep"):
            store.replace_measurement(RUN_ID, _m("32", 0.5))
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER " + trigger.split()[2])
    conn.commit()
    conn.close()
    with open_store(db) as store:  # the failed writes were rolled back whole
        assert [m.size for m in store.load_run(RUN_ID).measurements] == ["32"]


def test_a_plan_the_database_does_not_keep_is_an_error(tmp_path) -> None:
    db = tmp_path / "h.sqlite3"
    jobs = [Job("matmul", s, DeviceRef.parse("torch:cpu"), timing=TimingConfig.quick())
            for s in ("32", "64")]
    with open_store(db) as store:
        _behind_its_back(db, "CREATE TRIGGER eat AFTER INSERT ON planned_jobs BEGIN DELETE FROM "
                         "planned_jobs WHERE rowid = NEW.rowid; END")
        with pytest.raises(InvalidInputError, match=r"kept 0 of 2 planned jobs"):
            store.begin_run(_run(), jobs)
        assert store.list_runs() == []


def test_finishing_a_run_the_database_lost_is_an_error(tmp_path) -> None:
    db = tmp_path / "h.sqlite3"
    with open_store(db) as store:
        store.begin_run(_run())
        sql(db, "DELETE FROM runs")
        with pytest.raises(InvalidInputError, match=f"run {RUN_ID}"):
            store.finish_run(_run())
        with pytest.raises(InvalidInputError, match=f"run {RUN_ID}"):
            store.claim_run(RUN_ID)


def test_run_ids_are_checked_when_written_too(tmp_path) -> None:
    with open_store(tmp_path / "h.sqlite3") as store:
        for bad in ("../ESCAPED", "r1"):
            with pytest.raises(InvalidInputError, match="run id"):
                store.begin_run(_run(bad))
            with pytest.raises(InvalidInputError, match="run id"):
                store.add_measurement(bad, _m())


# ---- the driver of a run: a PID reused after kill -9 --------------------------------------------
@pytest.fixture
def other_process():
    """A live process that is not this one (what a reused PID points at)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _driver(db: Path, driver: str) -> None:
    sql(db, "UPDATE runs SET driver = ?, finished_at = ''", driver)


def test_a_reused_pid_is_another_process(tmp_path, other_process) -> None:
    db, host = tmp_path / "h.sqlite3", socket.gethostname()
    with open_store(db) as store:
        store.begin_run(_run())
        mine = sql(db, "SELECT driver FROM runs")[0][0]
        assert mine.startswith(f"{host}:{os.getpid()}@")  # the start time is recorded
        start = store_sqlite.process_start(other_process.pid)
        assert start is not None
        _driver(db, f"{host}:{other_process.pid}@{start}")
        assert store.live_driver(RUN_ID) == f"{host}:{other_process.pid}"  # still running
        _driver(db, f"{host}:{other_process.pid}@{int(start) + 12345}")
        assert store.live_driver(RUN_ID) is None  # the PID now belongs to someone else


def test_resume_after_kill_9_with_the_pid_reused(tmp_path, other_process) -> None:
    from chipfit.pipelines.bench import resume_run

    db, host = tmp_path / "h.sqlite3", socket.gethostname()
    job = Job("matmul", "64", DeviceRef.parse("torch:cpu"), timing=TimingConfig.quick())
    with open_store(db) as store:
        store.begin_run(_run(), [job])
    start = store_sqlite.process_start(other_process.pid)
    _driver(db, f"{host}:{other_process.pid}@{int(start) + 1}")  # reused: a new start time
    with open_store(db) as store:
        run, todo = resume_run(store, RUN_ID)
    assert run.run_id == RUN_ID and [j.size for j in todo] == ["64"]

    # An older record (no start time) with a live PID: refused, and --takeover says so.
    _driver(db, f"{host}:{other_process.pid}")
    with open_store(db) as store, pytest.raises(InvalidInputError, match="--takeover"):
        resume_run(store, RUN_ID)
    with open_store(db, takeover=True) as store:
        run, todo = resume_run(store, RUN_ID)
    assert [j.size for j in todo] == ["64"]
    assert sql(db, "SELECT driver FROM runs")[0][0].startswith(f"{host}:{os.getpid()}@")


def test_takeover_on_the_command_line(stored_run, cli, tmp_path, other_process) -> None:
    db = copy_db(stored_run, tmp_path / "h.sqlite3")
    _driver(db, f"{socket.gethostname()}:{other_process.pid}")
    args = ["bench", "--db", str(db), "--resume", stored_run.run_id, "--no-save"]
    assert_refused(cli(*args), 2, "--takeover")
    proc = cli(*args, "--takeover")  # every planned job is measured: nothing left to run
    assert proc.returncode == 0, proc.stderr
    assert sql(db, "SELECT finished_at != '' FROM runs") == [(1,)]
