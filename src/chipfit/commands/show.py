"""``chipfit show``: one stored run in full, and its export to JSON or CSV."""

from __future__ import annotations

import argparse
from typing import Any

from chipfit.commands._common import add_db_flag, err, load_run_ref, out, warn

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
    p.add_argument("--wide", action="store_true", help="every column, devices side by side, "
                   "however narrow the terminal")
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
    else:
        advice = stored_advice_of(found)
        if advice is not None:
            from chipfit.report.advise_view import stored_advice

            out.print(stored_advice(advice, wide=args.wide))
        if found.measurements:
            out.print(bench_table(found, wide=args.wide))
        if found.command == "sweep" and found.measurements:
            out.print(_crossovers(found))
        claims = _claims(found)
        if claims is not None:
            out.print(claims)
    from chipfit.analysis.trust import warning

    busy = warning(found.measurements)
    if busy:
        warn(busy)
    if found.discovery.problems:
        out.print(problems_table(found.discovery))
    for path in ([save_run(found, args.json)] if args.json else []) + (
            [write_csv([found], args.csv)] if args.csv else []):
        err.print(f"wrote {path}")
    return 0


def _crossovers(found: Any) -> Any:
    """A sweep run's crossovers and limits, found again from its stored points (as ``chipfit
    sweep`` printed them; the analysis is deterministic: a fixed bootstrap seed)."""
    from chipfit.errors import UnknownNameError
    from chipfit.pipelines.sweep import analyze_run
    from chipfit.report.crossover_view import crossover_panel
    from chipfit.workloads import get_workload

    axes = {}
    for name in dict.fromkeys(m.workload for m in found.measurements):
        try:
            axes[name] = get_workload(name).axis
        except UnknownNameError:  # a user model's run: its workload is not registered here
            axes[name] = "batch"
    return crossover_panel(analyze_run(found, compute_limits=False).analysis, axes)


def _claims(found: Any) -> Any:
    """A suite run's claims checked again against its points (None: not a suite run, or a
    suite without claims or unknown to this chipfit)."""
    from chipfit.analysis.suites import check_claims, get_suite
    from chipfit.errors import UnknownNameError
    from chipfit.report.claims import claims_table
    from chipfit.workloads import all_workloads

    name = dict(found.settings).get("suite")
    if not name or not found.measurements:
        return None
    try:
        suite = get_suite(name)
    except UnknownNameError:
        return None
    if not suite.claims:
        return None
    installed = {w.name for w in all_workloads()}
    return claims_table(check_claims(found, suite, installed), found.run_id)


def stored_advice_of(found: Any) -> dict[str, Any] | None:
    """The advice an advise run stored with it (None for other runs, or a record that does
    not parse: the header still shows the run)."""
    import json

    text = dict(found.settings).get("advice")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
