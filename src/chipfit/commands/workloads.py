"""``chipfit workloads``: the built-in workloads, one line each."""

from __future__ import annotations

import argparse

from chipfit.commands._common import out, print_json

ORDER = 15


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("workloads", help="list the built-in workloads (bench, sweep, predict, "
                       "advise take these names)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.report.terminal import workloads_table
    from chipfit.workloads import all_workloads

    found = all_workloads()
    if args.json:
        print_json([{"name": w.name, "size": w.axis, "modes": list(w.modes),
                     "description": w.description} for w in found])
    else:
        out.print(workloads_table(found))
    return 0
