"""Where chipfit keeps results (``$CHIPFIT_HOME``, else the platform's user data directory),
and the one writer and one reader of chipfit's versioned JSON files.

Every persisted format carries ``format`` and ``schema_version``; a file from a newer chipfit
is refused (:func:`check_schema`), never misread.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError, SchemaError

__all__ = ["check_schema", "check_versioned", "data_dir", "latest_run", "read_versioned_json",
           "runs_dir", "utc_now", "write_json_atomic"]


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


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (what every stored timestamp uses)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def check_schema(version: Any, supported: int, origin: str, then: str) -> None:
    """Refuse a ``schema_version`` newer than ``supported`` (or not a number); ``then`` says
    what to do next (e.g. "upgrade chipfit to read it")."""
    if not isinstance(version, int) or version > supported:
        raise SchemaError(f"{origin} has schema version {version}, newer than this chipfit "
                          f"understands ({supported}); {then}")


def check_versioned(data: Any, fmt: str, supported: int, origin: str, what: str,
                    then: str) -> dict[str, Any]:
    """``data`` if it is a chipfit ``what`` file (``format`` ``fmt``) this chipfit can read."""
    if not isinstance(data, Mapping) or data.get("format") != fmt:
        raise InvalidInputError(f"{origin} is not a chipfit {what} file")
    check_schema(data.get("schema_version"), supported, origin, then)
    return dict(data)


def read_versioned_json(path: str | os.PathLike[str], fmt: str, supported: int, what: str,
                        then: str) -> dict[str, Any]:
    """Read a JSON file written by :func:`write_json_atomic` and check it with
    :func:`check_versioned`; unreadable or malformed files are one-line usage errors."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return check_versioned(data, fmt, supported, str(path), what, then)
