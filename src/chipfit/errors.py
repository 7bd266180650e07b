"""chipfit's one exception tree.

Library code raises these; only :mod:`chipfit.cli` turns them into a one-line message and an
exit code. Every message says what to do next.

    ChipfitError
    ├── UsageError                 a user mistake: exit code 2, no traceback
    │   ├── UnknownNameError       an unknown device, workload, dtype, catalog key ...
    │   ├── InvalidInputError      a malformed size, shape, flag value or file
    │   └── UnsafeFileError        a file that would run code when loaded (pickle)
    ├── BackendUnavailableError    a framework or device that is not usable here
    ├── UnsupportedError           a valid combination this device cannot run (dtype, mode)
    ├── OutOfMemoryError           a run that does not fit in the device's memory
    ├── UnreliableError            a measurement too disturbed to keep (a calibration that
    │                              misses its own checks)
    └── SchemaError                a stored file from a newer (or unknown) chipfit
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BackendUnavailableError",
    "ChipfitError",
    "InvalidInputError",
    "OutOfMemoryError",
    "SchemaError",
    "UnknownNameError",
    "UnreliableError",
    "UnsafeFileError",
    "UnsupportedError",
    "UsageError",
]


class ChipfitError(Exception):
    """Base of every error chipfit raises on purpose."""

    exit_code = 1


class UsageError(ChipfitError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A name (device, workload, dtype, ...) that chipfit does not know."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(set(known))
        self.kind, self.name, self.known = kind, name, tuple(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {listing})")


class InvalidInputError(UsageError):
    """A value that is malformed: a size, a shape, a flag or a file."""


class UnsafeFileError(UsageError):
    """A file whose loading would execute arbitrary code."""


class BackendUnavailableError(ChipfitError):
    """A framework or a device that cannot be used on this machine."""

    exit_code = 2


class UnsupportedError(ChipfitError):
    """A valid request that this device or dtype does not support."""


class OutOfMemoryError(ChipfitError):
    """The work does not fit in the device's memory."""


class UnreliableError(ChipfitError):
    """A measurement too disturbed to keep: it is refused rather than stored or reused."""


class SchemaError(ChipfitError):
    """A stored file that this version of chipfit cannot read."""

    exit_code = 2
