"""Where chipfit keeps results (``$CHIPFIT_HOME``, else the platform's user data directory),
and the one way chipfit writes (and reads back) a file.

Writing is careful because output paths come from users (``--json``, ``--csv``, ``-o``,
``--png``, ``--db``) and chipfit often runs as root in containers:

- a regular file (or a new one) is replaced atomically: the data goes to a temporary file in
  the same directory, which is then renamed over the target, so a crash or a full disk leaves
  the old file whole and no temporary file behind;
- a symbolic link is refused (renaming over it would replace the link with a file, and
  writing through it would let a planted link aim chipfit's writes anywhere): name the real
  file instead;
- a directory, a device (``/dev/null``, ``/dev/full``), a FIFO or a socket is refused, never
  replaced.

:func:`check_output` applies the same rules without writing, so commands can refuse a bad
path before minutes of measuring.

Reading is the mirror: every persisted format carries ``format`` and ``schema_version``, and
:func:`read_versioned_json` is the one reader; a file from a newer chipfit is refused
(:func:`check_schema`), never misread, and a damaged one is a one-line usage error.

Every file a user names (a config, a run, a catalog, the GPU kernel data) is read by
:func:`read_user_file` and the text and JSON readers on top of it: bounded in size (gzip after
inflating too) and never waiting, because a FIFO, a device, a socket or a directory is refused
before a byte is read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import gzip
import json
import os
import re
import stat
import sys
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from chipfit.errors import InvalidInputError, SchemaError

__all__ = ["CONFIG_FILE_LIMIT", "MAX_INTEGER_DIGITS", "RUN_FILE_LIMIT", "TABLE_FILE_LIMIT",
           "check_output", "check_output_dir", "check_schema", "check_user_file",
           "check_versioned", "data_dir", "json_field", "latest_run", "open_atomic",
           "read_user_file", "read_user_json", "read_user_text", "read_versioned_json",
           "run_files", "runs_dir", "utc_now", "write_atomic", "write_json_atomic"]


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


def run_files() -> list[Path]:
    """The results files in :func:`runs_dir`, newest first (links and odd entries skipped)."""
    folder = runs_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                found.append((st.st_mtime, path.name, path))
    return [path for *_, path in sorted(found, reverse=True)]


def latest_run() -> Path | None:
    """The most recently written results file, if any."""
    files = run_files()
    return files[0] if files else None


def _kind(mode: int) -> str:
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # absent (a parent that is a file is reported by _check_parent)
    except OSError as exc:
        raise InvalidInputError(f"cannot use {path}: {exc.strerror or exc}") from None


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor must be a directory we may create files in."""
    for parent in (path.parent, *path.parent.parents):
        if os.path.lexists(parent):
            break
    else:  # pragma: no cover - the root always exists
        return
    if not parent.is_dir():
        raise InvalidInputError(f"{what} {path}: {parent} is a file, not a directory; "
                                "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{what} {path}: cannot create files in {parent} (permission "
                                "denied); choose another path")


def check_output(path: str | os.PathLike[str], what: str = "output") -> Path:
    """``path`` if chipfit may write a file there, else an InvalidInputError saying why.

    Allowed: a regular file, or a path that does not exist yet under a writable directory.
    Refused: directories, symbolic links, devices, FIFOs, sockets, and parents that are files.
    """
    path = Path(path).expanduser()
    if not str(path).strip() or path.name in ("", ".", ".."):
        raise InvalidInputError(f"{what} {str(path)!r} is not a file name")
    st = _lstat(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        hint = (f"; give a file inside it, e.g. {path / 'results.json'}" if stat.S_ISDIR(st.st_mode)
                else f"; give the real file ({os.path.realpath(path)}) or another path"
                if stat.S_ISLNK(st.st_mode) else "; chipfit writes only regular files")
        raise InvalidInputError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file{hint}")
    if st is not None and not os.access(path, os.W_OK):
        raise InvalidInputError(f"{what} {path} is not writable (permission denied)")
    _check_parent(path, what)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """``path`` if chipfit may create files in it (it may not exist yet)."""
    path = Path(path).expanduser()
    if os.path.lexists(path):
        if not path.is_dir():
            raise InvalidInputError(f"{what} {path} is not a directory; choose another path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InvalidInputError(f"{what} {path} is not writable (permission denied)")
        return path
    _check_parent(path, what)
    return path


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike[str], what: str = "output", *, text: bool = True,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """A file handle whose content replaces ``path`` atomically when the block ends.

    The target is checked with :func:`check_output` first. On any failure (a full disk, an
    exception in the block, Ctrl-C) the temporary file is removed and ``path`` is untouched.
    """
    path = check_output(path, what)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8", "newline": newline}
                                                     if text else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        hint = "free some space or " if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}; {hint}choose "
                                "another path") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets 0666 less the umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike[str], data: str | bytes, what: str = "output") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` with the rules of :func:`open_atomic`."""
    with open_atomic(path, what, text=isinstance(data, str)) as fh:
        fh.write(data)
    return Path(path).expanduser()


def write_json_atomic(path: str | os.PathLike[str], data: Any, what: str = "output") -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`open_atomic`)."""
    return write_atomic(path, json.dumps(data, indent=1, default=str) + "\n", what)


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (what every stored timestamp uses)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def check_schema(version: Any, supported: int, origin: str, then: str) -> None:
    """Refuse a ``schema_version`` newer than ``supported``, or one that is no version at
    all (text, a bool, 0 or less: a damaged file, not a newer one); ``then`` says what to do
    next with a newer one (e.g. "upgrade chipfit to read it")."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidInputError(f"{origin} is damaged: its schema version {repr(version)[:40]} "
                                f"is {type(version).__name__}, not a whole number")
    if version < 1:
        raise InvalidInputError(f"{origin} is damaged: schema version {version} (versions "
                                "start at 1)")
    if version > supported:
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
    :func:`check_versioned`; unreadable or malformed files are one-line usage errors, and the
    file is read by :func:`read_user_json` (a FIFO, a device or a file over
    :data:`RUN_FILE_LIMIT` is refused before anything is read)."""
    data = read_user_json(path, RUN_FILE_LIMIT, f"chipfit {what} file")
    return check_versioned(data, fmt, supported, str(path), what, then)


# ---- reading the files users name -----------------------------------------------------------
# Limits on what chipfit reads from a file a user names: far above any real file of the kind,
# far below what would exhaust the machine's memory once parsed (JSON takes about 10x its
# text in Python objects).
#: A model config (a transformers config.json is a few KB; id2label tables reach a few MB).
CONFIG_FILE_LIMIT = 16 * 2**20
#: A results or calibration JSON file (a long sweep with every raw block time: tens of MB).
RUN_FILE_LIMIT = 256 * 2**20
#: A data table (CSV, gzip-compressed or not), counted after decompression.
TABLE_FILE_LIMIT = 256 * 2**20


def _size_words(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def _refuse_irregular(st: os.stat_result, path: Path, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file; "
                                "chipfit reads only regular files")


def check_user_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is an existing regular file (links followed), else one line saying what
    it is: for files another library opens itself (a safetensors file, a factory's module),
    whose size chipfit does not bound but whose kind it does."""
    path = Path(path).expanduser()
    try:
        _refuse_irregular(os.stat(path), path, what)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidInputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return path


def read_user_file(path: str | os.PathLike[str], limit_bytes: int, what: str, *,
                   gzipped: bool = False) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in errors: "config",
    "results file"), at most ``limit_bytes`` of them (after inflating when ``gzipped``).

    Refused in one line, before anything is read: a missing or unreadable file, a directory,
    a FIFO, a socket or a device (``/dev/zero``, ``/dev/stdin``), a file over the limit. The
    file is opened without blocking (``O_NONBLOCK``: a FIFO with no writer would otherwise
    wait for one forever) and checked again once open, so swapping it in between changes
    nothing. Symbolic links to regular files are followed (the Hugging Face cache is links).
    """
    path = Path(path).expanduser()
    try:
        _refuse_irregular(os.stat(path), path, what)  # a device is never even opened
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidInputError(f"cannot read {what} {path}: it does not exist") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            _refuse_irregular(st, path, what)
            if st.st_size > limit_bytes:
                raise InvalidInputError(f"{what} {path} is larger than {_size_words(limit_bytes)} "
                                        f"({st.st_size} bytes); chipfit reads at most that much")
            if not gzipped:
                data = fh.read(limit_bytes + 1)
            else:
                with gzip.GzipFile(fileobj=fh, mode="rb") as inflated:
                    data = inflated.read(limit_bytes + 1)  # inflates only what it returns
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InvalidInputError(f"{what} {path} is not a gzip file, or a damaged one "
                                f"({str(exc) or type(exc).__name__})") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit_bytes:  # grew while read, or a gzip that inflates past the limit
        raise InvalidInputError(f"{what} {path} is larger than {_size_words(limit_bytes)}"
                                f"{' uncompressed' if gzipped else ''}; chipfit reads at most "
                                "that much")
    return data


def read_user_text(path: str | os.PathLike[str], limit_bytes: int, what: str, *,
                   gzipped: bool = False) -> str:
    """:func:`read_user_file` decoded as UTF-8 (a byte-order mark is dropped)."""
    data = read_user_file(path, limit_bytes, what, gzipped=gzipped)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # binary garbage, or another program's file
        raise InvalidInputError(f"{path} is not a {what} (not UTF-8 text)") from None


class _LongInteger:
    """An integer literal with more digits than any figure chipfit reads (see
    :func:`read_user_json`); only ever seen by the check that names where it sits."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


#: Digits beyond which an integer literal is refused (int64 has 19; Python itself refuses to
#: convert more than 4300, with an error that names no field).
MAX_INTEGER_DIGITS = 40


def json_field(trail: tuple[Any, ...]) -> str:
    """``("rows", 3, "flops")`` -> ``rows[3].flops``: where a value sits, for messages."""
    text = ""
    for key in trail:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "the top level"


def _long_integer_at(data: Any) -> tuple[str, int] | None:
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        trail, value = stack.pop()
        if isinstance(value, _LongInteger):
            return json_field(trail), value.digits
        if isinstance(value, dict):
            stack.extend(((*trail, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*trail, i), v) for i, v in enumerate(value))
    return None


def read_user_json(path: str | os.PathLike[str], limit_bytes: int, what: str) -> Any:
    """The JSON value in ``path``, read by :func:`read_user_text`. Malformed JSON, nesting
    deeper than Python's parser goes and integers of more than :data:`MAX_INTEGER_DIGITS`
    digits are one-line errors (a long integer's names the field it sits in)."""
    text = read_user_text(path, limit_bytes, what)
    long: list[_LongInteger] = []

    def parse_int(digits: str) -> Any:
        if len(digits.lstrip("-")) <= MAX_INTEGER_DIGITS:
            return int(digits)
        long.append(_LongInteger(digits))
        return long[-1]

    try:  # the hook costs a Python call per integer: only where a long digit run is
        long_run = re.search(rf"\d{{{MAX_INTEGER_DIGITS + 1}}}", text) is not None
        data = json.loads(text, parse_int=parse_int) if long_run else json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise InvalidInputError(f"{path} is not a chipfit {what} file ({str(exc)[:60]})") from None
    except RecursionError:  # [[[[...]]]] nested deeper than Python's parser goes
        raise InvalidInputError(f"{path} is not a {what} (JSON nested too deeply)") from None
    if long:
        found = _long_integer_at(data)
        where, digits = found if found is not None else ("a field", long[0].digits)
        raise InvalidInputError(f"{path}: {where} is a {digits}-digit number; no figure chipfit "
                                f"reads has more than {MAX_INTEGER_DIGITS} digits")
    return data
