"""``chipfit compare``: run B against baseline run A, point by point, with a rank test."""

from __future__ import annotations

import argparse

from chipfit.commands._common import (
    add_db_flag,
    err,
    finite_float,
    load_run_ref,
    print_json,
    show,
)

ORDER = 72


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two runs: ratios, significance, regressions")
    p.add_argument("run_a", metavar="RUN_A", help="the baseline: a run id (or unique prefix, "
                   "latest~1, ...) or a results .json file")
    p.add_argument("run_b", metavar="RUN_B", nargs="?", default="latest",
                   help="the run to judge (default: latest)")
    add_db_flag(p)
    p.add_argument("--threshold", type=finite_float, default=0.10,
                   help="smallest relative slowdown that counts as a regression, whatever the "
                   "noise floor (default 0.10 = 10%%)")
    p.add_argument("--noise", action="append", default=[], metavar="RUN",
                   help="another run of the baseline's work: the spread of the runs' medians "
                   "joins the noise floor (repeatable)")
    p.add_argument("--alpha", type=finite_float, default=0.01,
                   help="significance level of the Mann-Whitney U test (default 0.01)")
    p.add_argument("--view", choices=("resident", "end_to_end"), default="resident",
                   help="compare compute time only (default) or with host<->device copies")
    p.add_argument("--json", metavar="PATH", help="write the comparison as JSON (`-`: stdout)")
    p.add_argument("--csv", metavar="PATH", help="write one row per point to PATH")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit with status 1 when any point regressed (for CI)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.analysis.compare import compare_runs
    from chipfit.paths import write_json_atomic
    from chipfit.report.history_view import compare_dict, compare_table, write_compare_csv

    a, b = load_run_ref(args, args.run_a), load_run_ref(args, args.run_b)
    repeats = [load_run_ref(args, ref) for ref in args.noise]
    result = compare_runs(a, b, threshold=args.threshold, alpha=args.alpha, view=args.view,
                          noise_runs=repeats)
    if args.json == "-":
        print_json(compare_dict(result))
    else:  # one row per point, keys never cut: the width it needs on a pipe, records where a
        show(compare_table(result), wide=None)  # terminal or $COLUMNS is too narrow
    if args.json and args.json != "-":
        path = write_json_atomic(args.json, compare_dict(result), "--json")
        err.print(f"wrote {path}", markup=False)
    if args.csv:
        err.print(f"wrote {write_compare_csv(result, args.csv)}", markup=False)
    return 1 if args.fail_on_regression and result.regressions else 0
