"""Stored results are data: a run JSON file or a database row is validated where it enters.

Every number of a measurement is checked as it is loaded (finite, in range, the right type,
physically possible), every run id matches what chipfit generates (it names files), and a
refusal is one line naming the file and the field, exit code 2, before anything is shown,
measured or written. The property tests mutate valid run files and database rows at random:
the loaders give a valid run or chipfit's one-line error, never another exception, and a run
they accept never makes chipfit write outside the data directory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests._screens import paragraphs
from tests.hostile._support import StoredRun, assert_refused, copy_db, sql

from chipfit.errors import ChipfitError, UsageError
from chipfit.results import DeviceInfo, Discovery, Measurement, Run, check_run_id, new_run_id
from chipfit.store import open_store
from chipfit.store.runs import load_run, run_file, run_from_dict, run_to_dict, save_run

DEEP = 100_000  # deeper than any JSON parser's recursion


# ---- crafted files ----------------------------------------------------------------------------
def _crafted_json(stored: StoredRun, tmp: Path, mutate: Callable[[dict], Any],
                  name: str = "crafted.json") -> str:
    data = json.loads(stored.json.read_text())
    result = mutate(data)
    (tmp / name).write_text(json.dumps(data if result is None else result))
    return str(tmp / name)


def _m(key: str, value: Any) -> Callable[[dict], None]:
    """Set ``key`` of the first measurement."""
    def mutate(data: dict) -> None:
        data["measurements"][0][key] = value
    return mutate


def _times(value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        m = data["measurements"][0]
        m["block_times_s"] = [value] * len(m["block_times_s"])
    return mutate


def _top(key: str, value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data[key] = value
    return mutate


def _device(key: str, value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data["discovery"]["devices"][0][key] = value
    return mutate


def _setting(key: str, value: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data["settings"][key] = value
    return mutate


def _impossible_rate(data: dict) -> None:
    """Real FLOPs, block times shrunk until the rate is 1e26 TFLOP/s (the issue's file)."""
    m = data["measurements"][0]
    m["block_times_s"] = [t * 1e-25 for t in m["block_times_s"]]


# (id, mutation, command, what the one line must name)
JSON_CASES = [
    ("zero-block-times", _times(0.0), "report", "block_times_s"),
    ("times-1e308", _times(1e308), "report", "block_times_s"),
    ("flops-400-digits", _m("flops", 10**400), "report", "flops"),
    ("flops-negative", _m("flops", -2.0e9), "report", "flops"),
    ("block-time-400-digits", _times(10**400), "show", "block_times_s"),
    ("block-time-nan", _times(math.nan), "show", "block_times_s"),
    ("block-time-negative-infinity", _times(-math.inf), "show", "block_times_s"),
    ("rate-of-1e26-tflops", _impossible_rate, "show", "block_times_s"),
    ("flops-beyond-any-chip", _m("flops", 1e30), "show", "flops"),
    ("bytes-beyond-any-memory", _m("bytes_moved", 1e30), "show", "bytes_moved"),
    ("flop-rate-beyond-any-chip", _m("flops", 1e21), "show", "beyond any hardware"),
    ("byte-rate-beyond-any-memory", _m("bytes_moved", 1e20), "show", "beyond any hardware"),
    ("flops-is-text", _m("flops", "2e9"), "show", "flops"),
    ("number-per-block-400-digits", _m("number_per_block", 10**400), "show", "number_per_block"),
    ("number-per-block-is-true", _m("number_per_block", True), "show", "number_per_block"),
    ("status-unknown", _m("status", "owned"), "show", "status"),
    ("source-unknown", _m("source", "trust me"), "show", "source"),
    ("attempts-zero", _m("attempts", 0), "show", "attempts"),
    ("peak-memory-negative", _m("peak_memory_bytes", -5), "show", "peak_memory_bytes"),
    ("energy-negative", _m("energy_j", -1.0), "show", "energy_j"),
    ("transfer-1e308", _m("transfer_h2d_s", 1e308), "show", "transfer_h2d_s"),
    ("first-call-negative", _m("first_call_s", -1.0), "show", "first_call_s"),
    ("warmup-calls-negative", _m("warmup_calls", -1), "show", "warmup_calls"),
    ("items-per-call-zero", _m("items_per_call", 0), "show", "items_per_call"),
    ("compile-time-infinite", _m("compile_s", math.inf), "show", "compile_s"),
    ("contention-nan", _m("contention", {"load1": math.nan}), "show", "contention"),
    ("device-block-times-negative", _m("device_block_times_s", [-1.0]), "show",
     "device_block_times_s"),
    ("metadata-nested-deep", _m("metadata", json.loads("[" * 500 + "]" * 500)), "show",
     "metadata"),
    ("device-memory-400-digits", _device("memory_bytes", 10**400), "show", "memory_bytes"),
    ("device-cores-negative", _device("cores", -3), "show", "cores"),
    ("schema-version-is-text", _top("schema_version", "1"), "show", "not a whole number"),
    ("schema-version-is-true", _top("schema_version", True), "show", "not a whole number"),
    ("schema-version-zero", _top("schema_version", 0), "show", "schema version 0"),
    ("run-id-absolute-path", _top("run_id", "/tmp/ESCAPED-absolute"), "show", "run_id"),
    ("run-id-dot-dot", _top("run_id", ".."), "show", "run_id"),
    ("run-id-escape-sequence", _top("run_id", "20260101T000000Z-aaaaaa\x1b[8m"), "show",
     "run_id"),
    ("advice-not-json", _setting("advice", "{not json"), "report", "advice"),
    ("advice-nested-deep", _setting("advice", "[" * DEEP + "]" * DEEP), "report", "advice"),
    ("advice-wrong-shape", _setting("advice", json.dumps({"ranked": [{"latency_s": 3}]})),
     "report", "advice"),
    ("fleet-nodes-nested-deep", _setting("fleet_nodes", "[" * DEEP + "]" * DEEP), "show",
     "fleet_nodes"),
    ("fleet-nodes-bad-count", _setting("fleet_nodes", json.dumps(
        [{"node_type": "a", "accelerators": [["h100", "many"]]}])), "show", "fleet_nodes"),
]


@pytest.mark.parametrize("case", JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_a_crafted_run_file_is_refused_in_one_line(case, stored_run, cli, tmp_path) -> None:
    name, mutate, command, says = case
    path = _crafted_json(stored_run, tmp_path, mutate)
    args = [command, path] + (["-o", str(tmp_path / "r.html")] if command == "report" else [])
    proc = cli(*args)
    assert_refused(proc, 2, says)
    assert path in proc.stderr  # the file is named
    assert "Warning" not in proc.stderr and not (tmp_path / "r.html").exists()


def test_compare_refuses_a_crafted_run_and_its_noise_runs(stored_run, cli, tmp_path) -> None:
    bad = _crafted_json(stored_run, tmp_path, _times(0.0))
    assert_refused(cli("compare", str(stored_run.json), bad), 2, "block_times_s")
    assert_refused(cli("compare", str(stored_run.json), str(stored_run.json), "--noise", bad),
                   2, "block_times_s")


def test_the_stored_real_run_still_loads_and_shows(stored_run, cli) -> None:
    """The limits refuse the impossible, not the real: a real measured run passes them."""
    run = load_run(stored_run.json)
    assert all(m.ok for m in run.measurements)
    assert cli("show", str(stored_run.json)).returncode == 0


def test_report_skips_a_deeply_nested_file_in_the_data_directory(stored_run, cli,
                                                                  tmp_path) -> None:
    """The newest file of the runs folder nested 100,000 deep: plain ``report`` names it,
    skips it and reports the newest readable run (looking for advice read it unguarded)."""
    runs = Path(os.environ["CHIPFIT_HOME"]) / "runs"
    runs.mkdir(parents=True)
    good = runs / f"{stored_run.run_id}.json"
    good.write_bytes(stored_run.json.read_bytes())
    os.utime(good, (1e9, 1e9))
    (runs / "20990101T000000Z-ffffff.json").write_text("[" * DEEP + "]" * DEEP)
    proc = cli("report", "-o", str(tmp_path / "r.html"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "skipped" in proc.stderr and "nested too deeply" in proc.stderr


# ---- run ids are data, never paths -------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../ESCAPED-traversal", "/tmp/ESCAPED-absolute", "..", "",
                                 "20260101T000000Z-aaaaaa/../../x", "20260101T000000Z-aaaaa\n",
                                 "20260101T000000Z-AAAAAA", "x" * 300, "20260101T000000Z-aaaaaa\0"])
def test_run_ids_outside_the_pattern_never_name_a_file(bad: str) -> None:
    with pytest.raises(UsageError, match="run id"):
        check_run_id(bad, "test")
    with pytest.raises(UsageError, match="run id"):
        run_file(bad)


def test_generated_run_ids_pass_and_name_a_file_in_the_runs_folder() -> None:
    from chipfit.paths import runs_dir

    run_id = new_run_id()
    assert check_run_id(run_id, "test") == run_id
    assert run_file(run_id).parent == runs_dir() and run_file(run_id).name == f"{run_id}.json"


def _db_with_run_id(stored: StoredRun, tmp: Path, new_id: Any) -> Path:
    """A copy of the real database whose run is unfinished and named ``new_id``."""
    db = copy_db(stored, tmp / "crafted.sqlite3")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = OFF")
    for table in ("runs", "planned_jobs", "measurements"):
        conn.execute(f"UPDATE {table} SET run_id = ?", (new_id,))
    conn.execute("UPDATE runs SET finished_at = '', driver = ''")
    conn.execute("DELETE FROM measurements WHERE seq = 1")  # one job left to measure
    conn.commit()
    conn.close()
    return db


@pytest.mark.parametrize("ref", ["given", "latest"])
@pytest.mark.parametrize("new_id", ["../ESCAPED-traversal", "ABSOLUTE"])
def test_resume_of_a_crafted_run_id_writes_nothing_anywhere(new_id, ref, stored_run, cli,
                                                             tmp_path) -> None:
    """The issue's case: ``--resume`` of a database whose run id is a path wrote the run's
    JSON outside the data directory. Now the id is refused before anything runs."""
    home = tmp_path / "home" / "data"
    home.mkdir(parents=True)
    target = str(tmp_path / "ESCAPED-absolute") if new_id == "ABSOLUTE" else new_id
    db = _db_with_run_id(stored_run, tmp_path, target)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = cli("bench", "--db", str(db), "--resume", target if ref == "given" else "latest",
               env={"CHIPFIT_HOME": str(home)})
    assert_refused(proc, 2, "run id")
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.startswith(
        "crafted.sqlite3")) == [n for n in before if not n.startswith("crafted.sqlite3")]
    assert not list(tmp_path.rglob("ESCAPED*"))


def test_show_and_runs_of_a_blob_run_id(stored_run, cli, tmp_path) -> None:
    db = _db_with_run_id(stored_run, tmp_path, b"\x00\xff")
    assert_refused(cli("show", "latest", "--db", str(db)), 2, "run id")
    listed = cli("runs", "--db", str(db))  # the listing goes on, naming the damaged row
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    warned = paragraphs(listed.stderr)  # one warning, wrapped at the width
    assert len(warned) == 1 and "run id" in warned[0] and warned[0].count("warning:") == 1
    assert listed.stderr.startswith("warning:")


# ---- damaged and hostile database rows ---------------------------------------------------------
def _db(stored: StoredRun, tmp: Path, *statements: str) -> str:
    db = copy_db(stored, tmp / "h.sqlite3")
    for statement in statements:
        sql(db, statement)
    return str(db)


_NESTED = "'" + "[" * DEEP + "]" * DEEP + "'"
_UNFINISHED = "UPDATE runs SET finished_at = '', driver = ''"

DB_CASES = [
    ("measurement-row-nested-deep", [f"UPDATE measurements SET data_json = {_NESTED} "
                                     "WHERE seq = 0"], ["show", "latest"], "measurement 0"),
    ("settings-nested-deep", [f"UPDATE runs SET settings_json = {_NESTED}"], ["show", "latest"],
     "settings_json"),
    ("guard-limits-nested-deep", [f"UPDATE runs SET guard_limits_json = {_NESTED}"],
     ["show", "latest"], "guard_limits_json"),
    ("discovery-nested-deep", [f"UPDATE runs SET discovery_json = {_NESTED}"],
     ["show", "latest"], "discovery_json"),
    ("measurement-impossible-rate", ["UPDATE measurements SET data_json = json_set(data_json, "
                                     "'$.flops', 1e30) WHERE seq = 0"], ["show", "latest"],
     "flops"),
    ("measurement-zero-times", ["UPDATE measurements SET data_json = json_set(data_json, "
                                "'$.block_times_s', json('[0, 0, 0]')) WHERE seq = 1"],
     ["report", "latest"], "block_times_s"),
    ("interrupted-is-text", ["UPDATE runs SET interrupted = 'yes'"], ["show", "latest"],
     "interrupted"),
    ("command-is-a-blob", ["UPDATE runs SET command = X'00FF'"], ["show", "latest"], "command"),
    ("planned-job-nested-deep", [_UNFINISHED, "DELETE FROM measurements WHERE seq = 1",
                                 f"UPDATE planned_jobs SET job_json = {_NESTED}"],
     ["bench", "--resume", "latest"], "planned job"),
    ("planned-job-endless-budget", [_UNFINISHED, "DELETE FROM measurements WHERE seq = 1",
                                    "UPDATE planned_jobs SET job_json = json_set(job_json, "
                                    "'$.timing.budget_s', 1e300)"],
     ["bench", "--resume", "latest"], "budget_s"),
    ("planned-job-unknown-workload", [_UNFINISHED, "DELETE FROM measurements WHERE seq = 1",
                                      "UPDATE planned_jobs SET job_json = json_set(job_json, "
                                      "'$.workload', 'rm -rf')"],
     ["bench", "--resume", "latest"], "workload"),
    ("resume-with-a-damaged-row", [_UNFINISHED, "DELETE FROM measurements WHERE seq = 1",
                                   "UPDATE measurements SET data_json = '{' WHERE seq = 0"],
     ["bench", "--resume", "latest"], "measurement 0"),
]


@pytest.mark.parametrize("case", DB_CASES, ids=[c[0] for c in DB_CASES])
def test_a_crafted_database_row_is_refused_in_one_line(case, stored_run, cli, tmp_path) -> None:
    name, statements, args, says = case
    db = _db(stored_run, tmp_path, *statements)
    extra = ["-o", str(tmp_path / "r.html")] if args[0] == "report" else []
    proc = cli(*args, "--db", db, *extra)
    assert_refused(proc, 2, says)
    assert not (tmp_path / "r.html").exists()


# ---- property tests: run JSON ------------------------------------------------------------------
PROPS = settings(max_examples=80, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])


def _valid_run() -> Run:
    cpu = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "Test CPU", memory_bytes=2**34, cores=2,
                     threads=4, isa=("avx2",), versions=(("torch", "2.9.0"),))
    ms = tuple(Measurement("matmul", str(n), "torch:cpu", block_times_s=(1e-3, 1.1e-3, 0.9e-3),
                           number_per_block=8, first_call_s=2e-3, stop_reason="ci_target",
                           flops=2.0 * n**3, bytes_moved=12.0 * n * n,
                           contended=False, contention=(("load1", 0.5),), attempts=1)
               for n in (64, 128))
    return Run(new_run_id(), "bench", "2026-01-01T00:00:00+00:00", discovery=Discovery((cpu,)),
               measurements=ms, settings=(("workloads", "matmul"),))


_HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.just(10**400),
    st.just(-(10**400)), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 0.0, -0.0, 1e-300, 1e308, "../../x", "/etc/passwd", "..", "\x1b[8m",
                     "a\x00b", "\r\n", "1", "NaN", [], {}, [[[[[]]]]], [1e308, -1], [0.0],
                     [math.nan], {"a": {"b": [1, 2]}}]),
    st.text(max_size=12),
    st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=3)), max_size=4),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=6),
)
_MISSING = object()


def _paths(data: dict) -> list[tuple[Any, ...]]:
    """Every place a mutation may hit: top-level keys, a measurement's, a device's."""
    out: list[tuple[Any, ...]] = [(k,) for k in data]
    out += [("measurements", 0, k) for k in data["measurements"][0]]
    out += [("discovery", "devices", 0, k) for k in data["discovery"]["devices"][0]]
    out += [("settings", "advice"), ("settings", "fleet_nodes"), ("machine", "hostname")]
    return out


def _mutated(data: dict, path: tuple[Any, ...], value: Any) -> dict:
    data = json.loads(json.dumps(data))
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is _MISSING:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return data


def _assert_trustworthy(run: Run, home: Path) -> None:
    """What a run that loads must be: every shown number possible, its file in the runs
    folder of ``home`` (and written there, nowhere else)."""
    for m in run.measurements:
        if m.ok:
            assert math.isfinite(m.median_s) and m.median_s >= 1e-9
            assert math.isnan(m.gflops) or m.gflops <= 1e9  # 1e18 FLOP/s
            assert math.isnan(m.gbps) or m.gbps <= 1e7
    written = save_run(run, run_file(run.run_id))
    assert written.resolve().parent == (home / "runs").resolve()
    assert load_run(written) == run  # what was accepted reads back identical


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, ChipfitError) and exc.exit_code == 2, repr(exc)
    assert "\n" not in str(exc).strip() and str(exc).strip()


@PROPS
@given(data=st.data(), value=st.one_of(_HOSTILE_VALUES, st.just(_MISSING)))
def test_any_mutated_run_file_loads_or_is_one_line(data, value, tmp_path) -> None:
    base = run_to_dict(_valid_run())
    path = data.draw(st.sampled_from(_paths(base)), label="path")
    hostile = _mutated(base, path, value)
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        home = Path(tmp) / "home"
        file = Path(tmp) / "run.json"
        file.write_text(json.dumps(hostile))  # NaN and Infinity as Python writes them
        os.environ["CHIPFIT_HOME"] = str(home)
        try:
            run = load_run(file)
        except Exception as exc:  # noqa: BLE001 - the property: only chipfit's one line
            _one_line(exc)
            return
        _assert_trustworthy(run, home)
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["home", "run.json"]
    assert list(tmp_path.iterdir()) == []  # nothing beside the example's own folder


@settings(PROPS, max_examples=30)
@given(value=_HOSTILE_VALUES)
def test_any_value_in_any_measurement_field_is_checked(value) -> None:
    base = run_to_dict(_valid_run())
    for key in base["measurements"][0]:
        try:
            run = run_from_dict(_mutated(base, ("measurements", 0, key), value), "test")
        except Exception as exc:  # noqa: BLE001
            _one_line(exc)
            assert "test" in str(exc)
            continue
        for m in run.measurements:
            assert not m.ok or (math.isfinite(m.median_s) and m.median_s > 0)


# ---- property tests: SQLite rows ---------------------------------------------------------------
_COLUMNS = {
    "runs": ["run_id", "command", "started_at", "finished_at", "interrupted", "chipfit_version",
             "fingerprint", "hostname", "driver", "machine_json", "settings_json",
             "discovery_json", "guard_limits_json"],
    "measurements": ["seq", "job_key", "workload", "size", "device", "status", "data_json",
                     "contended", "stack"],
    "planned_jobs": ["seq", "job_key", "job_json"],
}
_SQL_VALUES = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=20),
    st.binary(max_size=8),
    st.sampled_from(["../ESCAPED", "/tmp/ESCAPED", "[" * 5000, "{}", "[]", "null", "1e999",
                     '{"block_times_s": [0]}', '["a", "b", "c", "d", "e"]', "yes", "-1"]),
)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one unfinished run: two planned jobs, one measured."""
    from chipfit.spec import DeviceRef, Job, TimingConfig

    db = tmp_path_factory.mktemp("template") / "h.sqlite3"
    run = _valid_run()
    jobs = [Job("matmul", m.size, DeviceRef.parse("torch:cpu"), timing=TimingConfig.quick())
            for m in run.measurements]
    with open_store(db) as store:
        store.begin_run(Run(run.run_id, run.command, run.started_at, discovery=run.discovery,
                            settings=run.settings), jobs)
        store.add_measurement(run.run_id, run.measurements[0], jobs[0].key)
    return db


def _json_mutations(value: Any) -> st.SearchStrategy[str]:
    base = json.loads(json.dumps(_valid_run().measurements[0].to_dict()))
    return st.sampled_from(list(base)).map(
        lambda k: json.dumps(_mutated(base, (k,), value)))


@PROPS
@given(data=st.data())
def test_any_mutated_database_row_loads_or_is_one_line(data, template_db, tmp_path) -> None:
    from chipfit.pipelines.bench import resume_run

    table = data.draw(st.sampled_from(sorted(_COLUMNS)), label="table")
    column = data.draw(st.sampled_from(_COLUMNS[table]), label="column")
    if column == "data_json" and data.draw(st.booleans(), label="inner"):
        value: Any = data.draw(_HOSTILE_VALUES.flatmap(_json_mutations), label="json")
    else:
        value = data.draw(_SQL_VALUES, label="value")
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        db, home = Path(tmp) / "h.sqlite3", Path(tmp) / "home"
        shutil.copy(template_db, db)
        conn = sqlite3.connect(db)
        try:
            conn.execute(f"UPDATE {table} SET {column} = ?", (value,))
            conn.commit()
        except sqlite3.IntegrityError:  # NULL in a NOT NULL column: SQLite itself refuses
            return
        finally:
            conn.close()
        os.environ["CHIPFIT_HOME"] = str(home)
        try:
            with open_store(db) as store:
                store.list_runs()  # a damaged row is skipped and named, never a crash
                run_id = store.resolve("latest")
                run = store.load_run(run_id)
                _assert_trustworthy(run, home)
                resumed, todo = resume_run(store, run_id)
                assert check_run_id(resumed.run_id, "x") and len(todo) <= 2
        except Exception as exc:  # noqa: BLE001 - the property: only chipfit's one line
            _one_line(exc)
        assert sorted(p.name for p in Path(tmp).iterdir() if not p.name.startswith(
            "h.sqlite3")) in ([], ["home"])
    assert list(tmp_path.iterdir()) == []
