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
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from chipfit.errors import ChipfitError, InvalidInputError
from chipfit.paths import check_schema, data_dir, utc_now
from chipfit.results import (  # RunSummary: re-exported, the store builds them
    Discovery,
    GuardLimit,
    Measurement,
    Run,
    RunSummary,
    check_run_id,
    check_settings,
    checked_from_plain,
    split_legacy_limits,
)
from chipfit.spec import MODES, DeviceRef, Job, TimingConfig

__all__ = ["SCHEMA_VERSION", "RunSummary", "Store", "check_db_path", "default_db_path",
           "open_store", "process_start"]

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


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True,
               takeover: bool = False) -> Store:
    """Open (and with ``create``, make or migrate) the store at ``path`` or the default;
    ``takeover``: resuming may take a run over from a driver that still looks alive."""
    return Store(path if path is not None else default_db_path(), create=create,
                 takeover=takeover)


_SCHEMA_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                 "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
#: SQLite's own tables (ANALYZE's statistics): harmless, and made by SQLite, not by a user.
_SQLITE_OWN = re.compile(r"sqlite_stat[1-4]")


@functools.lru_cache(maxsize=8)
def _schema_of(migrations: tuple[tuple[int, str, tuple[str, ...]], ...],
               version: int) -> frozenset[tuple[str, str, str, str | None]]:
    """Every schema object (type, name, table, SQL) chipfit creates for ``version``: the
    migrations applied to an empty database, exactly as :meth:`Store._setup` applies them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(_SCHEMA_TABLE)
        for number, _, statements in migrations:
            if number <= version:
                for statement in statements:
                    conn.execute(statement)
        return _objects(conn)
    finally:
        conn.close()


def _objects(conn: sqlite3.Connection) -> frozenset[tuple[str, str, str, str | None]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return frozenset((t, n, tb, " ".join(q.split()) if isinstance(q, str) else q)
                     for t, n, tb, q in rows)


def key_text(key: Sequence[str]) -> str:
    """The stored form of a job key (``Job.key``, or a measurement's own key)."""
    return json.dumps(list(key))


def _what(m: Measurement) -> str:
    return f"{m.workload} {m.size} {m.device}"


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

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 takeover: bool = False) -> None:
        self.path = Path(path).expanduser()
        #: Damaged rows skipped while listing runs (one line each), for the caller to show.
        self.skipped: list[str] = []
        #: Resuming may take a run over from a driver that still looks alive (``--takeover``).
        self.takeover = takeover
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
                conn.execute(_SCHEMA_TABLE)
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
            if current:
                check_schema(current, SCHEMA_VERSION, str(self.path), "upgrade chipfit to use it")
            self._check_objects(_objects(conn), current or 0)
        finally:
            if own:
                conn.execute("COMMIT")
        return current or 0

    def _check_objects(self, found: frozenset[tuple[str, str, str, str | None]],
                       version: int) -> None:
        """Refuse schema objects chipfit did not create: a trigger can delete or rewrite
        every row chipfit writes (a run "kept" with none of its measurements), a view or a
        changed table can do as much; none of them is ever chipfit's. Checked before any
        write, so a refused file is left exactly as it was."""
        expected = _schema_of(_MIGRATIONS, version)
        ours = {name for _, name, _, _ in expected}
        extra = sorted(o for o in found - expected
                       if not (o[0] == "table" and _SQLITE_OWN.fullmatch(o[1])))
        if extra:
            kind, name = extra[0][0], extra[0][1]
            changed = " (changed from chipfit's own)" if name in ours else ""
            raise InvalidInputError(
                f"{self.path} holds {kind} {name!r}{changed}, which chipfit did not create; a "
                "trigger, a view or a changed table could alter or drop what chipfit writes: "
                "remove it, or pass --db with another file")

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
    # Every write is read back inside its own transaction before it commits: what the
    # database kept must be what chipfit wrote (a trigger added behind the store's back, or
    # any other surprise, could drop or rewrite rows). A mismatch rolls the transaction back
    # and says what was lost; "kept" is never said of a run the database did not keep.
    @_guarded
    def begin_run(self, run: Run, jobs: Sequence[Job] = ()) -> None:
        """Record a new run, the jobs it plans to run, and any measurements it already has."""
        run_id = check_run_id(run.run_id, "a new run")
        with self._write() as conn:
            conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", _run_row(run))
            conn.executemany("INSERT INTO planned_jobs VALUES (?,?,?,?)",
                             [(run_id, i, key_text(j.key), _job_json(j))
                              for i, j in enumerate(jobs)])
            for m in run.measurements:
                self._insert(conn, run_id, m)
            self._verify_run(conn, run, len(jobs))

    @_guarded
    def add_measurement(self, run_id: str, m: Measurement,
                        key: Sequence[str] | None = None) -> None:
        """Append one measurement to ``run_id``, committed before this returns; ``key`` is the
        job's (:attr:`Job.key`) when the caller knows it."""
        check_run_id(run_id, "a measurement's run")
        with self._write() as conn:
            before = self._count(conn, run_id)
            self._insert(conn, run_id, m, key)
            self._verify_count(conn, run_id, before + 1, m)

    @_guarded
    def replace_measurement(self, run_id: str, m: Measurement,
                            key: Sequence[str] | None = None) -> None:
        """Put ``m`` in the place of the stored measurement of the same job (a re-measured
        point; ``key`` as for :meth:`add_measurement`), in one transaction: whenever the
        process dies, the job has exactly one row (appending and rewriting later would leave
        two after a kill in between)."""
        check_run_id(run_id, "a measurement's run")
        job_key = key or measurement_key(m)
        with self._write() as conn:
            before = self._count(conn, run_id)
            seq = conn.execute("SELECT MAX(seq) FROM measurements WHERE run_id = ? AND "
                               "job_key = ?", (run_id, key_text(job_key))).fetchone()[0]
            gone = conn.execute("DELETE FROM measurements WHERE run_id = ? AND job_key = ?",
                                (run_id, key_text(job_key))).rowcount
            self._insert(conn, run_id, m, job_key, seq)
            self._verify_count(conn, run_id, before - gone + 1, m)

    def _insert(self, conn: sqlite3.Connection, run_id: str, m: Measurement,
                key: Sequence[str] | None = None, seq: int | None = None) -> None:
        if seq is None:
            seq = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM measurements WHERE "
                               "run_id = ?", (run_id,)).fetchone()[0]
        data = json.dumps(m.to_dict())
        conn.execute("INSERT INTO measurements (run_id, seq, job_key, workload, size, device, "
                     "dtype, mode, status, source, recorded_at, data_json, contended, stack) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     (run_id, seq, key_text(key or measurement_key(m)), m.workload, m.size,
                      m.device,
                      m.dtype, m.mode, m.status, m.source, utc_now(), data,
                      None if m.contended is None else int(m.contended), m.stack))
        kept = conn.execute("SELECT data_json FROM measurements WHERE run_id = ? AND seq = ?",
                            (run_id, seq)).fetchall()
        if kept != [(data,)]:
            raise self._lost(f"measurement {_what(m)} of run {run_id}",
                             f"{len(kept)} row(s) read back, "
                             f"{'none' if not kept else 'other data'} where 1 was written")

    @staticmethod
    def _count(conn: sqlite3.Connection, run_id: str, table: str = "measurements") -> int:
        return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?",  # noqa: S608
                            (run_id,)).fetchone()[0]

    def _verify_count(self, conn: sqlite3.Connection, run_id: str, expected: int,
                      m: Measurement) -> None:
        found = self._count(conn, run_id)
        if found != expected:
            raise self._lost(f"measurement {_what(m)} of run {run_id}",
                             f"run {run_id} holds {found} measurement(s) after the write, "
                             f"not {expected}")

    def _verify_run(self, conn: sqlite3.Connection, run: Run, jobs: int) -> None:
        """The run's row, ``jobs`` planned jobs and its measurements, all read back."""
        row = conn.execute("SELECT run_id, finished_at, interrupted FROM runs WHERE run_id = ?",
                           (run.run_id,)).fetchall()
        if row != [(run.run_id, run.finished_at, int(run.interrupted))]:
            raise self._lost(f"run {run.run_id}", "its row did not read back as written")
        for table, expected in (("planned_jobs", jobs), ("measurements", len(run.measurements))):
            found = self._count(conn, run.run_id, table)
            if found != expected:
                what = "planned jobs" if table == "planned_jobs" else "measurements"
                raise self._lost(f"run {run.run_id}", f"kept {found} of {expected} {what}")

    def _lost(self, what: str, how: str) -> InvalidInputError:
        return InvalidInputError(f"{self.path} did not keep {what} ({how}); something in the "
                                 "database changes what chipfit writes (a trigger?): nothing "
                                 "of this write was kept; pass --db with another file")

    def _update_run(self, sql: str, params: tuple[Any, ...], run_id: str, what: str) -> None:
        """One UPDATE of run ``run_id``'s row, which must exist and change."""
        with self._write() as conn:
            if conn.execute(sql, params).rowcount != 1:
                raise self._lost(f"run {run_id}", f"its row was not there to record {what}")

    @_guarded
    def finish_run(self, run: Run) -> None:
        """Record how ``run`` ended (its ``finished_at`` and ``interrupted`` flag)."""
        self._update_run("UPDATE runs SET finished_at = ?, interrupted = ? WHERE run_id = ?",
                         (run.finished_at, int(run.interrupted), run.run_id), run.run_id,
                         "how it ended")

    @_guarded
    def claim_run(self, run_id: str) -> None:
        """Mark ``run_id`` as being continued by this process (``--resume``)."""
        self._update_run("UPDATE runs SET driver = ?, finished_at = '', interrupted = 0 "
                         "WHERE run_id = ?", (_driver(), run_id), run_id, "who continues it")

    @_guarded
    def save_run(self, run: Run) -> None:
        """Store a whole run (for example one read from JSON), replacing one with its id."""
        check_run_id(run.run_id, "a saved run")
        with self._write() as conn:
            # Keep the run's plan: replacing the row must not forget what --resume needs.
            plan = conn.execute("SELECT * FROM planned_jobs WHERE run_id = ?",
                                (run.run_id,)).fetchall()
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            conn.execute("DELETE FROM planned_jobs WHERE run_id = ?", (run.run_id,))
            conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", _run_row(run))
            conn.executemany("INSERT INTO planned_jobs VALUES (?,?,?,?)", plan)
            conn.execute("DELETE FROM measurements WHERE run_id = ?", (run.run_id,))
            for m in run.measurements:
                self._insert(conn, run.run_id, m)
            self._verify_run(conn, run, len(plan))

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
            return check_run_id(ref, f"a run in {self.path}")
        if len(ids) == 1:
            return check_run_id(ids[0], f"a run in {self.path}")
        if not ids:
            raise InvalidInputError(f"no run {ref!r} in {self.path}; `chipfit runs` lists them")
        raise InvalidInputError(f"{ref!r} matches {len(ids)} runs "
                                f"({', '.join(repr(i)[:40] for i in ids[:3])} ...); "
                                "give more of the id")

    def _nth_latest(self, ref: str) -> str:
        back = ref.partition("~")[2] or "0"
        if not (back.isascii() and back.isdigit() and len(back) <= 9):  # SQLite's int64
            raise InvalidInputError(f"malformed run {ref!r}: use latest, latest~1, latest~2 ...")
        row = self._conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC "
                                 "LIMIT 1 OFFSET ?", (int(back),)).fetchone()
        if row is None:
            raise InvalidInputError(f"{self.path} holds no run {ref!r}; `chipfit runs` lists them")
        return check_run_id(row[0], f"the run {ref} in {self.path}")

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
        _check_row(row, where)
        pairs = _pairs(row[7], f"{where} (settings_json)")
        check_settings(pairs, f"{where} (settings_json)")
        settings, legacy = split_legacy_limits(pairs)
        return Run(run_id=row[0], command=row[1], started_at=row[2], finished_at=row[3],
                   interrupted=bool(row[4]), chipfit_version=row[5],
                   machine=_pairs(row[6], f"{where} (machine_json)"),
                   settings=settings,
                   guard_limits=legacy + _guard_limits(row[9], f"{where} (guard_limits_json)"),
                   discovery=Discovery.checked(_json(row[8], f"{where} (discovery_json)"),
                                               f"{where} (discovery_json)"),
                   measurements=tuple(Measurement.checked(_json(text, place), place)
                                      for seq, text in data
                                      for place in (f"measurement {seq!r} of {where}",)))

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
                found.append(_summary(r, f"run {str(r[0])[:40]!r} in {self.path}"))
            except InvalidInputError as exc:  # one damaged row must not hide the history
                self.skipped.append(f"skipped {exc}")
        return found

    @_guarded
    def planned_jobs(self, run_id: str) -> list[Job]:
        """The jobs ``run_id`` planned, each checked (a damaged one: InvalidInputError)."""
        rows = self._conn.execute("SELECT seq, job_json FROM planned_jobs WHERE run_id = ? "
                                  "ORDER BY seq", (run_id,)).fetchall()
        return [_job_from_json(text, f"planned job {seq!r} of run {run_id} in {self.path}")
                for seq, text in rows]

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
        """``host:pid`` of another live process on this host still writing ``run_id``.

        The driver is recorded as ``host:pid@start`` (the process's start time), so a PID
        that a ``kill -9`` freed and the system gave to another process since is not taken
        for the driver. Older records (``host:pid``) can only be judged by the PID: a reused
        one looks alive, and ``--takeover`` (:attr:`takeover`) says to go on anyway."""
        row = self._conn.execute("SELECT driver, finished_at FROM runs WHERE run_id = ?",
                                 (run_id,)).fetchone()
        if row is None or row[1] or not row[0] or not isinstance(row[0], str):
            return None
        host, _, rest = row[0].rpartition(":")
        pid, _, start = rest.partition("@")
        if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()) or len(pid) > 9:
            return None
        if int(pid) in (0, os.getpid()) or not _pid_alive(int(pid)):
            return None
        now = process_start(int(pid))
        if start and now is not None and now != start:
            return None  # the PID was reused: the driver that recorded it is gone
        return f"{host}:{pid}"


# ---- row mapping ----------------------------------------------------------------------------
def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque exact token (None where it cannot be read).

    Linux: the start time in clock ticks since boot from ``/proc/PID/stat`` (exact, unlike a
    wall-clock time derived from it); elsewhere psutil's creation time to the centisecond."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:].split()[19].decode()  # field 22: starttime
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:  # noqa: BLE001 - no such process, no permission, no psutil
        return None


def _driver() -> str:
    start = process_start(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}" + (f"@{start}" if start else "")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OverflowError:  # not a PID this system can have
        return False
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


#: A stored plan's timing is bounded like work a user would wait for: a crafted one (a
#: budget of 1e300 s, 10^12 samples) must not keep a resumed run going for ever.
_TIMING_LIMITS = {"warmup_s": 3600.0, "min_block_s": 3600.0, "budget_s": 86400.0,
                  "warmup_min_calls": 10**9, "min_samples": 10**6, "max_samples": 10**6,
                  "noisy_rel_iqr": 1e6}


def _job_from_json(text: Any, where: str = "a planned job") -> Job:
    """A planned job, every field checked; a damaged one cannot be resumed (one line)."""
    data = _json(text, where)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where} is damaged: not an object; the run cannot be "
                                "resumed: start it again")
    for key in ("workload", "size", "device", "dtype", "mode"):
        if not isinstance(data.get(key), str):
            raise InvalidInputError(f"{where} is damaged: {key!r} is missing or not text")
    for key in ("node_type", "node_id", "stack"):
        if not isinstance(data.get(key, ""), (str, type(None))):
            raise InvalidInputError(f"{where} is damaged: {key!r} is not text")
    if data["mode"] not in MODES:
        raise InvalidInputError(f"{where} is damaged: 'mode' is {data['mode'][:20]!r}")
    timing = checked_from_plain(TimingConfig, data.get("timing"), f"{where} (timing)")
    for key, high in _TIMING_LIMITS.items():
        if not 0 <= getattr(timing, key) <= high:
            raise InvalidInputError(f"{where} is damaged: timing {key!r} is "
                                    f"{getattr(timing, key)!r}, more than {high:g}")
    try:
        device = DeviceRef.parse(data["device"])
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where} is damaged: {exc}") from None
    return Job(data["workload"], data["size"], device, data["dtype"], data["mode"], timing,
               data.get("node_type"), data.get("node_id"), stack=data.get("stack") or "")


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
    if not isinstance(text, str):  # SQLite keeps whatever a column is given: a blob, a number
        raise InvalidInputError(f"{where} is damaged: {type(text).__name__}, not JSON text")
    try:
        return json.loads(text)
    except RecursionError:  # [[[[...]]]] nested deeper than Python's parser goes
        raise InvalidInputError(f"{where} is damaged: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4300 digits
        raise InvalidInputError(f"{where} is damaged: not JSON ({str(exc)[:80]})") from None


_TEXT_COLUMNS = ("command", "started_at", "finished_at", "chipfit_version")


def _check_row(row: Sequence[Any], where: str) -> None:
    """A ``runs`` row's plain columns (run_id, command, started_at, finished_at,
    interrupted, chipfit_version first): SQLite stores any type in any column."""
    check_run_id(row[0], f"{where} is damaged: 'run_id'")
    for name, value in zip(_TEXT_COLUMNS, (row[1], row[2], row[3], row[5]), strict=True):
        if not isinstance(value, str):
            raise InvalidInputError(f"{where} is damaged: {name!r} is {type(value).__name__}, "
                                    "not text")
    if row[4] not in (0, 1) or isinstance(row[4], float):
        raise InvalidInputError(f"{where} is damaged: 'interrupted' is {str(row[4])[:20]!r}, "
                                "not 0 or 1")


def _pairs(text: Any, where: str) -> tuple[tuple[str, str], ...]:
    """A stored ``{"key": "value"}`` object as sorted pairs, checked."""
    data = _json(text, where)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InvalidInputError(f"{where} is damaged: not an object of strings")
    return tuple(sorted(data.items()))


def _summary(row: Sequence[Any], where: str) -> RunSummary:
    _check_row((row[0], row[1], row[2], row[3], row[4], row[5]), where)
    for name, value in (("fingerprint", row[6]), ("hostname", row[7])):
        if not isinstance(value, str):
            raise InvalidInputError(f"{where} is damaged: {name!r} is not text")
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
