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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chipfit ARGS`` as a user would, capturing output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    proc = subprocess.run([sys.executable, "-m", "chipfit", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"chipfit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


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
