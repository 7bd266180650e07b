"""The command line: the one place that parses argv, prints, and picks exit codes.

Exit codes: 0 success; 1 an unexpected failure; 2 a user mistake (bad flag, unknown name,
malformed file) with a one-line message; 130 interrupted (what was measured is kept).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ChipfitError as exc:
        sys.stderr.write(f"chipfit: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("chipfit: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
