"""Where chipfit keeps results: ``$CHIPFIT_HOME``, else the platform's user data directory."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["data_dir", "latest_run", "runs_dir", "write_json_atomic"]


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


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically: a crash mid-write leaves the old file
    whole (the new one is written beside it, then renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".chipfit-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)
    return path
