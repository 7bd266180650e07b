"""``chipfit bench``: measure workloads on every device (or the ones named)."""

from __future__ import annotations

import argparse

from chipfit.commands._common import (
    add_fleet_flags,
    add_output_flags,
    add_stacks_flag,
    csv_list,
    err,
    finish_run,
    finite_float,
    measuring,
    timing_from_args,
    with_fleet,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure workloads on the devices present")
    p.add_argument("--workloads", "-w", default="matmul,elementwise",
                   help="comma-separated workload names (default: matmul,elementwise; "
                   "chipfit workloads lists them)")
    p.add_argument("--devices", "-d", help="comma-separated device ids (default: all found, "
                   "plus torch:cpu@1t when torch runs several threads)")
    p.add_argument("--sizes", "-s", help="comma-separated sizes (default: per workload)")
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16,float16")
    p.add_argument("--modes", help="comma-separated: inference,train,finetune")
    add_stacks_flag(p)
    p.add_argument("--quick", action="store_true", help="few sizes, short timing (under a minute)")
    p.add_argument("--target", type=finite_float, help="stop when the 95%% CI of the median is within "
                   "this fraction (default 0.02 = +-2%%)")
    p.add_argument("--budget", type=finite_float, help="seconds of timing per point at most")
    p.add_argument("--suite", help="run a named suite instead of --workloads: 'seeds' (the "
                   "seed articles' experiments, each claim checked) or 'default'")
    p.add_argument("--wide", action="store_true", help="every figure of every point, devices "
                   "side by side, however narrow the terminal (one record per point where the "
                   "grid cannot fit)")
    add_output_flags(p)
    add_fleet_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.pipelines.bench import bench

    timing = timing_from_args(args)
    table = _table(args.wide)
    render = with_fleet(_suite_view(args.suite, table) if args.suite else with_stacks(table),
                        args)
    with measuring(args, "bench") as (saver, executor, store):
        if args.suite:
            result = _run_suite(args, timing, saver, executor, store)
        else:
            result = bench(csv_list(args.workloads),
                           csv_list(args.devices) if args.devices else None,
                           sizes=csv_list(args.sizes) if args.sizes else None,
                           dtypes=csv_list(args.dtypes),
                           modes=csv_list(args.modes) if args.modes else None,
                           stacks=csv_list(args.stacks),
                           quick=args.quick, timing=timing, on_result=saver,
                           executor=executor, store=store, resume=args.resume)
    if store is not None:
        err.print(f"run {result.run_id} kept in {store.path}")
    return finish_run(result, saver, render)


def _table(wide: bool):  # noqa: ANN202
    """The results table, every column at any width with ``--wide``."""
    from chipfit.report.terminal import bench_table

    return lambda run: bench_table(run, wide=wide)


def with_stacks(view):  # noqa: ANN001, ANN201
    """``view``, followed by the stack comparison when the run measured more than eager."""
    from rich.console import Group

    from chipfit.analysis.stack_compare import has_stacks
    from chipfit.report.stacks_view import stacks_table

    return lambda run: (Group(view(run), stacks_table(run)) if has_stacks(run.measurements)
                        else view(run))


def _run_suite(args: argparse.Namespace, timing, saver, executor, store):  # noqa: ANN001, ANN202
    """``--suite NAME``: the suite's own experiments instead of --workloads and friends."""
    from chipfit.analysis.suites import get_suite
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.suites import run_suite

    suite = get_suite(args.suite)
    if args.sizes or args.modes or args.dtypes != "float32" or args.stacks != "eager" or (
            args.workloads != "matmul,elementwise"):
        raise InvalidInputError("--suite fixes its own workloads, sizes, dtypes, modes and "
                                "stacks: drop --workloads/--sizes/--dtypes/--modes/--stacks, or "
                                "drop --suite")
    return run_suite(suite.name, csv_list(args.devices) if args.devices else None,
                     quick=args.quick, timing=timing, on_result=saver, executor=executor,
                     store=store, resume=args.resume)


def _suite_view(name: str, table):  # noqa: ANN001, ANN202
    """The results table, then (for a suite with claims) each claim beside its verdict."""
    from rich.console import Group

    from chipfit.analysis.suites import check_claims, get_suite
    from chipfit.report.claims import claims_table
    from chipfit.workloads import all_workloads

    suite = get_suite(name)
    installed = {w.name for w in all_workloads()}
    if not suite.claims:
        return with_stacks(table)
    return lambda run: Group(with_stacks(table)(run),
                             claims_table(check_claims(run, suite, installed), run.run_id))


ORDER = 20
