"""Shared fixtures: an isolated chipfit data directory, a CLI runner, and a core per worker.

The suite runs on pytest-xdist workers (``-n auto`` in pyproject: one per core, at most four).
Each worker is pinned to a core of its own before torch or JAX load, so a test that measures
shares its core with nothing: chipfit's contention watch reads only the cores a process may
use, and the other workers run on other cores. A test marked ``whole_machine`` (thread
counts: torch at two threads beside one) waits until no other test runs, then has every core
until it ends; the other workers wait at a turnstile meanwhile. Without xdist
(``-p no:xdist`` or ``-n 0``) nothing is pinned and nothing waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_MAX_WORKERS = 4  # each worker imports torch, JAX and TensorFlow (about 1.5 GB resident)


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


_ALL_CPUS = _cpus()  # before pinning: what the suite was given


def _worker() -> tuple[int, int] | None:
    """(this worker's index, the number of workers) under xdist, else None."""
    name, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not name or not count or not name.startswith("gw"):
        return None
    return int(name[2:]), int(count)


def _set_affinity(cpus: list[int]) -> None:
    """Every thread of this process (torch's and XLA's pools included) onto ``cpus``."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return max(1, min(len(_ALL_CPUS), _MAX_WORKERS))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "whole_machine: needs every core and no other test running (thread "
        "counts: torch at two threads beside one)")
    worker = _worker()
    if worker and 1 < worker[1] <= len(_ALL_CPUS):
        _set_affinity([_ALL_CPUS[worker[0]]])


class _Turn:
    """A readers-writer lock across the xdist workers (flock on two files): ordinary tests
    share it, a ``whole_machine`` test holds it alone. The turnstile keeps a waiting
    ``whole_machine`` test from being overtaken by a stream of ordinary ones."""

    def __init__(self, run_id: str) -> None:
        root = Path(tempfile.gettempdir()) / f"chipfit-tests-{run_id}"
        root.mkdir(exist_ok=True)
        self._turnstile = open(root / "turnstile", "a")  # noqa: SIM115 - held for the session
        self._rw = open(root / "rw", "a")  # noqa: SIM115

    def acquire(self, alone: bool) -> None:
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._rw, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    def release(self) -> None:
        fcntl.flock(self._rw, fcntl.LOCK_UN)


_TURN: list[_Turn] = []
#: While this worker holds the machine: the cores and torch threads to give back.
_HELD: list[tuple[list[int], int | None]] = []
#: The item this worker runs next (pytest_runtest_protocol knows it).
_NEXT: list[pytest.Item | None] = [None]


def _turn() -> _Turn | None:
    worker = _worker()
    if not worker or worker[1] < 2:
        return None
    if not _TURN:
        _TURN.append(_Turn(os.environ.get("PYTEST_XDIST_TESTRUNUID", "local")))
    return _TURN[0]


def _take_machine(turn: _Turn) -> None:
    turn.acquire(alone=True)
    torch = sys.modules.get("torch")
    _HELD.append((_cpus(), torch.get_num_threads() if torch else None))
    _set_affinity(_ALL_CPUS)
    if torch:
        torch.set_num_threads(len(_ALL_CPUS))


def _give_machine_back(turn: _Turn) -> None:
    mine, threads = _HELD.pop()
    _set_affinity(mine)
    torch = sys.modules.get("torch")  # perhaps first imported meanwhile
    if torch:
        torch.set_num_threads(threads or len(mine))
    turn.release()


@contextlib.contextmanager
def _whole_machine() -> Iterator[None]:
    """Every core for this process and its children, no other test running meanwhile."""
    turn = _turn()
    if turn is None or _HELD:  # not under xdist, or this worker holds the machine already
        yield
        return
    _take_machine(turn)
    try:
        yield
    finally:
        _give_machine_back(turn)


@pytest.fixture(scope="session")
def whole_machine() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """For a module- or session-scoped fixture that needs every core (they are set up before
    a test's own marker takes effect): ``with whole_machine(): ...``."""
    return _whole_machine


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _NEXT[0] = nextitem
    yield


def _alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("whole_machine") is not None


@pytest.fixture(autouse=True)
def _core_of_its_own(request: pytest.FixtureRequest) -> Iterator[None]:
    turn = _turn()
    if turn is None:
        yield
        return
    if not _alone(request.node):
        turn.acquire(alone=False)
        try:
            yield
        finally:
            turn.release()
        return
    if not _HELD:
        _take_machine(turn)
    try:
        yield
    finally:
        if not _alone(_NEXT[0]):  # the next test here needs the machine too: keep it
            _give_machine_back(turn)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("chipfit-home")
    monkeypatch.setenv("CHIPFIT_HOME", str(home))
    return home


# Environment a CLI call may change and still run inside the test process: what chipfit reads
# when a command runs (not what torch, JAX, Ray or the C runtime read once at start-up).
_IN_PROCESS_ENV = {"CHIPFIT_HOME", "CHIPFIT_MEMORY_LIMIT_BYTES", "COLUMNS", "LINES", "NO_COLOR",
                   "TERM"}
# Commands and flags that start process-wide machinery (a Ray driver, torch.distributed ranks,
# XLA's device count) or that must be seen from outside: always a fresh interpreter.
_OWN_PROCESS_ARGS = {"scale", "ray", "--address", "--trust-pickle"}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            check: bool = False, isolated: bool | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``chipfit ARGS`` as a user would, capturing output.

    In a fresh ``python -m chipfit`` process when ``isolated`` (or, left None, when the call
    changes the environment beyond what chipfit reads per command, or starts process-wide
    machinery); otherwise ``chipfit.cli.main`` runs in this process, with the same environment,
    streams and warning filters a fresh process has, which saves the interpreter's start and
    torch's and JAX's imports (seconds per call). ``isolated=False``: in this process even with
    a flag of ``_OWN_PROCESS_ARGS``, where the caller knows nothing of it needs its own (a
    ``--trust-pickle`` of a file that names only torch's own classes). Either way the result
    is a CompletedProcess.
    """
    env = dict(env or {})
    columns = env.pop("COLUMNS", "200")  # never the caller's own: xdist's workers have 80
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    changed["COLUMNS"] = columns
    own = isolated if isolated is not None else bool(
        set(changed) - _IN_PROCESS_ENV or _OWN_PROCESS_ARGS & set(args))
    runner = _subprocess_cli if own else _in_process_cli
    proc = runner(list(args), changed, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"chipfit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


#: The child of :func:`run_cli_batch`: each call through this conftest's in-process runner.
_BATCH_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from conftest import _in_process_cli
found = []
for args, changed, timeout in json.loads(sys.stdin.read()):
    start = time.monotonic()
    proc = _in_process_cli(args, changed, timeout)
    found.append([proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start])
with open(sys.argv[2], "w", encoding="utf-8") as fh:  # not stdout: C code may print there
    json.dump(found, fh)
"""


def run_cli_batch(*calls: tuple[str, ...] | tuple[tuple[str, ...], dict[str, str]],
                  env: dict[str, str] | None = None,
                  timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Several ``chipfit`` calls, one after another, in ONE fresh ``python -m``-like process.

    For calls that each need a fresh interpreter only because of what they might start
    (``scale``'s XLA devices, a Ray driver) or read at start-up (``$RAY_ADDRESS``), and that
    are refused before anything starts: one interpreter start and one import of torch and JAX
    instead of one per call. Each call is ``ARGS`` or ``(ARGS, ENV)``; ``ENV`` is set for that
    call alone, ``env`` for the whole process (what must be there before anything imports,
    such as ``XLA_FLAGS``; ``$CHIPFIT_HOME`` is a fresh directory unless given: a module
    fixture runs before a test's own isolated home exists). Each result is a
    CompletedProcess, with ``.seconds`` the call took.
    """
    jobs = []
    for call in calls:
        args, changed = (call[0], dict(call[1])) if call and isinstance(call[0], tuple) else (
            call, {})
        changed.setdefault("COLUMNS", "200")
        jobs.append([list(args), changed, timeout])
    with tempfile.TemporaryDirectory(prefix="chipfit-cli-batch-") as tmp:
        answer = Path(tmp) / "results.json"
        proc = subprocess.run([sys.executable, "-c", _BATCH_CHILD, str(Path(__file__).parent),
                               str(answer)], input=json.dumps(jobs), capture_output=True,
                              text=True, timeout=timeout * len(jobs),
                              env={**os.environ, "CHIPFIT_HOME": str(Path(tmp) / "home"),
                                   **(env or {})})
        if proc.returncode != 0 or not answer.exists():
            raise AssertionError(f"the batch of chipfit calls failed ({proc.returncode}):\n"
                                 f"{proc.stderr[-4000:]}")
        found = json.loads(answer.read_text(encoding="utf-8"))
    results = []
    for (args, _, _), (code, out, err, seconds) in zip(jobs, found, strict=True):
        done = subprocess.CompletedProcess(["chipfit", *args], code, out, err)
        done.seconds = seconds  # type: ignore[attr-defined]
        results.append(done)
    return results


def _subprocess_cli(args: list[str], changed: dict[str, str],
                    timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chipfit", *args], capture_output=True,
                          text=True, env={**os.environ, **changed}, timeout=timeout)


def _in_process_cli(args: list[str], changed: dict[str, str],
                    timeout: float) -> subprocess.CompletedProcess[str]:
    import contextlib
    import faulthandler
    import io
    import traceback
    import warnings

    from chipfit.cli import main
    from chipfit.commands import _common

    saved_env = {k: os.environ.get(k) for k in changed}
    saved_width = {c: c._width for c in (_common.out, _common.err)}
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(changed)
    for console in saved_width:  # a fresh process's consoles read $COLUMNS when they start
        console._width = int(changed["COLUMNS"]) if changed["COLUMNS"].isdigit() else None
    faulthandler.dump_traceback_later(timeout, exit=True)  # a hang ends the run, loudly
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.resetwarnings()  # a fresh interpreter's filters, not pytest's "error"
            warnings.simplefilter("default")
            try:
                code = main(args)
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - what the interpreter would print at exit
                traceback.print_exc()
                code = 1
    finally:
        faulthandler.cancel_dump_traceback_later()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for console, width in saved_width.items():
            console._width = width
    return subprocess.CompletedProcess(["chipfit", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny models: on a shared 2-core machine a
    two-thread parallel region waits a scheduler quantum whenever the other core is taken,
    which for operators this small costs far more than the second thread gains."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def cli():
    return run_cli


#: The device the shared calibration below measures.
CALIBRATED_CPU = "torch:cpu@1t"


@pytest.fixture(scope="session")
def cpu_calibration(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A real calibration of this CPU (``torch:cpu@1t``, the settings ``chipfit calibrate``
    uses), measured ONCE per test run.

    It costs about 25 CPU-seconds (its streamed-weight probes allocate 128 MiB per width), and
    ``tests/e2e/test_predict_cli.py`` and ``tests/backends/test_calibrate_predict.py`` both need
    one. Under xdist they run on different workers: the first to ask measures under a file lock
    in the run's shared temporary directory, the other reads the result. Returns ``measured``
    (the calibration as a file, kept even when refused), ``refused`` (why chipfit would not
    store it, or None) and ``home`` (a CHIPFIT_HOME holding it when stored: copy it before
    writing, see :func:`calibrated_home`). The CLI's own wiring of ``chipfit calibrate`` is
    checked with a stand-in measurement in tests/e2e/test_busy_machine.py."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # shared by workers
    home, measured = root / "cpu-calibration-home", root / "cpu-calibration.json"
    done = root / "cpu-calibration.done"
    with open(root / "cpu-calibration.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                from chipfit.analysis.calibration import refusal
                from chipfit.pipelines.calibrate import (
                    _to_dict,
                    calibrate,
                    calibration_path,
                    save_calibration,
                )

                with pytest.MonkeyPatch.context() as patch:  # nothing in the user's home
                    patch.setenv("CHIPFIT_HOME", str(home))
                    cal = calibrate(CALIBRATED_CPU)
                    measured.write_text(json.dumps(_to_dict(cal)), encoding="utf-8")
                    why = refusal(cal)
                    if why is None:
                        save_calibration(cal, calibration_path(CALIBRATED_CPU))
                done.write_text(json.dumps({"refused": why}), encoding="utf-8")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return {"home": home, "measured": measured, **json.loads(done.read_text())}


def calibrated_home(cpu_calibration: dict[str, object], into: Path) -> Path:
    """A private copy of the shared calibrated CHIPFIT_HOME (tests write into their home).
    Skips, naming why, when chipfit refused the calibration because the machine was shared on
    every attempt (right, and nothing that needs a stored calibration can run); fails when
    it was refused for missing its own held-out checks on a quiet machine."""
    import shutil

    why = cpu_calibration["refused"]
    if why and "measured while the machine was shared" in str(why):
        pytest.skip(f"chipfit refused this run's calibration: {why}")
    assert not why, f"chipfit refused this run's calibration: {why}"
    shutil.copytree(Path(str(cpu_calibration["home"])), into, dirs_exist_ok=True)
    return into


@pytest.fixture(scope="session")
def cli_batch():
    """:func:`run_cli_batch`, for module-scoped fixtures that gather a file's fresh-process
    calls into one process."""
    return run_cli_batch


def pytest_collection_modifyitems(config, items):
    """Files with whole-machine and slow tests first (xdist hands out whole files: the long
    ones start early and the short ones fill in at the end)."""
    alone = {item.path for item in items if _alone(item)}
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    # Stable. Files with whole-machine tests first, those tests first in their files: the
    # workers take turns with the machine at the start, back to back, instead of one idling
    # later while the other finishes a long test; then files with slow tests.
    items.sort(key=lambda item: (item.path not in alone, item.path not in slow,
                                 not _alone(item)))


_ACCELERATOR: list[bool] = []


@pytest.fixture(autouse=True)
def _accelerator_or_skip(request: pytest.FixtureRequest) -> None:
    """Skip accelerator-marked tests unless a GPU or TPU is really present. Decided when the
    first such test runs, not at collection: discovering every framework's devices (starting
    TensorFlow's runtime among them) costs seconds in each worker."""
    if request.node.get_closest_marker("accelerator") is None:
        return
    if not _ACCELERATOR:
        from chipfit.discovery import discover

        _ACCELERATOR.append(any(d.kind != "cpu" for d in discover().devices))
    if not _ACCELERATOR[0]:
        pytest.skip("needs a GPU or TPU; none on this machine")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the end, even with -q, which tests skipped for want of a tool and how to fix it."""
    skipped = terminalreporter.stats.get("skipped", [])
    browser = [r for r in skipped if "headless Chromium not found" in str(r.longrepr)]
    if browser:
        terminalreporter.write_line(
            f"{len(browser)} HTML report test(s) skipped: headless Chromium not found on PATH; "
            "`apt-get install chromium` enables them (.ci/run installs it)", yellow=True)
