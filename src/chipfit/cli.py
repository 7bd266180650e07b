"""The command line: the one place that parses argv, prints, and picks exit codes.

Exit codes: 0 success; 1 an unexpected failure; 2 a user mistake (bad flag, unknown name,
malformed file, unusable output path) with a one-line message; 130 interrupted by Ctrl-C and
143 stopped by SIGTERM (either way what was measured is kept and the run is marked
interrupted, so ``--resume`` continues it; a second signal is absorbed, see :class:`_Signals`).

Whatever reaches the console degrades instead of failing: characters its encoding lacks are
written as ASCII, and text from files or the command line cannot act on the terminal
(:func:`chipfit.report.fmt.clean`, :class:`chipfit.commands._common.SafeConsole`).
"""

from __future__ import annotations

import argparse
import atexit
import codecs
import contextlib
import importlib
import io
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence

from chipfit import commands
from chipfit._version import __version__
from chipfit.errors import ChipfitError

__all__ = ["main"]

# Every public module in chipfit.commands registers one subcommand with register(subparsers),
# which sets func(args) -> exit code. ORDER (default 50) sorts them in --help.


class _Parser(argparse.ArgumentParser):
    """argparse, but a user mistake is one line and exit code 2, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from chipfit.report.fmt import clean

        first = message.strip().splitlines()[0] if message.strip() else message
        sys.stderr.write(clean(f"{self.prog}: error: {first} (see {self.prog} --help)") + "\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chipfit", description="Which processor should run this model - CPU, "
                     "GPU or TPU - at which batch size, and why.")
    parser.add_argument("--version", action="version", version=f"chipfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = [importlib.import_module(f"chipfit.commands.{info.name}")
               for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_")]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM, idempotent. The first one interrupts (KeyboardInterrupt,
    so every saver and store on the way out runs, and the exit code says which signal it
    was: 130 or 143); every later one, of either kind, is absorbed while that saving goes on.

    When chipfit runs as a program, signals stay absorbed once :func:`main` has returned, so
    one that lands while the interpreter exits (threads joined, atexit callbacks) neither kills
    the process with the signal nor prints a traceback from an exit callback, and the exit
    code stays the one main returned. The exit cannot hide behind that: after a signal (or
    an interrupted run) the process ends within :attr:`EXIT_GRACE_S` whatever it waits on,
    with that code. For the interpreter's own teardown, after every atexit callback, both are
    ignored outright (Python takes its handlers down there).

    A signal the parent had chipfit ignore (``nohup``, a background job) stays ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    #: Seconds an exit may take once a signal asked for it before the process ends anyway.
    EXIT_GRACE_S = 10.0

    def __init__(self) -> None:
        self.first: int | None = None
        self.previous: dict[int, object] = {}
        self.code = 1
        self._deadline: threading.Timer | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.first is None:
            self.first = signum
            raise KeyboardInterrupt

    @property
    def terminated(self) -> bool:
        """Whether the interrupting signal was SIGTERM."""
        return self.first == signal.SIGTERM

    def install(self) -> None:
        for sig in self.SIGNALS:
            try:
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue
                self.previous[sig] = signal.signal(sig, self)
            except ValueError:  # not the main thread (main() called from a library's thread)
                return

    def restore(self) -> None:
        """The handlers as they were (main() called in-process: tests, scripts)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def exiting(self, code: int) -> None:
        """main() returned ``code`` and the process exits next: absorb every signal from now
        on, and bound the exit once one has come (or the run was interrupted)."""
        self.code = code
        for sig in self.previous:
            signal.signal(sig, self._late)
        if self.first is not None:
            self._bound_exit()

    def _late(self, signum: int, frame: object) -> None:
        self._bound_exit()

    def _bound_exit(self) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(self.EXIT_GRACE_S, _hard_exit, (self.code,))
            self._deadline.daemon = True
            self._deadline.start()

    def ignore(self) -> None:
        """Ignore both from now on: SIG_IGN also holds once Python has taken its own signal
        handlers down, in the interpreter's last steps."""
        for sig in self.previous:
            signal.signal(sig, signal.SIG_IGN)


def _hard_exit(code: int) -> None:
    """End the process with ``code`` now (an exit that hung after a signal)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: what a console's encoding cannot show, in ASCII (``±`` -> ``+-``)."""
    from chipfit.report.fmt import ascii_for

    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(ascii_for(c) for c in exc.object[exc.start:exc.end]), exc.end


codecs.register_error("chipfit-ascii", _ascii_fallback)


def _console_streams() -> list[tuple[io.TextIOWrapper, str]]:
    """Make stdout and stderr degrade instead of raising UnicodeEncodeError on a console whose
    encoding lacks a character (``PYTHONIOENCODING=ascii``, a Latin-1 terminal): each such
    character is written as ASCII (:func:`chipfit.report.fmt.ascii_for`). Returns what to
    restore."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            try:
                stream.reconfigure(errors="chipfit-ascii")
            except (ValueError, OSError):  # closed, or already written to in an odd way
                continue
            changed.append((stream, "strict"))
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Run chipfit with ``argv`` (default: the process's arguments); the exit code.

    Called without ``argv`` it is the program (``chipfit``, ``python -m chipfit``): signals stay
    absorbed after it returns, while the process exits (:class:`_Signals`). Called with
    ``argv`` (tests, scripts) it leaves the process's signal handlers and streams as it found
    them."""
    program = argv is None
    signals = _Signals()
    signals.install()
    if program:  # registered before any framework's: runs after theirs, as Python tears down
        atexit.register(signals.ignore)
    streams = _console_streams()
    code = 1
    try:
        try:
            code = _run(argv, signals)
        except KeyboardInterrupt:  # the signal landed while an error was being reported
            code = _interrupted(signals)
        except SystemExit as exc:  # argparse: --help, a usage error
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            raise
        return code
    finally:
        if program:
            signals.exiting(code)
        else:
            signals.restore()
            for stream, errors in streams:
                stream.reconfigure(errors=errors)


def _interrupted(signals: _Signals) -> int:
    _one_line("chipfit: terminated (SIGTERM)" if signals.terminated else "chipfit: interrupted")
    return 143 if signals.terminated else 130


def _run(argv: Sequence[str] | None, signals: _Signals) -> int:
    from chipfit.commands._common import (
        apply_catalog_flags,
        check_list_flags,
        check_output_flags,
    )

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        check_list_flags(args)  # empty lists, duplicates, malformed device ids: one line each
        check_output_flags(args)  # before any measuring: a bad path must not cost a run
        apply_catalog_flags(args)  # --catalog / --price-basis: read and checked up front
        code = int(args.func(args) or 0)
        return 143 if code == 130 and signals.terminated else code
    except ChipfitError as exc:
        _one_line(f"chipfit: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(signals)
    except BrokenPipeError:
        return 0
    except MemoryError:
        _one_line("chipfit: error: out of host memory; try a smaller size or batch")
        return 1
    except RuntimeError as exc:  # a framework's allocator failing is the same mistake
        if not _allocation_failed(exc):
            raise
        _one_line("chipfit: error: out of host memory (a framework could not allocate what "
                  "this size needs); try a smaller size or batch")
        return 1
    except OSError as exc:  # a file or device problem nothing below anticipated
        where = f" ({exc.filename})" if exc.filename else ""
        _one_line(f"chipfit: error: {exc.strerror or exc}{where}")
        return 1


#: How frameworks word an allocation that failed (torch's CPU and CUDA allocators, XLA).
_ALLOCATION_FAILED = ("can't allocate memory", "DefaultCPUAllocator", "out of memory",
                      "RESOURCE_EXHAUSTED")


def _allocation_failed(exc: BaseException) -> bool:
    text = str(exc)
    return any(words in text for words in _ALLOCATION_FAILED)


def _one_line(message: str) -> None:
    """Errors are one line: a multi-line message (a framework's) keeps its first line, and
    what it quotes of the user's text or a file's cannot act on the terminal (escaped)."""
    from chipfit.report.fmt import clean

    first = message.strip().splitlines()[0] if message.strip() else message
    sys.stderr.write(clean(first) + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
