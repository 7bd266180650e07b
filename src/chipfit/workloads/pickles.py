"""Load model files without running the code a pickle (or anything else in them) names.

Unpickling runs code: a pickle names callables (``GLOBAL``/``STACK_GLOBAL``/``INST`` opcodes,
extension codes) that the unpickler imports and calls. torch's own safe path, ``torch.load(...,
weights_only=True)``, allows only a list of tensor-rebuilding globals, but ``torch.export.load``
goes further: it unpickles a ``.pt2``'s pickled weights and tensor constants with
``weights_only=False``, its example inputs with the same after a failed weights-only try, its
Python-object constants with ``pickle.loads``, its TorchScript-object constants with
``torch._C._pickle_load_obj``, and it ``dlopen()``s an AOTInductor library packed in the archive.
Nor is a .pt2 without pickles inert: its symbolic shapes are strings that ``sympy.sympify``
evaluates, its graph's input names are written as they are into the Python that FX generates
and exec()s, and its ``guards_code`` strings are compiled into the module's input checks.

So chipfit has two walls, each enough on its own:

- **The loader** (:func:`load_exported`) runs ``torch.export.load`` under
  :func:`weights_only_loading`: every ``torch.load`` inside is weights-only (torch's own
  ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` switch, which no ``weights_only=False`` overrides, so the
  fallback fails too), the other three entry points refuse, symbolic shapes must be plain
  arithmetic and generated code plain FX before anything evaluates them; the module is built
  without the archive's guard code, and every graph input must be named like a variable. A file
  that needs more is refused in one line naming ``--trust-pickle``; nothing the user did not
  allow is unpickled or run, whatever a scanner makes of the file. TorchScript archives
  (``torch.jit.load``) go through torch's C++ unpickler, which resolves no Python globals;
  other files through ``torch.load(weights_only=True)``.
- **The scanner** (:func:`check_model_file`) reads every pickle stream in a model file before any
  loader sees it, and refuses any global outside the allow-list of torch's weights-only
  unpickler. It runs the opcodes on a symbolic copy of the unpickler's stack, mark stack and
  memo, exactly as the real unpickler would (``MEMOIZE`` stores at ``len(memo)``, ``POP`` with
  nothing above a mark drops the mark, Python 2 names are mapped below protocol 3, ...),
  tracking which stack items are strings it knows. It parses the opcodes itself, as leniently
  as the unpickler does (``pickletools`` gives up on inputs the unpickler accepts, such as
  ``I0x10``). Where the real unpickler would fail, the scan stops: nothing after that point
  would run. Where the scan cannot know what the unpickler would do (a global named by a
  computed string, an extension code not registered here, a dotted attribute path, a read
  across the end of a pickle frame, where C's and Python's unpicklers read different bytes, a
  stream too large to follow), it refuses; so it does an AOTInductor member (native code). A
  test checks it against the real unpicklers on generated opcode streams.

Every member of a zip archive is scanned (pickles hide in ``.pkl`` members, in nested
``torch.save`` archives, and in weight files marked ``use_pickle``), whatever its name or
first byte: a protocol-0 pickle needs no header. A member that is not a pickle stops the scan
where the unpickler would fail on it, having named no global. The one exception is tensor data
that torch reads as raw bytes and never unpickles: the storages ``P/data/KEY`` beside a
``P/data.pkl`` (``torch.save``, TorchScript), and a ``.pt2``'s weights and constants that its
own configs mark ``use_pickle: false`` (a path that any entry marks pickled is scanned). Read as
opcodes, random weights look like pickles often enough to refuse good files.
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import copyreg
import io
import json
import keyword
import logging
import os
import pickle
import re
import struct
import threading
import types
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from chipfit.errors import InvalidInputError, UnsafeFileError

__all__ = ["LOAD_LOCK", "PickleFinding", "allowed_globals", "check_model_file", "load_exported",
           "refusal", "scan_file", "scan_pickle", "surely_forbidden", "weights_only_loading"]

#: TorchScript archives name their compiled classes ``__torch__.*``; torch.jit.load resolves
#: them to TorchScript types only (never to Python code), so they are allowed there.
_SCRIPT_PREFIXES = ("__torch__.", "torch.jit._pickle.")
_MAX_DEPTH = 3  # nested archives: a .pt2 holds torch.save archives; deeper is suspicious
_MAX_STREAMS = 16  # pickles read one after another from a legacy (non-zip) torch.save file
_MAX_CONFIG_BYTES = 64 << 20  # a .pt2 payload config larger than this is not read (all scanned)
#: Strings longer than this are never compared with names (a module or attribute name that
#: long would not import); the scan skips their bytes and knows only that they are strings.
_MAX_NAME = 4096
_MAX_ITEMS = 1 << 20  # stack items and memo entries a scan follows; more is refused
_MAX_FRAME = 16 << 20  # bytes in one pickle frame (Python's pickler writes about 64 KiB)
_CHUNK = 1 << 20
#: Where torch.export.load finds an AOTInductor package, a shared library it dlopen()s.
_AOTI_DIR = "data/aotinductor/"


class PickleFinding:
    """What a scan found: globals named, and anything the scan could not verify."""

    def __init__(self) -> None:
        self.globals: set[str] = set()
        self.dotted: set[str] = set()  # named through a dotted attribute path (module, "a.b")
        self.unverifiable: list[str] = []
        self.compiled: list[str] = []  # AOTInductor members: native code torch would dlopen()


#: Every global torch's weights-only unpickler allows lives in these modules (a test checks
#: it against the installed torch), so a global elsewhere is refused without importing torch:
#: refusing a malicious file stays fast.
_ALLOWED_ROOTS = ("torch", "collections", "_codecs")
_ALLOWED_BUILTINS = frozenset({"builtins.bytearray", "builtins.set", "builtins.complex"})


def surely_forbidden(name: str) -> bool:
    """Whether global ``name`` is outside torch's allow-list whatever its version says."""
    if name.startswith("builtins."):
        return name not in _ALLOWED_BUILTINS
    return name.split(".", 1)[0] not in _ALLOWED_ROOTS


@lru_cache(maxsize=1)
def allowed_globals() -> frozenset[str]:
    """The globals torch's weights-only unpickler accepts, plus those a user registered
    with ``torch.serialization.add_safe_globals``."""
    import torch
    from torch._weights_only_unpickler import _get_allowed_globals

    names = set(_get_allowed_globals())
    for entry in torch.serialization.get_safe_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, None)
        names.add(name or f"{obj.__module__}.{obj.__qualname__}")
    return frozenset(names)


# ---- the scanner: a symbolic unpickler -----------------------------------------------------------
class _Stop(Exception):
    """The real unpickler raises here (bad opcode, stack underflow, truncated data, ...):
    nothing after this point of the stream runs."""


class _Refuse(Exception):
    """The scan cannot follow the stream further; the reason is in the finding."""


#: Stack values whose content the scan does not track. A known string is the ``str`` itself.
_ANY = object()  # of unknown type: built by calling a global, say; it could be a str
_OTHER = object()  # surely not an exact str: a number, bytes, a container, None, a memoryview


def _py2_name(module: str, name: str) -> tuple[str, str]:
    """Python 2 names mapped as the unpickler does below protocol 3 (``fix_imports``)."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


_READ_ERRORS = (OSError, EOFError, RuntimeError, NotImplementedError, zlib.error, zipfile.BadZipFile)


class _Machine:
    """One pickle stream run on symbols: the stack, the mark stack and the memo of CPython's
    unpickler (``_pickle.c``, which torch.load uses), with strings kept where known."""

    def __init__(self, stream: IO[bytes], finding: PickleFinding) -> None:
        self.stream = stream
        self.frame: io.BytesIO | None = None  # the current frame's bytes (protocol 4+)
        self.frame_size = 0
        self.finding = finding
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.items = 0  # on the stack and under marks, together
        self.memo: dict[int, Any] = {}
        self.proto = 0

    # -- reading, as leniently as the unpickler reads ------------------------------------------
    def read(self, n: int) -> bytes:
        if self.frame is not None:
            data = self.frame.read(n)
            if len(data) == n:
                return data
            self._frame_ends(data)
        try:
            return self.stream.read(n)
        except _READ_ERRORS:
            raise _Stop from None  # a damaged or unreadable member: no loader reads it either

    def readline(self, limit: int) -> bytes:
        if self.frame is not None:
            line = self.frame.readline(limit)
            if line.endswith(b"\n") or len(line) == limit:
                return line
            self._frame_ends(line)
        try:
            return self.stream.readline(limit)
        except _READ_ERRORS:
            raise _Stop from None

    def _frame_ends(self, partial: bytes) -> None:
        """A read reached the end of the current frame. Where it began exactly there, the
        unpickler goes on reading the stream; where it began inside, the unpicklers disagree
        (the C one drops the frame's last bytes and reads on, Python's raises, ``loads``
        reads straight on), so the scan cannot say which bytes would be read."""
        if partial:
            self.finding.unverifiable.append("an opcode across the end of a pickle frame")
            raise _Refuse
        self.frame = None

    def start_frame(self, size: int) -> None:
        if self.frame is not None and self.frame.tell() < self.frame_size:
            self.finding.unverifiable.append("a pickle frame inside another")
            raise _Refuse
        if size > _MAX_FRAME:  # Python's pickler writes frames of about 64 KiB
            self.finding.unverifiable.append(f"a pickle frame of {size} bytes")
            raise _Refuse
        self.frame = None
        data = self.read(size)  # the unpickler reads the frame whole, first
        if len(data) < size:  # the C unpickler fails here, Python's reads on: refused
            self.finding.unverifiable.append("a pickle frame longer than the data left")
            raise _Refuse
        self.frame, self.frame_size = io.BytesIO(data), size

    def _bytes(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) < n:
            raise _Stop
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            chunk = self.read(min(n, _CHUNK))
            if not chunk:
                raise _Stop
            n -= len(chunk)

    def _counted(self, n: int) -> bytes | None:
        """The next ``n`` bytes, or None (skipped) when longer than any name."""
        if n > _MAX_NAME:
            self._skip(n)
            return None
        return self._bytes(n)

    def _line(self) -> bytes | None:
        """A line without its newline, or None when longer than any name (skipped)."""
        line = self.readline(_MAX_NAME + 1)
        if line.endswith(b"\n"):
            return line[:-1]
        if len(line) <= _MAX_NAME:
            raise _Stop  # the stream ended inside the line
        while not line.endswith(b"\n"):
            line = self.readline(_CHUNK)
            if not line:
                raise _Stop
        return None

    def _uint(self, n: int) -> int:
        return int.from_bytes(self._bytes(n), "little")

    def _int4(self) -> int:
        return struct.unpack("<i", self._bytes(4))[0]

    # -- the stack -----------------------------------------------------------------------------
    def push(self, value: Any) -> None:
        self.items += 1
        if self.items > _MAX_ITEMS:
            self.finding.unverifiable.append(f"a pickle with more than {_MAX_ITEMS} stack items")
            raise _Refuse
        self.stack.append(value)

    def pop(self, n: int = 1) -> list[Any]:
        if len(self.stack) < n:
            raise _Stop  # stack underflow (a MARK is a floor: nothing below it is reachable)
        values = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        self.items -= n
        return values

    def top(self) -> Any:
        if not self.stack:
            raise _Stop
        return self.stack[-1]

    def pop_mark(self) -> None:
        if not self.metastack:
            raise _Stop  # could not find MARK
        self.items -= len(self.stack)
        self.stack = self.metastack.pop()

    def memoize(self, index: int) -> None:
        if index < 0:
            raise _Stop
        value = self.top()
        self.memo[index] = value
        if len(self.memo) > _MAX_ITEMS:
            self.finding.unverifiable.append(f"a pickle with more than {_MAX_ITEMS} memo entries")
            raise _Refuse

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise _Stop  # memo value not found
        self.push(self.memo[index])

    def string(self, value: str | None) -> None:
        self.push(_ANY if value is None else value)

    def py2_string(self, data: bytes | None) -> None:
        """A protocol 0-1 string: decoded with the loader's encoding (torch: utf-8, pickle:
        ascii, or kept as bytes), so only its ASCII value is the same for every loader."""
        self.push(data.decode("ascii") if data is not None and data.isascii() else _ANY)

    # -- naming globals ------------------------------------------------------------------------
    def name_global(self, module: str, name: str) -> None:
        if self.proto < 3:  # fix_imports, on by default in pickle and torch.load
            module, name = _py2_name(module, name)
        full = f"{module}.{name}"
        self.finding.globals.add(full)
        if "." in name:
            self.finding.dotted.add(full)

    def global_lines(self) -> None:
        module, name = self._line(), self._line()
        if module is None or name is None:
            self.finding.unverifiable.append("a global with a name longer than any module's")
            raise _Refuse
        try:
            self.name_global(module.decode("utf-8"), name.decode("utf-8"))
        except UnicodeDecodeError:
            raise _Stop from None

    def extension(self, code: int) -> None:
        if code <= 0:
            raise _Stop
        # an extension code names a global through copyreg's registry: loading it in this
        # process resolves it the same way, so check that global like any other
        known = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if known is None:
            self.finding.unverifiable.append(f"an extension code ({code}, not registered in "
                                             "this process)")
            raise _Refuse
        self.name_global(*known)
        self.push(_ANY)

    def stack_global(self) -> None:
        module, name = self.pop(2)
        if module is _OTHER or name is _OTHER:
            raise _Stop  # STACK_GLOBAL requires str
        if module is _ANY or name is _ANY:
            self.finding.unverifiable.append("STACK_GLOBAL with a computed name")
            raise _Refuse
        self.name_global(module, name)
        self.push(_ANY)

    # -- one opcode ----------------------------------------------------------------------------
    def step(self, code: int) -> bool:  # noqa: C901 - one branch per opcode, as the unpickler
        """Run one opcode; True at STOP."""
        op = chr(code)
        if op in _PUSH_OTHER:
            if op in "ILF":  # INT, LONG, FLOAT: a line the unpickler parses, any value
                self._line()
            elif op in _FIXED:
                self._bytes(_FIXED[op])
            self.push(_OTHER)
        elif op in _BYTES:
            size, signed = _BYTES[op]
            n = self._int4() if signed else self._uint(size)
            if n < 0:
                raise _Stop
            self._skip(n)
            self.push(_OTHER)
        elif op == "X":  # BINUNICODE
            self.unicode(self._uint(4))
        elif op == "\x8c":  # SHORT_BINUNICODE
            self.unicode(self._uint(1))
        elif op == "\x8d":  # BINUNICODE8
            self.unicode(self._uint(8))
        elif op == "V":  # UNICODE
            line = self._line()
            try:
                self.string(None if line is None else line.decode("raw-unicode-escape"))
            except UnicodeDecodeError:
                raise _Stop from None
        elif op == "S":  # STRING: quoted, with Python escapes
            line = self._line()
            if line is None:
                self.push(_ANY)
            elif len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
                raise _Stop
            else:
                try:
                    self.py2_string(codecs.escape_decode(line[1:-1])[0])
                except ValueError:
                    raise _Stop from None
        elif op == "U":  # SHORT_BINSTRING
            self.py2_string(self._counted(self._uint(1)))
        elif op == "T":  # BINSTRING
            n = self._int4()
            if n < 0:
                raise _Stop
            self.py2_string(self._counted(n))
        elif op == "(":  # MARK
            if len(self.metastack) >= _MAX_ITEMS:
                self.finding.unverifiable.append(f"a pickle with more than {_MAX_ITEMS} marks")
                raise _Refuse
            self.metastack.append(self.stack)
            self.stack = []
        elif op == "0":  # POP: the top item, or the mark when nothing is above it
            if self.stack:
                self.pop()
            else:
                self.pop_mark()
        elif op == "1":  # POP_MARK
            self.pop_mark()
        elif op == "2":  # DUP
            self.push(self.top())
        elif op == "\x94":  # MEMOIZE: at the number of entries, not past the highest index
            self.memoize(len(self.memo))
        elif op == "p":  # PUT
            self.memoize(self.decimal())
        elif op == "q":  # BINPUT
            self.memoize(self._uint(1))
        elif op == "r":  # LONG_BINPUT
            self.memoize(self._uint(4))
        elif op == "g":  # GET
            self.get(self.decimal())
        elif op == "h":  # BINGET
            self.get(self._uint(1))
        elif op == "j":  # LONG_BINGET
            self.get(self._uint(4))
        elif op == "c":  # GLOBAL
            self.global_lines()
            self.push(_ANY)
        elif op == "i":  # INST: a global, called with the items above the mark
            self.global_lines()
            self.pop_mark()
            self.push(_ANY)
        elif op == "\x93":  # STACK_GLOBAL
            self.stack_global()
        elif op == "\x82":  # EXT1
            self.extension(self._uint(1))
        elif op == "\x83":  # EXT2
            self.extension(self._uint(2))
        elif op == "\x84":  # EXT4
            self.extension(self._int4())
        elif op in _POP_PUSH:
            popped, pushed = _POP_PUSH[op]
            self.pop(popped)
            self.push(pushed)
        elif op == "a":  # APPEND: the item goes, the list stays
            self.pop()
            self.top()
        elif op == "s":  # SETITEM: the key and value go, the dict stays
            self.pop(2)
            self.top()
        elif op in "eu\x90":  # APPENDS, SETITEMS, ADDITEMS: the items above the mark go
            self.pop_mark()
            self.top()
        elif op == "b":  # BUILD: the state goes, the object stays
            self.pop()
            self.top()
        elif op in "tld\x91":  # TUPLE, LIST, DICT, FROZENSET: the items above the mark
            self.pop_mark()
            self.push(_OTHER)
        elif op == "o":  # OBJ: a class and its arguments above the mark
            if not self.stack:
                raise _Stop
            self.pop_mark()
            self.push(_ANY)
        elif op == "P":  # PERSID
            self._line()
            self.push(_ANY)
        elif op == "\x80":  # PROTO
            proto = self._uint(1)
            if proto > pickle.HIGHEST_PROTOCOL:
                raise _Stop
            self.proto = proto
        elif op == "\x95":  # FRAME
            self.start_frame(self._uint(8))
        elif op == ".":  # STOP
            self.pop()
            return True
        else:
            raise _Stop  # not an opcode: the unpickler fails here too
        return False

    def unicode(self, n: int) -> None:
        data = self._counted(n)
        try:
            self.string(None if data is None else data.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise _Stop from None

    def decimal(self) -> int:
        line = self._line()
        if line is None:
            self.finding.unverifiable.append("a memo index longer than any number")
            raise _Refuse
        try:
            return int(line, 10)
        except ValueError:
            raise _Stop from None

    def run(self) -> bool:
        while True:
            code = self.read(1)
            if not code:
                return False  # the unpickler needs STOP; it fails at the end of data
            if self.step(code[0]):
                return True


#: Opcodes that push a value that is surely not a str, and their fixed argument sizes.
_FIXED = {"J": 4, "K": 1, "M": 2, "G": 8}
_PUSH_OTHER = frozenset("ILFJKMGN\x88\x89])}\x8f")  # numbers, None, bools, empty containers
#: Opcodes followed by a byte count: (size of the count, signed).
_BYTES = {"B": (4, False), "C": (1, False), "\x8e": (8, False), "\x96": (8, False),
          "\x8a": (1, False), "\x8b": (4, True)}
#: Opcodes that pop some items and push one value.
_POP_PUSH = {"\x85": (1, _OTHER), "\x86": (2, _OTHER), "\x87": (3, _OTHER),  # TUPLE1..3
             "R": (2, _ANY), "\x81": (2, _ANY), "\x92": (3, _ANY),  # REDUCE, NEWOBJ, NEWOBJ_EX
             "Q": (1, _ANY), "\x97": (0, _ANY), "\x98": (1, _OTHER)}  # BINPERSID, buffers


def scan_pickle(stream: IO[bytes], finding: PickleFinding) -> bool:
    """Run one pickle from ``stream`` into ``finding``; True if it ended with STOP.

    A stream the real unpickler would fail on stops the scan where it would fail, with the
    globals named up to there; a stream the scan cannot follow adds to ``unverifiable``.
    """
    try:
        return _Machine(stream, finding).run()
    except (_Stop, _Refuse):
        return False


def _scan_bytes_source(opener: Iterable[IO[bytes]], finding: PickleFinding) -> None:
    for stream in opener:
        with stream:
            for _ in range(_MAX_STREAMS):
                if not scan_pickle(stream, finding):
                    break


def raw_payloads(zf: zipfile.ZipFile) -> set[str]:
    """Members torch reads as raw tensor bytes and never unpickles (see the module's notes)."""
    names = set(zf.namelist())
    raw: set[str] = set()
    for name in names:
        if name == "data.pkl" or name.endswith("/data.pkl"):  # torch.save, TorchScript
            storages = name[: -len("data.pkl")] + "data/"
            raw |= {n for n in names if n.startswith(storages) and "/" not in n[len(storages):]}
    plain: set[str] = set()
    pickled: set[str] = set()
    for info in zf.infolist():  # a .pt2's payload configs: data/{weights,constants}/*.json
        folder, _, base = info.filename.rpartition("/")
        kind = folder.rpartition("/")[2]
        if kind not in ("weights", "constants") or not base.endswith(f"_{kind}_config.json"):
            continue
        if not folder.endswith(f"data/{kind}") or info.file_size > _MAX_CONFIG_BYTES:
            continue
        try:
            entries = [(f"{folder}/{e['path_name']}", e.get("use_pickle") is False)
                       for e in json.loads(zf.read(info)).get("config", {}).values()]
        except (ValueError, AttributeError, KeyError, TypeError, OSError, zipfile.BadZipFile):
            continue  # a config torch could not read either: its payloads stay scanned
        for path, is_plain in entries:
            (plain if is_plain else pickled).add(path)
    return raw | ((plain - pickled) & names)


def _scan_zip(zf: zipfile.ZipFile, finding: PickleFinding, depth: int,
              torchscript: bool = False) -> None:
    raw = raw_payloads(zf)
    for info in zf.infolist():
        if info.is_dir() or (torchscript and _is_script_source(info.filename)):
            continue
        if _AOTI_DIR in f"/{info.filename}" and depth == 1:
            finding.compiled.append(info.filename)
            continue
        if info.filename in raw:  # tensor bytes: read as such, never unpickled
            continue
        with zf.open(info) as fh:
            head = fh.read(4)
        if head == b"PK\x03\x04" and depth < _MAX_DEPTH:
            with zf.open(info) as fh:
                data = fh.read()
            try:
                inner = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                inner = None
            if inner is not None:
                with inner:
                    _scan_zip(inner, finding, depth + 1, torchscript)
                continue
        elif head == b"PK\x03\x04":
            finding.unverifiable.append(f"archives nested deeper than {_MAX_DEPTH}")
            continue
        _scan_bytes_source([zf.open(info)], finding)


def _is_script_source(name: str) -> bool:
    """TorchScript's compiled sources (``code/__torch__/....py``): text that torch.jit
    compiles with its own compiler, never unpickled (it would parse as protocol-0 opcodes)."""
    return "/code/" in f"/{name}" and name.endswith(".py")


def scan_file(path: Path, torchscript: bool = False) -> PickleFinding:
    """Every global that unpickling any part of ``path`` could import."""
    finding = PickleFinding()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                _scan_zip(zf, finding, 1, torchscript)
        else:
            _scan_bytes_source([path.open("rb")], finding)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"cannot read model file {path}: {exc}") from None
    return finding


def refusal(finding: PickleFinding, *, torchscript: bool = False) -> str | None:
    """Why loading what ``finding`` describes could run code named in the file (the globals
    outside torch's allow-list, or what the scan could not verify); None when it could not.

    ``torchscript``: the archive is TorchScript, whose ``__torch__`` classes are resolved by
    torch.jit's own loader, never imported from Python.
    """
    if finding.compiled:
        return f"compiled code that loading would run: {finding.compiled[0]}"
    named = {g for g in finding.globals if not (torchscript and g.startswith(_SCRIPT_PREFIXES))}
    # a dotted attribute path reaches through objects (torch.serialization.os.system): torch
    # itself never writes one, and the allow-list's names say nothing about where it leads
    bad = sorted({g for g in named if surely_forbidden(g)} | (finding.dotted & named))
    if not bad and named and not finding.unverifiable:  # only now is torch's own list needed
        allowed = allowed_globals()
        bad = sorted(g for g in named if g not in allowed)
    if bad:
        return ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
    return finding.unverifiable[0] if finding.unverifiable else None


def check_model_file(path: Path, *, torchscript: bool = False) -> None:
    """Refuse ``path`` (UnsafeFileError) if loading it could run code named in the file.

    ``torchscript``: the archive is TorchScript, whose ``__torch__`` classes are resolved by
    torch.jit's own loader, never imported from Python.
    """
    finding = scan_file(path, torchscript)
    what = refusal(finding, torchscript=torchscript)
    if what is not None:
        kind = "an AOTInductor package" if finding.compiled else "a pickle"
        raise UnsafeFileError(f"{path} holds {kind} that would run code when loaded ({what}); "
                              "chipfit refuses it: save the model with torch.export.save or "
                              "torch.jit.save from plain tensors, or re-run with --trust-pickle "
                              "only if you trust where the file came from (unpickling runs "
                              "whatever code the file names)")


# ---- the loader: torch.export.load with nothing unpickled beyond weights-only --------------------
#: Held while a model file loads: the switches below are process-wide, so a trusted load in
#: one thread must not run while another thread's load has them set (or the reverse).
LOAD_LOCK = threading.RLock()
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_FORCE_FULL = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # both set is an error in torch.load
#: The loggers torch.export.load reports through (a failed load logs a traceback as a warning).
_EXPORT_LOGGERS = ("torch.export", "torch._export.serde.serialize",
                   "torch.export.pt2_archive._package")


class _Refused(Exception):
    """An export member that only full unpickling (or native code) could load."""


def _refuser(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _Refused(what)

    return refuse


class _NoUnpickling(types.ModuleType):
    """``pickle`` as the export loader sees it: everything but unpickling."""

    def __init__(self) -> None:
        super().__init__("pickle")
        refuse = _refuser("a Python object stored with pickle (an opaque constant)")
        self.loads = self.load = self.Unpickler = self._loads = self._load = refuse
        self._Unpickler = refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)


class _Capture(logging.Handler):
    """Keeps what the export loader logs, for the one-line error, instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


@contextlib.contextmanager
def _quiet_export_logs() -> Iterator[_Capture]:
    capture = _Capture()
    saved = []
    for name in _EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers, logger.propagate, logger.disabled))
        logger.handlers, logger.propagate, logger.disabled = [capture], False, False
    try:
        yield capture
    finally:
        for logger, handlers, propagate, disabled in saved:
            logger.handlers, logger.propagate, logger.disabled = handlers, propagate, disabled


#: What a .pt2's symbolic shapes are written with (``sympy.srepr``, or ``str`` in older
#: archives): torch.export.load hands each expression to ``sympy.sympify``, which ``eval()``s
#: it. Only calls to these (and the functions torch adds, passed as ``locals``) pass.
_SYMPY_CALLS = frozenset({
    "Symbol", "Dummy", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min",
    "Abs", "floor", "ceiling", "sqrt", "sign", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality",
    "Unequality", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "And", "Or",
    "Not", "Xor", "ITE", "Piecewise", "ExprCondPair", "Tuple"})
#: Calls whose second argument is an exponent or a shift: a large one is work without bound.
_SYMPY_EXPONENTS = frozenset({"Pow", "PowByNatural", "FloatPow", "LShift", "RShift"})
_SYMPY_NODES = (ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.Tuple,
                ast.keyword, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.operator,
                ast.unaryop, ast.boolop, ast.cmpop)
_SYMPY_MAX_CHARS = 10_000
_SYMPY_MAX_EXPONENT = 64
_SYMBOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_FLOAT_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|[-+]?inf|nan", re.IGNORECASE)


def _small_exponent(node: ast.AST) -> bool:
    """A literal exponent no larger than 64 (``2``, ``-1``, ``Integer(2)``, ``Rational(1, 2)``)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _small_exponent(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords \
            and node.func.id in ("Integer", "Rational") and 1 <= len(node.args) <= 2:
        return all(_small_exponent(arg) for arg in node.args)
    return (isinstance(node, ast.Constant) and type(node.value) is int
            and abs(node.value) <= _SYMPY_MAX_EXPONENT)


def _plain_sym_expr(text: str, functions: Iterable[str]) -> bool:
    """Whether ``text`` is arithmetic on symbols and numbers that sympy can build without
    running anything else: calls only to sympy's and torch's expression classes, no
    attribute, subscript, lambda or star; strings only as a symbol's name or a float's
    digits (sympy parses other strings with ``eval``); exponents and shifts small literals."""
    if len(text) > _SYMPY_MAX_CHARS:
        return False
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    calls = _SYMPY_CALLS | set(functions)
    strings: set[int] = set()  # the string constants in a place where they are names or digits
    for node in ast.walk(tree):
        if not isinstance(node, _SYMPY_NODES):
            return False
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in calls or any(k.arg is None for k in node.keywords):
                return False
            if name in _SYMPY_EXPONENTS and (len(node.args) != 2
                                             or not _small_exponent(node.args[1])):
                return False
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and (
                    name in ("Symbol", "Dummy") and _SYMBOL_NAME.fullmatch(first.value)
                    or name == "Float" and _FLOAT_TEXT.fullmatch(first.value)):
                strings.add(id(first))
            if any(not isinstance(k.value, ast.Constant) or type(k.value.value) not in (bool, int)
                   for k in node.keywords):
                return False
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.LShift, ast.RShift)):
            if not _small_exponent(node.right):
                return False
        elif isinstance(node, ast.Name) and node.id.startswith("_"):
            return False
        elif isinstance(node, ast.Constant) and not (
                type(node.value) in (bool, int, float) or id(node) in strings):
            return False
        if isinstance(node, ast.Constant) and type(node.value) is int \
                and abs(node.value) > 2**64:
            return False
    return True


class _CheckedSympy(types.ModuleType):
    """``sympy`` as the export deserializer sees it: ``sympify`` of a string checked first."""

    def __init__(self, real: types.ModuleType) -> None:
        super().__init__("sympy")
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def sympify(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and not _plain_sym_expr(value, kwargs.get("locals") or ()):
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise _Refused(f"a symbolic shape that is code, not arithmetic ({shown!r})")
        return self._real.sympify(value, *args, **kwargs)


#: Builtins that code FX generates from a graph uses (``getattr(self, "odd-name")``,
#: ``slice(...)`` for a slice argument); everything else it calls is in its globals.
_FX_BUILTINS = frozenset({"getattr", "slice", "Ellipsis"})
_FX_NEVER = (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import,
             ast.ImportFrom, ast.Global, ast.Nonlocal, ast.With, ast.AsyncWith, ast.Try, ast.While,
             ast.For, ast.AsyncFor, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr,
             ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.JoinedStr)


def _plain_graph_source(src: str, names: Iterable[str]) -> bool:
    """Whether ``src`` is what FX generates from a graph: functions whose parameters have no
    defaults or annotations, whose bodies name only their parameters, their own locals, the
    globals FX passes (``names``: the graph's operators, torch, pytree) and ``getattr``/
    ``slice``, and reach no dunder attribute. A graph whose names carry code (a placeholder
    called ``x=open(...)`` is written into the source as is) fails; exec() would run it."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if not tree.body or not all(isinstance(stmt, ast.FunctionDef) for stmt in tree.body):
        return False
    outer = {n for n in names if not n.startswith("__")} | _FX_BUILTINS
    for fn in tree.body:
        args = fn.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs,
                  *(a for a in (args.vararg, args.kwarg) if a is not None)]
        if (fn.decorator_list or fn.returns is not None or args.defaults
                or any(d is not None for d in args.kw_defaults)
                or any(p.annotation is not None for p in params)):
            return False
        nodes = [node for stmt in fn.body for node in ast.walk(stmt)]
        known = outer | {p.arg for p in params} | {
            n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        for node in nodes:
            if isinstance(node, _FX_NEVER):
                return False
            if isinstance(node, ast.Name) and node.id not in known:
                return False
            if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
                return False
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith("__"):  # getattr(x, "__globals__")
                return False
    return True


def _checked_exec(real: Callable[..., Any]) -> Callable[..., Any]:
    def exec_with_source(src: str, globals: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not _plain_graph_source(src, globals):
            raise _Refused("a graph whose names are code (in the Python that torch generates "
                           "from it)")
        return real(src, globals, *args, **kwargs)

    return exec_with_source


def _check_graphs(*roots: Any) -> None:
    """Every graph input named as a Python identifier: FX writes these names into the code it
    generates as they are, at every recompile (after this load too). And every callable in a
    node's arguments an operator: the deserializer resolves an argument written as an operator
    by attribute lookups from ``torch`` (``torch.os.system``), and torch's verifier checks
    node targets, not arguments."""
    import torch
    from torch._export.serde.serialize import _SYM_OPS
    from torch.fx.node import map_aggregate

    operators = (torch.fx.Node, torch._ops.OpOverload, torch._ops.OpOverloadPacket,
                 torch._ops.HigherOrderOperator)

    def check_argument(value: Any) -> Any:
        if callable(value) and not isinstance(value, operators) and value not in _SYM_OPS:
            raise _Refused(f"a graph that passes {getattr(value, '__qualname__', type(value).__name__)} "
                           "to an operator, which is not one")
        return value

    for root in roots:
        for module in root.modules():
            graph = getattr(module, "graph", None)
            if not isinstance(graph, torch.fx.Graph):
                continue
            for node in graph.nodes:
                name = str(node.target).lstrip("*") if node.op == "placeholder" else "x"
                if not name.isidentifier() or keyword.iskeyword(name):
                    raise _Refused(f"a graph input named {str(node.target)[:40]!r}, which is not "
                                   "a name but code")
                map_aggregate((node.args, node.kwargs), check_argument)


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """While inside, ``torch.export.load`` unpickles nothing beyond weights-only, and runs no
    code from the archive.

    Every ``torch.load`` is weights-only through torch's own switch
    (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, read at each call, stronger than an explicit
    ``weights_only=False``), so the export loader's fallback to full unpickling fails as its
    first try did. The loads that are not ``torch.load`` are refused where the export loader
    looks them up (torch/export/pt2_archive/_package.py): its module's ``pickle`` (opaque
    Python constants), ``torch._C._pickle_load_obj`` (TorchScript-object constants), and its
    ``_load_aoti`` (an AOTInductor library it would dlopen). The deserializer's ``sympy``
    (torch/_export/serde/serialize.py) checks each symbolic shape before ``sympify`` evaluates
    it (:func:`_plain_sym_expr`), and FX's ``_exec_with_source`` (torch/fx/graph_module.py)
    the Python it generates from a graph before exec() runs it (:func:`_plain_graph_source`).
    All are put back on the way out.
    """
    import torch
    import torch.fx.graph_module as fx_module
    from torch._export.serde import serialize
    from torch.export.pt2_archive import _package

    patches = [(_package, "pickle", _NoUnpickling()),
               (serialize, "sympy", _CheckedSympy(serialize.sympy)),
               (fx_module, "_exec_with_source", _checked_exec(fx_module._exec_with_source)),
               (torch._C, "_pickle_load_obj", _refuser("a TorchScript object stored with its "
                                                       "pickler (a custom-class constant)")),
               (_package, "_load_aoti", _refuser("compiled native code (an AOTInductor "
                                                  "package) that loading would run"))]
    with LOAD_LOCK:
        env = {name: os.environ.get(name) for name in (_FORCE_WEIGHTS_ONLY, _FORCE_FULL)}
        missing = [f"{owner.__name__}.{name}" for owner, name, _ in patches
                   if not hasattr(owner, name)]
        if missing:  # another torch: its loader may reach the same code by other names
            raise _Refused(f"an exported program, which this torch ({torch.__version__}) "
                           f"loads by means chipfit cannot guard (no {missing[0]})")
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        try:
            os.environ[_FORCE_WEIGHTS_ONLY] = "1"
            os.environ.pop(_FORCE_FULL, None)
            for owner, name, value in patches:
                setattr(owner, name, value)
            yield
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)
            for name, value in env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def load_exported(path: Path, *, trust_pickle: bool = False) -> tuple[Any, Any]:
    """``torch.export.load(path)`` and its program's module; without ``trust_pickle``, both
    under :func:`weights_only_loading`, the module without the guard function torch would
    compile from the archive's own code strings (``guards_code``: exec()'d as they are), and
    every graph's inputs checked to be names.

    Raises UnsafeFileError (one line, naming ``--trust-pickle``) for an archive that needs
    more than weights-only unpickling or carries code, InvalidInputError for one torch cannot
    read.
    """
    import torch

    with LOAD_LOCK, _quiet_export_logs() as logged:
        try:
            if trust_pickle:
                program = torch.export.load(str(path))
                return program, program.module()
            with weights_only_loading():
                program = torch.export.load(str(path))
                module = program.module(check_guards=False)  # input checks by a pre-hook
                _check_graphs(program.graph_module, module)
                return program, module
        except _Refused as exc:
            raise UnsafeFileError(_needs_trust(path, str(exc))) from None
        except pickle.UnpicklingError as exc:
            if trust_pickle:
                raise InvalidInputError(f"{path} is a damaged torch.export archive (a pickle in "
                                        f"it could not be read: {_first_line(exc)})") from None
            raise UnsafeFileError(_needs_trust(path, "a pickle that torch's weights-only loader "
                                               f"refuses: {_weights_only_reason(exc)}")) from None
        except Exception as exc:  # noqa: BLE001 - torch raises anything on a damaged archive
            cause = logged.errors[-1] if logged.errors else exc
            raise InvalidInputError(f"{path} is a damaged torch.export archive "
                                    f"({type(cause).__name__}: {_first_line(cause)})") from None


def _needs_trust(path: Path, what: str) -> str:
    return (f"{path} holds {what}; chipfit loads .pt2 archives without running code from them "
            "and refuses it: export the model from plain tensors, or re-run with --trust-pickle "
            "only if you trust where the file came from (loading it runs whatever code the file "
            "names)")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _weights_only_reason(exc: BaseException) -> str:
    """The reason inside torch's long weights-only error (``Unsupported global: ...``)."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:160]
