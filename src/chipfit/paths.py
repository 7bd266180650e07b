"""Where chipfit keeps results: ``$CHIPFIT_HOME``, else the platform's user data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["data_dir", "latest_run", "runs_dir"]


def data_dir() -> Path:
    if os.environ.get("CHIPFIT_HOME"):
        return Path(os.environ["CHIPFIT_HOME"]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "chipfit"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "chipfit"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "chipfit"


def runs_dir() -> Path:
    return data_dir() / "runs"


def latest_run() -> Path | None:
    """The most recently written results file, if any."""
    folder = runs_dir()
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    return files[-1] if files else None
