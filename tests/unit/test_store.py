"""The SQLite store: round trips, schema versions and migrations, damage, concurrency, resume."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from chipfit.errors import BackendUnavailableError, InvalidInputError, SchemaError
from chipfit.results import DeviceInfo, Discovery, Measurement, Problem, Run
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.store import SCHEMA_VERSION, open_store
from chipfit.store import sqlite as store_sqlite


def _measurement(size: str = "64", device: str = "torch:cpu", scale: float = 1.0,
                 status: str = "ok") -> Measurement:
    times = tuple(scale * t for t in (1.0e-3, 1.1e-3, 0.9e-3, 1.05e-3, 0.95e-3))
    return Measurement("matmul", size, device, status=status,
                       block_times_s=times if status == "ok" else (), number_per_block=4,
                       first_call_s=None if status != "ok" else 2e-3, stop_reason="ci_target",
                       flops=2.0 * int(size) ** 3, metadata=(("copies", "none: host memory"),),
                       note="" if status == "ok" else "does not fit")


def _run(run_id: str = "20260101T000000Z-aaaaaa", measurements: tuple[Measurement, ...] = (),
         settings: dict[str, str] | None = None, started: str = "2026-01-01T00:00:00+00:00",
         fingerprint: str = "f" * 16) -> Run:
    cpu = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "Test CPU", memory_bytes=2**34, cores=2,
                     threads=4, isa=("avx2", "fma"), versions=(("torch", "2.13.0+cpu"),),
                     details=(("arch", "x86_64"),))
    return Run(run_id=run_id, command="bench", started_at=started,
               machine=(("fingerprint", fingerprint), ("hostname", "box")),
               discovery=Discovery((cpu,), (Problem("torch:cuda", "no CUDA here"),)),
               measurements=measurements, chipfit_version="0.1.0",
               settings=tuple(sorted((settings or {"workloads": "matmul",
                                                   "devices": "torch:cpu"}).items())))


RUN = "20260101T000000Z-aaaaaa"


def _jobs(sizes: tuple[str, ...] = ("64", "128")) -> list[Job]:
    return [Job("matmul", s, DeviceRef.parse("torch:cpu"), timing=TimingConfig.quick())
            for s in sizes]


def test_a_run_round_trips_exactly_with_raw_samples(tmp_path: Path) -> None:
    run = _run(measurements=(_measurement("64"), _measurement("128", status="oom")))
    with open_store(tmp_path / "h.sqlite3") as store:
        store.begin_run(run, _jobs())
        back = store.load_run(run.run_id)
    assert back == run
    assert back.measurements[0].block_times_s == run.measurements[0].block_times_s
    assert back.measurements[0].median_s == run.measurements[0].median_s


def test_measurements_are_committed_one_by_one_and_the_plan_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    run = _run()
    store = open_store(db)
    store.begin_run(run, _jobs(("64", "128", "256")))
    store.add_measurement(run.run_id, _measurement("64"))
    # Another connection sees it at once: it was committed, not buffered.
    with open_store(db) as other:
        assert other.done_keys(run.run_id) == {("matmul", "64", "torch:cpu", "float32",
                                                "inference")}
        assert [j.size for j in other.planned_jobs(run.run_id)] == ["64", "128", "256"]
        assert other.planned_jobs(run.run_id)[0] == _jobs(("64",))[0]
        assert other.list_runs()[0].state == "unfinished"
    store.close()


def test_wal_mode_schema_version_and_migration_rows(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    with open_store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == store_sqlite.APPLICATION_ID
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    conn.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_an_older_database_is_migrated_forward(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "h.sqlite3"
    run = _run(measurements=(_measurement(),))
    with open_store(db) as store:
        store.begin_run(run)
    future = (SCHEMA_VERSION + 1, "test: a notes column",
              ("ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT ''",))
    monkeypatch.setattr(store_sqlite, "_MIGRATIONS", store_sqlite._MIGRATIONS + (future,))
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with open_store(db) as store:
        assert store.schema_version == SCHEMA_VERSION + 1
        assert store.load_run(run.run_id) == run  # the data survived the migration
    conn = sqlite3.connect(db)
    assert "notes" in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    conn.close()


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    open_store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 'x')",
                 (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match=r"schema version \d+, newer than this chipfit.*upgrade"):
        open_store(db)


@pytest.mark.parametrize("damage", ["garbage", "pages", "truncated"])
def test_a_corrupt_file_gives_a_clear_error(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "h.sqlite3"
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    else:
        with open_store(db) as store:
            store.begin_run(_run(measurements=tuple(_measurement(str(s)) for s in range(1, 60))))
        size = db.stat().st_size
        with db.open("r+b") as fh:
            if damage == "pages":
                fh.seek(4096)
                fh.write(b"\xff" * (size - 4096))
            else:
                fh.truncate(size // 3)
    with pytest.raises(InvalidInputError, match="not a chipfit database or is damaged"):
        with open_store(db) as store:
            store.load_run("latest")


def test_foreign_databases_directories_and_missing_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(InvalidInputError, match="not chipfit's"):
        open_store(foreign)
    with pytest.raises(InvalidInputError, match="is a directory"):
        open_store(tmp_path)
    with pytest.raises(InvalidInputError, match="no chipfit database"):
        open_store(tmp_path / "absent.sqlite3", create=False)
    assert not (tmp_path / "absent.sqlite3").exists()


def test_run_references_resolve(tmp_path: Path) -> None:
    with open_store(tmp_path / "h.sqlite3") as store:
        store.begin_run(_run("20260101T000000Z-aaaaaa", started="2026-01-01T00:00:00+00:00"))
        store.begin_run(_run("20260102T000000Z-bbbbbb", started="2026-01-02T00:00:00+00:00"))
        assert store.resolve("latest") == "20260102T000000Z-bbbbbb"
        assert store.resolve("latest~1") == "20260101T000000Z-aaaaaa"
        assert store.resolve("20260101") == "20260101T000000Z-aaaaaa"
        with pytest.raises(InvalidInputError, match="matches 2 runs"):
            store.resolve("2026010")
        with pytest.raises(InvalidInputError, match="no run 'nope'"):
            store.resolve("nope")
        with pytest.raises(InvalidInputError, match="holds no run 'latest~5'"):
            store.resolve("latest~5")
        assert [s.run_id for s in store.list_runs()] == ["20260102T000000Z-bbbbbb",
                                                         "20260101T000000Z-aaaaaa"]
        assert len(store.list_runs(limit=1)) == 1


def test_find_resumable_matches_the_plan_not_the_executor(tmp_path: Path) -> None:
    plan = {"workloads": "matmul", "devices": "torch:cpu", "sizes": "64"}
    with open_store(tmp_path / "h.sqlite3") as store:
        done = _run("20260101T000000Z-d0e000", settings=plan)
        store.begin_run(done)
        store.finish_run(replace(done, finished_at="2026-01-01T00:01:00+00:00"))
        store.begin_run(_run("20260101T000000Z-0be000", settings={**plan, "executor": "inline"}))
        store.begin_run(_run("20260101T000000Z-0e4000", settings={**plan, "sizes": "128"}))
        wanted = {**plan, "executor": "subprocess", "job_timeout_s": "30"}
        assert store.find_resumable("bench", wanted, "f" * 16) == "20260101T000000Z-0be000"
        assert store.find_resumable("bench", wanted, "0" * 16) is None  # another machine
        assert store.find_resumable("sweep", wanted, "f" * 16) is None


def test_live_driver_spots_a_process_still_writing(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    with open_store(db) as store:
        store.begin_run(_run(RUN))
        assert store.live_driver(RUN) is None  # this very process
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            conn = sqlite3.connect(db)
            conn.execute("UPDATE runs SET driver = ?", (f"{socket.gethostname()}:{sleeper.pid}",))
            conn.commit()
            conn.close()
            assert store.live_driver(RUN) == f"{socket.gethostname()}:{sleeper.pid}"
        finally:
            sleeper.kill()
            sleeper.wait()
        assert store.live_driver(RUN) is None


_WRITER = textwrap.dedent("""
    import sys
    from chipfit.results import Measurement
    from chipfit.store import open_store
    db, shared, own, tag, count = sys.argv[1:6]
    with open_store(db) as store:
        for i in range(int(count)):
            for run_id in (shared, own):
                store.add_measurement(run_id, Measurement("matmul", f"{tag}-{i}", "torch:cpu",
                                                          block_times_s=(1e-3,)))
""")


SHARED = "20260101T000000Z-5a4ed0"


def _own(w: int) -> str:
    return f"20260101T000000Z-00000{w}"


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    db, writers, count = tmp_path / "h.sqlite3", 4, 40
    with open_store(db) as store:
        store.begin_run(_run(SHARED))
        for w in range(writers):
            store.begin_run(_run(_own(w)))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), SHARED, _own(w),
                               f"w{w}", str(count)], stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    for proc in procs:
        _, errors = proc.communicate(timeout=120)
        assert proc.returncode == 0, errors
    with open_store(db) as store:
        shared = store.load_run(SHARED)
        sizes = Counter(m.size for m in shared.measurements)
        assert len(shared.measurements) == writers * count
        assert set(sizes.values()) == {1}
        for w in range(writers):
            own = [m.size for m in store.load_run(_own(w)).measurements]
            assert own == [f"w{w}-{i}" for i in range(count)]  # in commit order


def test_to_dataframe_has_one_row_per_measurement_with_raw_times(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    from chipfit.store.frames import FRAME_COLUMNS, to_dataframe

    run = _run(measurements=(_measurement("64"), _measurement("128", status="oom")))
    frame = to_dataframe([run, run])
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert len(frame) == 4
    first = frame.iloc[0]
    assert first["fingerprint"] == "f" * 16 and first["source"] == "measured"
    assert first["times_s"] == run.measurements[0].times_s
    assert first["median_s"] == pytest.approx(run.measurements[0].median_s)
    assert frame.iloc[1]["status"] == "oom"


def test_to_dataframe_without_pandas_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chipfit.store.frames import to_dataframe

    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    with pytest.raises(BackendUnavailableError, match="pip install"):
        to_dataframe(_run())


LIMIT_KEY = "guard_limit|matmul|torch:cpu|float32|inference"


def test_guard_limits_are_a_field_in_the_database_and_in_run_files(tmp_path: Path) -> None:
    from chipfit.results import GuardLimit
    from chipfit.store.runs import load_run, run_to_dict, save_run

    limits = (GuardLimit("matmul", "torch:cpu", "float32", "inference", "4096"),
              GuardLimit("mlp", "torch:cpu", "float32", "train", None))
    run = replace(_run(measurements=(_measurement(),)), guard_limits=limits)
    with open_store(tmp_path / "h.sqlite3") as store:
        store.begin_run(run, _jobs())
        assert store.load_run(run.run_id) == run
    data = run_to_dict(run)
    assert data["schema_version"] == 4 and not any("|" in k for k in data["settings"])
    assert data["guard_limits"][0] == {"workload": "matmul", "device": "torch:cpu",
                                       "dtype": "float32", "mode": "inference",
                                       "size": "4096", "source": "predicted"}
    assert load_run(save_run(run, tmp_path / "run.json")) == run


def test_a_schema_1_run_file_with_limits_in_its_settings_still_reads(tmp_path: Path) -> None:
    import json

    from chipfit.results import GuardLimit
    from chipfit.store.runs import load_run, run_to_dict

    old = run_to_dict(_run())
    old["schema_version"] = 1
    del old["guard_limits"]
    old["settings"][LIMIT_KEY] = "2048"
    old["settings"]["guard_limit|mlp|torch:cpu|float32|train"] = ""
    (tmp_path / "old.json").write_text(json.dumps(old))
    run = load_run(tmp_path / "old.json")
    assert run.settings == _run().settings
    assert run.limits() == {("matmul", "torch:cpu", "float32", "inference"): "2048",
                            ("mlp", "torch:cpu", "float32", "train"): None}
    assert run.guard_limits[0] == GuardLimit("matmul", "torch:cpu", "float32", "inference", "2048")


def test_a_schema_1_database_with_limits_in_its_settings_is_migrated(tmp_path: Path) -> None:
    import json

    db = tmp_path / "h.sqlite3"
    old = _run(settings={"workloads": "matmul"})
    with open_store(db) as store:
        store.begin_run(old)
    conn = sqlite3.connect(db)  # make it what chipfit with schema 1 wrote
    with conn:
        conn.execute("ALTER TABLE runs DROP COLUMN guard_limits_json")
        conn.execute("ALTER TABLE measurements DROP COLUMN contended")
        conn.execute("ALTER TABLE measurements DROP COLUMN stack")
        conn.execute("DELETE FROM schema_migrations WHERE version > 1")
        conn.execute("UPDATE runs SET settings_json = ?",
                     (json.dumps({"workloads": "matmul", LIMIT_KEY: "2048"}),))
    conn.close()
    with open_store(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        back = store.load_run(old.run_id)
    assert back.settings == (("workloads", "matmul"),)
    assert back.limits() == {("matmul", "torch:cpu", "float32", "inference"): "2048"}


def test_a_version_1_database_gains_the_contended_column_as_unknown(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    old = _run(measurements=(_measurement(),))
    with open_store(db) as store:
        store.begin_run(old)
    conn = sqlite3.connect(db)  # make it what chipfit with schema 1 wrote
    with conn:
        conn.execute("ALTER TABLE runs DROP COLUMN guard_limits_json")
        conn.execute("ALTER TABLE measurements DROP COLUMN contended")
        conn.execute("ALTER TABLE measurements DROP COLUMN stack")
        conn.execute("DELETE FROM schema_migrations WHERE version > 1")
        data = json.loads(conn.execute("SELECT data_json FROM measurements").fetchone()[0])
        for key in ("contended", "contention", "contention_note", "attempts"):
            data.pop(key)
        conn.execute("UPDATE measurements SET data_json = ?", (json.dumps(data),))
    conn.close()
    busy = replace(_measurement("128"), contended=True, contention=(("load1", 4.8),))
    with open_store(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        store.add_measurement(old.run_id, busy)
        loaded = store.load_run(old.run_id).measurements
    assert loaded[0].contended is None and loaded[0].attempts == 1 and loaded[1] == busy
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT contended FROM measurements ORDER BY seq")] == [
        None, 1]
    conn.close()
