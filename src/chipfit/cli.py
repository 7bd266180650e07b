"""The command line: the one place that parses argv, prints, and picks exit codes.

Exit codes: 0 success; 1 an unexpected failure; 2 a user mistake (bad flag, unknown name,
malformed file, unusable output path) with a one-line message; 130 interrupted by Ctrl-C and
143 stopped by SIGTERM (either way what was measured is kept and the run is marked
interrupted, so ``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
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
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
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


class _Terminated:
    """SIGTERM handled like Ctrl-C: the first one interrupts (KeyboardInterrupt, so every
    saver and store on the way out runs), later ones are ignored while that saving goes on."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum: int, frame: object) -> None:
        if not self.seen:
            self.seen = True
            raise KeyboardInterrupt

    def install(self) -> object:
        """Handle SIGTERM; returns the previous handler (None where none can be set)."""
        try:
            return signal.signal(signal.SIGTERM, self)
        except ValueError:  # not the main thread (main() called from a library's thread)
            return None


def main(argv: Sequence[str] | None = None) -> int:
    terminated = _Terminated()
    previous = terminated.install()
    try:
        return _run(argv, terminated)
    finally:
        if previous is not None:  # main() called in-process (tests, scripts) leaves no trace
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def _run(argv: Sequence[str] | None, terminated: _Terminated) -> int:
    from chipfit.commands._common import check_output_flags

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        check_output_flags(args)  # before any measuring: a bad path must not cost a run
        code = int(args.func(args) or 0)
        return 143 if code == 130 and terminated.seen else code
    except ChipfitError as exc:
        _one_line(f"chipfit: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _one_line("chipfit: terminated (SIGTERM)" if terminated.seen else "chipfit: interrupted")
        return 143 if terminated.seen else 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        _one_line("chipfit: error: out of host memory; try a smaller size or batch")
        return 1
    except OSError as exc:  # a file or device problem nothing below anticipated
        where = f" ({exc.filename})" if exc.filename else ""
        _one_line(f"chipfit: error: {exc.strerror or exc}{where}")
        return 1


def _one_line(message: str) -> None:
    """Errors are one line: a multi-line message (a framework's) keeps its first line."""
    first = message.strip().splitlines()[0] if message.strip() else message
    sys.stderr.write(first + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
