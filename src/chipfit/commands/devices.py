"""``chipfit devices``: what can run here, and (with --verbose) why the rest cannot."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from chipfit.commands._common import out, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the processors the installed frameworks can use")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also show backends and devices that are unavailable, and why")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.discovery import discover
    from chipfit.report.terminal import devices_table, problems_table

    found = discover()
    if args.json:
        print_json({"devices": [asdict(d) for d in found.devices],
                    "problems": [asdict(p) for p in found.problems]})
        return 0
    out.print(devices_table(found))
    if args.verbose and found.problems:
        out.print(problems_table(found))
    elif found.problems:
        out.print(f"{len(found.problems)} backend(s)/device type(s) unavailable; "
                  "--verbose says why", style="dim")
    return 0
ORDER = 10
