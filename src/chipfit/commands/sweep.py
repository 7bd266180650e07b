"""``chipfit sweep``: one workload over a ladder of sizes; where does the faster device change?"""

from __future__ import annotations

import argparse

from chipfit.commands._common import (
    add_fleet_flags,
    add_output_flags,
    csv_list,
    err,
    finish_run,
    finite_float,
    measuring,
    timing_from_args,
    with_fleet,
)

ORDER = 25


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="measure one workload over a size ladder and find the "
                       "crossovers between devices (and dtypes)",
                       description="Measure WORKLOAD over a geometric ladder of sizes on each "
                       "device, resident and end to end, and state every crossover: the size "
                       "at which the faster device (or dtype) changes.")
    p.add_argument("workload", help="workload name (chipfit workloads lists them)")
    p.add_argument("--axis", choices=("batch", "n", "elements"),
                   help="what the sizes mean; must be the workload's own axis (default: it)")
    p.add_argument("--from", dest="start", metavar="A", help="smallest size (e.g. 16, 1k, 2^10)")
    p.add_argument("--to", dest="stop", metavar="B", help="largest size (default: the "
                   "workload's range, ending before one call would exceed 500 GFLOP; 20 GFLOP "
                   "with --quick)")
    p.add_argument("--points", type=int, help="ladder points, evenly spaced in log size "
                   "(default: doubling)")
    p.add_argument("--devices", "-d", help="comma-separated device ids (default: all found, "
                   "plus torch:cpu@1t when torch runs several threads)")
    p.add_argument("--dtypes", default="float32",
                   help="comma-separated dtypes; two or more add dtype crossovers "
                   "(e.g. float32,bfloat16)")
    p.add_argument("--mode", help="inference, train or finetune (default: the workload's first)")
    from chipfit.commands._common import add_stacks_flag

    add_stacks_flag(p)
    p.add_argument("--quick", action="store_true",
                   help="short ladder and short timing (under two minutes on two cores)")
    p.add_argument("--target", type=finite_float, help="stop timing a point when the 95%% CI of the "
                   "median is within this fraction (default 0.02)")
    p.add_argument("--budget", type=finite_float, help="seconds of timing per point at most")
    p.add_argument("--level", type=finite_float, default=0.95,
                   help="confidence level of the crossover statements (default 0.95)")
    p.add_argument("--html", metavar="PATH", help="also write the HTML report of this sweep")
    p.add_argument("--wide", action="store_true", help="every figure of every point, devices "
                   "side by side, however narrow the terminal")
    add_output_flags(p)

    add_fleet_flags(p)  # --db, --executor and friends, as for bench
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Group

    from chipfit.pipelines.sweep import sweep
    from chipfit.report.crossover_view import crossover_panel
    from chipfit.report.terminal import bench_table
    from chipfit.workloads import get_workload

    axis = get_workload(args.workload).axis
    timing = timing_from_args(args)
    with measuring(args, "sweep") as (saver, executor, store):
        result = sweep(args.workload, csv_list(args.devices) if args.devices else None,
                       axis=args.axis, start=args.start, stop=args.stop,
                       points=args.points, dtypes=csv_list(args.dtypes), mode=args.mode,
                       stacks=csv_list(args.stacks), quick=args.quick, timing=timing,
                       on_result=saver, level=args.level,
                       executor=executor, store=store, resume=args.resume)
    if store is not None:
        err.print(f"run {result.run.run_id} kept in {store.path}")
    if args.html:
        from chipfit.report.html import write_report

        err.print(f"wrote {write_report([result.run], args.html)}")
    return finish_run(result.run, saver, with_fleet(lambda run: Group(
        bench_table(run, wide=args.wide), crossover_panel(result.analysis, {args.workload: axis})), args))
