"""The SQLite store: one row per run, per planned job and per measurement.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every measurement is
its own committed transaction, so a ``kill -9`` (or a power cut) loses nothing that was
already handed to :meth:`Store.add_measurement`. Several processes may write at once: WAL lets
readers go on while one writer commits, and writers queue behind ``BEGIN IMMEDIATE`` with a
busy timeout instead of failing.

Raw samples are the truth: a measurement is stored whole (raw block times included) as JSON
text beside the columns used to find it; statistics are derived again when it is read.

History of ``SCHEMA_VERSION`` (each step is a migration in ``_MIGRATIONS``; the applied ones
are rows of the ``schema_migrations`` table, and a database from a newer chipfit is refused):

1. chipfit 0.1: runs, planned_jobs (what ``--resume`` finishes), measurements.
2. ``runs.guard_limits_json``: the memory guard's limits as data (schema 1 kept them in the
   settings as ``guard_limit|...`` keys; those rows are read into the same field).
3. ``measurements.contended``: 1/0 when the machine was/was not found shared while the point
   ran, NULL when unknown (every row from versions 1-2); the evidence is in ``data_json``.
4. measurements.stack: the software stack (``eager``, ``compile``, ``onnxruntime``, ``int8``
   ...; JAX ``jit``); older rows read as their backend's default stack. A job's key carries
   the stack only when it is not the default, so older keys still match.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from chipfit.errors import ChipfitError, InvalidInputError
from chipfit.paths import check_schema, data_dir, utc_now
from chipfit.results import (
    Discovery,
    GuardLimit,
    Measurement,
    Run,
    checked_from_plain,
    from_plain,
    split_legacy_limits,
)
from chipfit.spec import DeviceRef, Job, TimingConfig

__all__ = ["SCHEMA_VERSION", "RunSummary", "Store", "check_db_path", "default_db_path", "open_store"]

SCHEMA_VERSION = 4
#: Marks the file as chipfit's in its header ("chip"), so a foreign database is not misread.
APPLICATION_ID = 0x63686970
_BUSY_TIMEOUT_S = 60.0
#: Run settings that say where a run was measured, not what: ignored when resuming.
_EXECUTOR_SETTINGS = frozenset({"executor", "address", "job_timeout_s", "labels", "fleet",
                                "node_types", "fleet_nodes"})

_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "runs, planned jobs and measurements with raw block times", (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL DEFAULT '',
            interrupted INTEGER NOT NULL DEFAULT 0,
            chipfit_version TEXT NOT NULL DEFAULT '',
            fingerprint TEXT NOT NULL DEFAULT '',
            hostname TEXT NOT NULL DEFAULT '',
            driver TEXT NOT NULL DEFAULT '',
            machine_json TEXT NOT NULL DEFAULT '{}',
            settings_json TEXT NOT NULL DEFAULT '{}',
            discovery_json TEXT NOT NULL DEFAULT '{}')""",
        """CREATE TABLE planned_jobs (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            job_key TEXT NOT NULL,
            job_json TEXT NOT NULL,
            PRIMARY KEY (run_id, seq))""",
        """CREATE TABLE measurements (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            job_key TEXT NOT NULL,
            workload TEXT NOT NULL,
            size TEXT NOT NULL,
            device TEXT NOT NULL,
            dtype TEXT NOT NULL,
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            source TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            data_json TEXT NOT NULL,
            PRIMARY KEY (run_id, seq))""",
        "CREATE INDEX measurements_by_key ON measurements (run_id, job_key)",
        "CREATE INDEX runs_by_start ON runs (started_at)",
    )),
    (2, "the memory guard's limits as a column, not settings keys", (
        "ALTER TABLE runs ADD COLUMN guard_limits_json TEXT NOT NULL DEFAULT '[]'",
    )),
    (3, "measurements.contended: was the machine shared (NULL: unknown)", (
        "ALTER TABLE measurements ADD COLUMN contended INTEGER",
    )),
    (4, "the software stack of each measurement", (
        "ALTER TABLE measurements ADD COLUMN stack TEXT NOT NULL DEFAULT ''",
        "UPDATE measurements SET stack = CASE WHEN device LIKE 'jax:%' THEN 'jit' "
        "ELSE 'eager' END",
    )),
)

T = TypeVar("T")
Key = tuple[str, ...]


def default_db_path() -> Path:
    """``chipfit.sqlite3`` under the user's data directory (``$CHIPFIT_HOME`` if set)."""
    return data_dir() / "chipfit.sqlite3"


def check_db_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it can be a database file: an existing regular file (links are followed:
    SQLite writes through them), or a new file under a writable directory. Directories,
    devices and FIFOs are refused before SQLite touches them."""
    import stat

    from chipfit.paths import check_output_dir

    path = Path(path).expanduser()
    if not os.path.lexists(path):
        check_output_dir(path.parent, f"--db {path}: directory")
        return path
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InvalidInputError(f"--db {path}: {exc.strerror or exc} (a broken link?)") from None
    if stat.S_ISDIR(mode):
        raise InvalidInputError(f"{path} is a directory; --db wants a database file")
    if not stat.S_ISREG(mode):
        raise InvalidInputError(f"{path} is not a regular file (a device or a FIFO?); --db "
                                "wants a database file")
    return path


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open (and with ``create``, make or migrate) the store at ``path`` or the default."""
    return Store(path if path is not None else default_db_path(), create=create)


@dataclass(frozen=True)
class RunSummary:
    """One line of ``chipfit runs``: who measured what, when, and how far it got."""

    run_id: str
    command: str
    started_at: str
    finished_at: str
    interrupted: bool
    chipfit_version: str
    fingerprint: str
    hostname: str
    devices: tuple[str, ...]
    versions: tuple[tuple[str, str], ...]
    planned: int
    measured: int
    ok: int
    workloads: tuple[str, ...] = ()  # what the run measured, from its settings

    @property
    def state(self) -> str:
        """``complete``, ``interrupted`` (Ctrl-C) or ``unfinished`` (killed, or still running)."""
        if self.interrupted:
            return "interrupted"
        return "complete" if self.finished_at else "unfinished"


def key_text(key: Sequence[str]) -> str:
    """The stored form of a job key (``Job.key``, or a measurement's own key)."""
    return json.dumps(list(key))


def measurement_key(m: Measurement) -> Key:
    """The :attr:`Job.key` of the job that produced ``m`` (:attr:`Measurement.key`)."""
    return m.key


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn sqlite's errors into chipfit's, naming the file and what to do."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None

    return wrapper


class Store:
    """A chipfit history database. Use :func:`open_store`; close it (or use ``with``)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        #: Damaged rows skipped while reading (one line each), for the caller to show.
        self.skipped: list[str] = []
        if not self.path.exists():
            if not create:
                raise InvalidInputError(f"no chipfit database at {self.path}: run `chipfit "
                                        "bench` first, or point --db at an existing one")
            check_db_path(self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InvalidInputError(f"cannot create {self.path.parent}: "
                                        f"{exc.strerror or exc}") from None
        else:
            check_db_path(self.path)
        self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _translate(self, exc: sqlite3.DatabaseError) -> ChipfitError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return ChipfitError(f"{self.path} stayed locked by another process for "
                                f"{_BUSY_TIMEOUT_S:.0f} s; try again when it has finished")
        if "readonly" in text or "unable to open" in text:
            return InvalidInputError(f"cannot write to {self.path} ({text}); check its "
                                     "permissions, or pass --db with another file")
        return InvalidInputError(f"{self.path} is not a chipfit database or is damaged ({text}); "
                                 "move it aside or pass --db with another file")

    @_guarded
    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA foreign_keys = ON")
        # Ownership first: switching to WAL rewrites the file's header, which must never
        # happen to someone else's database.
        found = self._check(conn)
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # reads the header
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                # The switch takes the file exclusively and SQLite does not wait for it (no
                # busy handler): a second process opening the same new file at the same
                # moment gets "database is locked" at once. Wait as for any other lock.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        conn.execute("PRAGMA synchronous = FULL")
        if found == SCHEMA_VERSION:
            return  # up to date: no write lock needed just to read
        with self._write():
            current = self._check(conn)  # again: another process may have migrated meanwhile
            if current == 0:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                             "PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            for version, description, statements in _MIGRATIONS:
                if version > current:
                    for sql in statements:
                        conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                 (version, description, utc_now()))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check(self, conn: sqlite3.Connection) -> int:
        """The schema version found (0 for a new file); refuse foreign and newer databases.

        The reads share one snapshot: another process creating the same new file may commit
        between two separate reads (no application id yet, then its tables), which would
        read as somebody else's database."""
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")
        try:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            if app != APPLICATION_ID:
                if app or conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                    raise InvalidInputError(f"{self.path} is an SQLite database, but not "
                                            "chipfit's; pass --db with another file")
                return 0
            current = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        finally:
            if own:
                conn.execute("COMMIT")
        current = current or 0
        check_schema(current, SCHEMA_VERSION, str(self.path), "upgrade chipfit to use it")
        return current

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``IMMEDIATE`` so concurrent writers queue, never deadlock."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @property
    @_guarded
    def schema_version(self) -> int:
        return self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    # ---- writing -----------------------------------------------------------------------
    @_guarded
    def begin_run(self, run: Run, jobs: Sequence[Job] = ()) -> None:
        """Record a new run, the jobs it plans to run, and any measurements it already has."""
        with self._write() as conn:
            conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", _run_row(run))
            conn.executemany("INSERT INTO planned_jobs VALUES (?,?,?,?)",
                             [(run.run_id, i, key_text(j.key), _job_json(j))
                              for i, j in enumerate(jobs)])
            for m in run.measurements:
                self._insert(conn, run.run_id, m)

    @_guarded
    def add_measurement(self, run_id: str, m: Measurement,
                        key: Sequence[str] | None = None) -> None:
        """Append one measurement to ``run_id``, committed before this returns; ``key`` is the
        job's (:attr:`Job.key`) when the caller knows it."""
        with self._write() as conn:
            self._insert(conn, run_id, m, key)

    @_guarded
    def replace_measurement(self, run_id: str, m: Measurement,
                            key: Sequence[str] | None = None) -> None:
        """Put ``m`` in the place of the stored measurement of the same job (a re-measured
        point; ``key`` as for :meth:`add_measurement`), in one transaction: whenever the
        process dies, the job has exactly one row (appending and rewriting later would leave
        two after a kill in between)."""
        job_key = key or measurement_key(m)
        with self._write() as conn:
            seq = conn.execute("SELECT MAX(seq) FROM measurements WHERE run_id = ? AND "
                               "job_key = ?", (run_id, key_text(job_key))).fetchone()[0]
            conn.execute("DELETE FROM measurements WHERE run_id = ? AND job_key = ?",
                         (run_id, key_text(job_key)))
            self._insert(conn, run_id, m, job_key, seq)

    @staticmethod
    def _insert(conn: sqlite3.Connection, run_id: str, m: Measurement,
                key: Sequence[str] | None = None, seq: int | None = None) -> None:
        if seq is None:
            seq = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM measurements WHERE "
                               "run_id = ?", (run_id,)).fetchone()[0]
        conn.execute("INSERT INTO measurements (run_id, seq, job_key, workload, size, device, "
                     "dtype, mode, status, source, recorded_at, data_json, contended, stack) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     (run_id, seq, key_text(key or measurement_key(m)), m.workload, m.size,
                      m.device,
                      m.dtype, m.mode, m.status, m.source, utc_now(), json.dumps(m.to_dict()),
                      None if m.contended is None else int(m.contended), m.stack))

    @_guarded
    def finish_run(self, run: Run) -> None:
        """Record how ``run`` ended (its ``finished_at`` and ``interrupted`` flag)."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET finished_at = ?, interrupted = ? WHERE run_id = ?",
                         (run.finished_at, int(run.interrupted), run.run_id))

    @_guarded
    def claim_run(self, run_id: str) -> None:
        """Mark ``run_id`` as being continued by this process (``--resume``)."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET driver = ?, finished_at = '', interrupted = 0 "
                         "WHERE run_id = ?", (_driver(), run_id))

    @_guarded
    def save_run(self, run: Run) -> None:
        """Store a whole run (for example one read from JSON), replacing one with its id."""
        with self._write() as conn:
            # Keep the run's plan: replacing the row must not forget what --resume needs.
            plan = conn.execute("SELECT * FROM planned_jobs WHERE run_id = ?",
                                (run.run_id,)).fetchall()
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            conn.execute("DELETE FROM planned_jobs WHERE run_id = ?", (run.run_id,))
            conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", _run_row(run))
            conn.executemany("INSERT INTO planned_jobs VALUES (?,?,?,?)", plan)
            for m in run.measurements:
                self._insert(conn, run.run_id, m)

    # ---- reading -----------------------------------------------------------------------
    @_guarded
    def resolve(self, ref: str) -> str:
        """The run id that ``ref`` names: an id, a unique prefix, ``latest`` or ``latest~N``."""
        ref = ref.strip()
        if ref == "latest" or ref.startswith("latest~"):
            return self._nth_latest(ref)
        rows = self._conn.execute("SELECT run_id FROM runs WHERE run_id = ? OR substr(run_id, 1, "
                                  "?) = ? ORDER BY run_id", (ref, len(ref), ref)).fetchall()
        ids = [r[0] for r in rows]
        if ref in ids:
            return ref
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise InvalidInputError(f"no run {ref!r} in {self.path}; `chipfit runs` lists them")
        raise InvalidInputError(f"{ref!r} matches {len(ids)} runs ({', '.join(ids[:3])} ...); "
                                "give more of the id")

    def _nth_latest(self, ref: str) -> str:
        back = ref.partition("~")[2] or "0"
        if not (back.isascii() and back.isdigit() and len(back) <= 9):  # SQLite's int64
            raise InvalidInputError(f"malformed run {ref!r}: use latest, latest~1, latest~2 ...")
        row = self._conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC "
                                 "LIMIT 1 OFFSET ?", (int(back),)).fetchone()
        if row is None:
            raise InvalidInputError(f"{self.path} holds no run {ref!r}; `chipfit runs` lists them")
        return row[0]

    @_guarded
    def load_run(self, ref: str) -> Run:
        """The run ``ref`` names (see :meth:`resolve`), with every measurement, in order."""
        run_id = self.resolve(ref)
        row = self._conn.execute("SELECT run_id, command, started_at, finished_at, interrupted, "
                                 "chipfit_version, machine_json, settings_json, discovery_json, "
                                 "guard_limits_json FROM runs WHERE run_id = ?",
                                 (run_id,)).fetchone()
        data = self._conn.execute("SELECT seq, data_json FROM measurements WHERE run_id = ? "
                                  "ORDER BY seq", (run_id,)).fetchall()
        where = f"run {run_id} in {self.path}"
        settings, legacy = split_legacy_limits(_pairs(row[7], f"{where} (settings_json)"))
        return Run(run_id=row[0], command=row[1], started_at=row[2], finished_at=row[3],
                   interrupted=bool(row[4]), chipfit_version=row[5],
                   machine=_pairs(row[6], f"{where} (machine_json)"),
                   settings=settings,
                   guard_limits=legacy + _guard_limits(row[9], f"{where} (guard_limits_json)"),
                   discovery=Discovery.checked(_json(row[8], f"{where} (discovery_json)"), where),
                   measurements=self._measurements(data, where))

    def _measurements(self, rows: Sequence[Any], where: str) -> tuple[Measurement, ...]:
        """The stored measurements; a damaged row is skipped and named in :attr:`skipped`."""
        found = []
        for seq, text in rows:
            place = f"measurement {seq} of {where}"
            try:
                found.append(Measurement.checked(_json(text, place), place))
            except InvalidInputError as exc:
                self.skipped.append(f"skipped {exc}")
        return tuple(found)

    @_guarded
    def list_runs(self, limit: int | None = None) -> list[RunSummary]:
        """Runs, newest first."""
        rows = self._conn.execute(
            "SELECT r.run_id, command, started_at, finished_at, interrupted, chipfit_version, "
            "fingerprint, hostname, settings_json, discovery_json, "
            "(SELECT COUNT(*) FROM planned_jobs p WHERE p.run_id = r.run_id), "
            "(SELECT COUNT(*) FROM measurements m WHERE m.run_id = r.run_id), "
            "(SELECT COUNT(*) FROM measurements m WHERE m.run_id = r.run_id AND status = 'ok') "
            "FROM runs r ORDER BY started_at DESC, r.rowid DESC LIMIT ?",
            (-1 if limit is None else limit,)).fetchall()
        found = []
        for r in rows:
            try:
                found.append(_summary(r, f"run {r[0]} in {self.path}"))
            except InvalidInputError as exc:  # one damaged row must not hide the history
                self.skipped.append(f"skipped {exc}")
        return found

    @_guarded
    def planned_jobs(self, run_id: str) -> list[Job]:
        rows = self._conn.execute("SELECT job_json FROM planned_jobs WHERE run_id = ? ORDER BY seq",
                                  (run_id,)).fetchall()
        return [_job_from_json(r[0]) for r in rows]

    @_guarded
    def done_keys(self, run_id: str) -> set[Key]:
        """Keys of the jobs of ``run_id`` that already have a stored measurement (a job whose
        node was lost has none yet: ``--resume`` runs it again)."""
        rows = self._conn.execute("SELECT DISTINCT job_key FROM measurements WHERE run_id = ? "
                                  "AND status != 'lost'", (run_id,)).fetchall()
        keys = []
        for (text,) in rows:  # a damaged key is measured again rather than trusted
            with contextlib.suppress(InvalidInputError):
                key = _json(text, "a job key")
                # 5 parts; + the stack when not the backend's default; + node type and id
                # for fleet jobs (spec.Job.key)
                if isinstance(key, list) and 5 <= len(key) <= 8 and all(
                        isinstance(part, str) for part in key):
                    keys.append(tuple(key))
        return set(keys)  # type: ignore[arg-type]

    @_guarded
    def find_resumable(self, command: str, settings: Mapping[str, str],
                       fingerprint: str) -> str | None:
        """The newest unfinished run of ``command`` with these settings on this machine.

        Where it ran (the executor's own settings) does not count: a run started inline may
        be finished in subprocesses.
        """
        wanted = _plan_settings(settings)
        rows = self._conn.execute(
            "SELECT run_id, settings_json FROM runs WHERE (finished_at = '' OR interrupted = 1) "
            "AND command = ? AND fingerprint = ? ORDER BY started_at DESC, rowid DESC",
            (command, fingerprint)).fetchall()
        return next((r[0] for r in rows if _plan_settings(_settings_or_none(r[1])) == wanted), None)

    @_guarded
    def live_driver(self, run_id: str) -> str | None:
        """``host:pid`` of another live process on this host still writing ``run_id``."""
        row = self._conn.execute("SELECT driver, finished_at FROM runs WHERE run_id = ?",
                                 (run_id,)).fetchone()
        if row is None or row[1] or not row[0]:
            return None
        host, _, pid = row[0].rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
            return None
        return row[0] if _pid_alive(int(pid)) else None


# ---- row mapping ----------------------------------------------------------------------------
def _driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _settings_json(settings: Iterable[tuple[str, str]]) -> str:
    return json.dumps(dict(settings), sort_keys=True)


# Settings added after measuring (analysis results, advice): not part of what was planned.
_DERIVED_PREFIXES = ("guard_limit|", "advice")


def _plan_settings(settings: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in settings.items()
            if k not in _EXECUTOR_SETTINGS and not k.startswith(_DERIVED_PREFIXES)}


def _run_row(run: Run) -> tuple[Any, ...]:
    machine = dict(run.machine)
    discovery = {"devices": [asdict(d) for d in run.discovery.devices],
                 "problems": [asdict(p) for p in run.discovery.problems]}
    return (run.run_id, run.command, run.started_at, run.finished_at, int(run.interrupted),
            run.chipfit_version, machine.get("fingerprint", ""), machine.get("hostname", ""),
            _driver(), json.dumps(machine, sort_keys=True), _settings_json(run.settings),
            json.dumps(discovery), json.dumps([asdict(g) for g in run.guard_limits]))


def _job_json(job: Job) -> str:
    data = {"workload": job.workload, "size": job.size, "device": str(job.device),
            "dtype": job.dtype, "mode": job.mode, "timing": asdict(job.timing),
            "stack": job.stack}
    if job.node_type is not None:  # a fleet job; older plans simply lack the keys
        data.update(node_type=job.node_type, node_id=job.node_id)
    return json.dumps(data)


def _job_from_json(text: str) -> Job:
    data = _json(text, "a planned job")
    try:
        return Job(data["workload"], data["size"], DeviceRef.parse(data["device"]),
                   data["dtype"], data["mode"], from_plain(TimingConfig, data["timing"]),
                   data.get("node_type"), data.get("node_id"), stack=data.get("stack", ""))
    except (KeyError, TypeError, AttributeError, InvalidInputError) as exc:
        raise InvalidInputError(f"a planned job in the database is damaged ({exc}); the run "
                                "cannot be resumed: start it again") from None


def _guard_limits(text: Any, where: str) -> tuple[GuardLimit, ...]:
    data = _json(text, where)
    if not isinstance(data, list):
        raise InvalidInputError(f"{where} is damaged: not a list")
    return tuple(checked_from_plain(GuardLimit, g, where) for g in data)


def _settings_or_none(text: str) -> dict[str, str]:
    """Settings of a row, or {} (matching nothing) when the row is damaged."""
    try:
        return dict(_pairs(text, "run"))
    except InvalidInputError:
        return {}


def _json(text: Any, where: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:  # JSONDecodeError and bytes that are not UTF-8
        raise InvalidInputError(f"{where} is damaged: not JSON ({str(exc)[:80]})") from None


def _pairs(text: Any, where: str) -> tuple[tuple[str, str], ...]:
    """A stored ``{"key": "value"}`` object as sorted pairs, checked."""
    data = _json(text, where)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InvalidInputError(f"{where} is damaged: not an object of strings")
    return tuple(sorted(data.items()))


def _summary(row: Sequence[Any], where: str) -> RunSummary:
    settings = dict(_pairs(row[8], f"{where} (settings_json)"))
    discovery = Discovery.checked(_json(row[9], f"{where} (discovery_json)"), where)
    devices = settings.get("devices", "")
    used = {ref.split(":")[0] for ref in devices.split(",")} if devices else None
    versions = {pair for d in discovery.devices for pair in d.versions
                if used is None or d.backend in used}
    return RunSummary(run_id=row[0], command=row[1], started_at=row[2], finished_at=row[3],
                      interrupted=bool(row[4]), chipfit_version=row[5], fingerprint=row[6],
                      hostname=row[7],
                      devices=tuple(devices.split(",")) if devices else
                      tuple(d.ref for d in discovery.devices),
                      versions=tuple(sorted(versions)), planned=row[10], measured=row[11],
                      ok=row[12], workloads=tuple(w for w in str(settings.get("workloads", ""))
                                                  .split(",") if w))
