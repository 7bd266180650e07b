"""``chipfit show``: one stored run in full, and its export to JSON or CSV."""

from __future__ import annotations

import argparse

from chipfit.commands._common import add_db_flag, err, load_run_ref, out

ORDER = 71


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show one run from the results database")
    p.add_argument("run", nargs="?", default="latest",
                   help="run id (or a unique prefix, latest, latest~1, or a results .json file; "
                   "default: latest)")
    add_db_flag(p)
    p.add_argument("--json", metavar="PATH", help="also write the run as JSON to PATH "
                   "(raw samples included; `-` for standard output)")
    p.add_argument("--csv", metavar="PATH", help="also write one row per measurement to PATH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.report.history_view import run_header
    from chipfit.report.terminal import bench_table, problems_table
    from chipfit.store.runs import run_to_dict, save_run, write_csv

    found = load_run_ref(args, args.run)
    if args.json == "-":
        from chipfit.commands._common import print_json

        print_json(run_to_dict(found))
        return 0
    out.print(run_header(found))
    from chipfit.pipelines.endpoint import COMMAND

    if found.command == COMMAND:  # a measured LLM server: its statistics, not one row each
        from chipfit.pipelines.endpoint import report_of_run
        from chipfit.report.endpoint_view import measured_table

        stats = report_of_run(found)
        out.print(measured_table(stats))
        for kind, n in stats.errors:
            out.print(f"failed: {n} x {kind}")
    elif found.measurements:
        out.print(bench_table(found))
    from chipfit.analysis.trust import warning

    busy = warning(found.measurements)
    if busy:
        err.print(f"warning: {busy}", markup=False, soft_wrap=True)
    if found.discovery.problems:
        out.print(problems_table(found.discovery))
    for path in ([save_run(found, args.json)] if args.json else []) + (
            [write_csv([found], args.csv)] if args.csv else []):
        err.print(f"wrote {path}")
    return 0
