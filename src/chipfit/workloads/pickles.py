"""Inspect pickles before anything unpickles them.

Unpickling runs code: a pickle names callables (``GLOBAL``/``STACK_GLOBAL``/``INST``
opcodes) that the unpickler imports and calls. torch's own safe path, ``torch.load(...,
weights_only=True)``, allows only a list of tensor-rebuilding globals, but other loaders fall
back to full unpickling: ``torch.export.load`` unpickles a ``.pt2``'s example inputs with
``weights_only=False`` when the safe load fails, and its pickled weights and constants
always. So chipfit reads every pickle stream in a model file with :mod:`pickletools` (which
parses opcodes and calls nothing) and refuses any global outside the allow-list of torch's
weights-only unpickler, before any loader sees the file.

Every member of a zip archive is scanned (pickles hide in ``.pkl`` members, in nested
``torch.save`` archives, and in weight files marked ``use_pickle``), whatever its name or
first byte: a protocol-0 pickle needs no header. A member that is not a pickle stops the
scan at its first invalid opcode, having named no global; a stream that names a forbidden
global before going bad is refused, since a real unpickler would have called it by then.

The one exception is tensor data that torch reads as raw bytes and never unpickles: the
storages ``P/data/KEY`` beside a ``P/data.pkl`` (``torch.save``, TorchScript), and a
``.pt2``'s weights and constants that its own configs mark ``use_pickle: false`` (a path
that any entry marks pickled is scanned). Read as opcodes, random weights name extension
codes or computed globals often enough (7% of small state dicts) to refuse good files.
"""

from __future__ import annotations

import copyreg
import io
import json
import pickletools
import zipfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import IO

from chipfit.errors import InvalidInputError, UnsafeFileError

__all__ = ["PickleFinding", "allowed_globals", "check_model_file", "scan_file", "scan_pickle",
           "surely_forbidden"]

#: Python 2 module names that pickles still carry (protocol 2), as the unpickler maps them.
_RENAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
#: TorchScript archives name their compiled classes ``__torch__.*``; torch.jit.load resolves
#: them to TorchScript types only (never to Python code), so they are allowed there.
_SCRIPT_PREFIXES = ("__torch__.", "torch.jit._pickle.")
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})
_MEMO_OPS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_EXT_OPS = frozenset({"EXT1", "EXT2", "EXT4"})
_MAX_DEPTH = 3  # nested archives: a .pt2 holds torch.save archives; deeper is suspicious
_MAX_STREAMS = 16  # pickles read one after another from a legacy (non-zip) torch.save file
_MAX_CONFIG_BYTES = 64 << 20  # a .pt2 payload config larger than this is not read (all scanned)


class PickleFinding:
    """What a scan found: globals named, and anything the scan could not verify."""

    def __init__(self) -> None:
        self.globals: set[str] = set()
        self.unverifiable: list[str] = []


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


def scan_pickle(stream: IO[bytes], finding: PickleFinding) -> bool:
    """Read one pickle from ``stream`` into ``finding``; True if it ended with STOP."""
    recent: list[str] = []  # strings pushed just before, for STACK_GLOBAL's module and name
    memo: dict[int, str] = {}  # memoised strings: a repeated module name comes back by GET
    stored = 0  # entries memoised so far (MEMOIZE's implicit index)
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in _MEMO_OPS:
                index = stored if arg is None else int(arg)
                stored = max(stored, index + 1)
                if recent:  # the object on top is the string just pushed
                    memo[index] = recent[-1]
                else:
                    memo.pop(index, None)
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                finding.globals.add(f"{_RENAMES.get(module, module)}.{attr}")
            elif name == "STACK_GLOBAL":
                if len(recent) < 2:
                    finding.unverifiable.append("STACK_GLOBAL with a computed name")
                else:
                    finding.globals.add(f"{_RENAMES.get(recent[-2], recent[-2])}.{recent[-1]}")
            elif name in _EXT_OPS:
                # an extension code names a global through copyreg's registry: loading it in
                # this process resolves it the same way, so check that global like any other
                known = copyreg._inverted_registry.get(int(arg))
                if known is None:
                    finding.unverifiable.append(f"{name} (copyreg extension code {arg}, not "
                                                "registered in this process)")
                else:
                    module, attr = known
                    finding.globals.add(f"{_RENAMES.get(module, module)}.{attr}")
            if name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else str(arg))
            elif name in _GET_OPS and int(arg) in memo:
                recent.append(memo[int(arg)])
            elif name not in _MEMO_OPS:
                recent = []
    except Exception:  # not (or no longer) a pickle: a real unpickler would stop here too
        return False
    return True


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


def check_model_file(path: Path, *, torchscript: bool = False) -> None:
    """Refuse ``path`` (UnsafeFileError) if loading it could run code named in the file.

    ``torchscript``: the archive is TorchScript, whose ``__torch__`` classes are resolved by
    torch.jit's own loader, never imported from Python.
    """
    finding = scan_file(path, torchscript)
    named = {g for g in finding.globals if not (torchscript and g.startswith(_SCRIPT_PREFIXES))}
    bad = sorted(g for g in named if surely_forbidden(g))
    if not bad and named and not finding.unverifiable:  # only now is torch's own list needed
        allowed = allowed_globals()
        bad = sorted(g for g in named if g not in allowed)
    if bad or finding.unverifiable:
        what = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "") if bad else (
            finding.unverifiable[0])
        raise UnsafeFileError(f"{path} holds a pickle that would run code when loaded ({what}); "
                              "chipfit refuses it: save the model with torch.export.save or "
                              "torch.jit.save from plain tensors, or re-run with --trust-pickle "
                              "only if you trust where the file came from (unpickling runs "
                              "whatever code the file names)")
