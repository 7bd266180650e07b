"""``chipfit runs``: the history of runs kept in the results database."""

from __future__ import annotations

import argparse

from chipfit.commands._common import add_db_flag, open_db, out, print_json, warn_skipped

ORDER = 70


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the runs kept in the results database")
    add_db_flag(p)
    p.add_argument("--limit", "-n", type=int, default=20,
                   help="show the newest N runs (default 20; 0 for all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--wide", action="store_true", help="also show the machine and versions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.errors import InvalidInputError
    from chipfit.report.history_view import runs_table, summary_dict

    if args.limit < 0:
        raise InvalidInputError("--limit must be 0 (all) or more")
    with open_db(args) as store:
        summaries = store.list_runs(args.limit or None)
        where = str(store.path)
        warn_skipped(store)
    if args.json:
        print_json([summary_dict(s) for s in summaries])
    elif summaries:
        out.print(runs_table(summaries, where, wide=args.wide))
    else:
        out.print(f"no runs in {where} yet: `chipfit bench` makes one")
    return 0
