"""Shared fixtures: an isolated chipfit data directory and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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
            check: bool = False, isolated: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``chipfit ARGS`` as a user would, capturing output.

    In a fresh ``python -m chipfit`` process when ``isolated`` (or the call changes the
    environment beyond what chipfit reads per command, or starts process-wide machinery);
    otherwise ``chipfit.cli.main`` runs in this process, with the same environment, streams and
    warning filters a fresh process has, which saves the interpreter's start and torch's and
    JAX's imports (seconds per call). Either way the result is a CompletedProcess.
    """
    changed = {k: v for k, v in (env or {}).items() if os.environ.get(k) != v}
    changed.setdefault("COLUMNS", os.environ.get("COLUMNS", "200"))
    own = isolated or set(changed) - _IN_PROCESS_ENV or _OWN_PROCESS_ARGS & set(args)
    runner = _subprocess_cli if own else _in_process_cli
    proc = runner(list(args), changed, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"chipfit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


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


def pytest_collection_modifyitems(config, items):
    """Skip accelerator-marked tests unless a GPU or TPU is really present."""
    if not any("accelerator" in item.keywords for item in items):
        return
    from chipfit.discovery import discover

    if any(d.kind != "cpu" for d in discover().devices):
        return
    skip = pytest.mark.skip(reason="needs a GPU or TPU; none on this machine")
    for item in items:
        if "accelerator" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the end, even with -q, which tests skipped for want of a tool and how to fix it."""
    skipped = terminalreporter.stats.get("skipped", [])
    browser = [r for r in skipped if "headless Chromium not found" in str(r.longrepr)]
    if browser:
        terminalreporter.write_line(
            f"{len(browser)} HTML report test(s) skipped: headless Chromium not found on PATH; "
            "`apt-get install chromium` enables them (.ci/run installs it)", yellow=True)
