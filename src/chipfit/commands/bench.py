"""``chipfit bench``: measure workloads on every device (or the ones named)."""

from __future__ import annotations

import argparse

from chipfit.commands._common import (
    add_db_flag,
    add_output_flags,
    csv_list,
    err,
    finish_run,
    measuring,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure workloads on the devices present")
    p.add_argument("--workloads", "-w", default="matmul,elementwise",
                   help="comma-separated workload names (default: matmul,elementwise)")
    p.add_argument("--devices", "-d", help="comma-separated device ids (default: all found, "
                   "plus torch:cpu@1t)")
    p.add_argument("--sizes", "-s", help="comma-separated sizes (default: per workload)")
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16,float16")
    p.add_argument("--modes", help="comma-separated: inference,train,finetune")
    p.add_argument("--quick", action="store_true", help="few sizes, short timing (under a minute)")
    p.add_argument("--target", type=float, help="stop when the 95%% CI of the median is within "
                   "this fraction (default 0.02 = +-2%%)")
    p.add_argument("--budget", type=float, help="seconds of timing per point at most")
    p.add_argument("--suite", help="run a named suite instead of --workloads: 'seeds' (the "
                   "seed articles' experiments, each claim checked) or 'default'")
    add_output_flags(p)
    add_fleet_flags(p)
    p.set_defaults(func=run)


def add_fleet_flags(p: argparse.ArgumentParser) -> None:
    """Where results are kept, and where jobs run: --db, --resume, --executor and friends."""
    add_db_flag(p)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue the newest unfinished run with the same settings (or run RUN): "
                   "only jobs without a stored measurement run again")
    p.add_argument("--executor", choices=("inline", "subprocess", "ray"), default="inline",
                   help="where jobs run: this process (default), a fresh process per device "
                   "with a per-job timeout, or a Ray cluster")
    p.add_argument("--address", help="Ray cluster address for --executor ray (default: start "
                   "a local Ray instance; 'auto' joins the running one)")
    p.add_argument("--job-timeout", type=float, metavar="SECONDS",
                   help="subprocess/ray: record a job as timed out after this long (default 300)")
    p.add_argument("--labels", help="ray: only nodes with these labels, e.g. "
                   "ray.io/accelerator-type=H100 (comma-separated key=value)")


def executor_from_args(args: argparse.Namespace):
    from chipfit.errors import InvalidInputError
    from chipfit.execute.base import get_executor

    if args.executor != "ray" and (args.address or args.labels):
        raise InvalidInputError("--address and --labels need --executor ray")
    if args.executor == "inline":
        if args.job_timeout is not None:
            raise InvalidInputError("--job-timeout needs --executor subprocess or ray (inline "
                                    "jobs cannot be stopped from outside)")
        return get_executor("inline")
    if args.executor == "subprocess":
        return get_executor("subprocess", timeout_s=args.job_timeout)
    return get_executor("ray", address=args.address, labels=_labels(args.labels),
                        timeout_s=args.job_timeout)


def _labels(text: str | None) -> dict[str, str] | None:
    """``key=value,key=value`` as a Ray label selector."""
    from chipfit.errors import InvalidInputError

    labels = {}
    for pair in csv_list(text or ""):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise InvalidInputError(f"malformed label {pair!r}: use key=value")
        labels[key.strip()] = value.strip()
    return labels or None


def timing_from_args(args: argparse.Namespace):
    from dataclasses import replace

    from chipfit.errors import InvalidInputError
    from chipfit.spec import TimingConfig

    timing = TimingConfig.quick() if args.quick else TimingConfig()
    if args.target is not None:
        timing = replace(timing, target_rel_ci=args.target)
    if args.budget is not None:
        if args.budget <= 0:
            raise InvalidInputError("--budget must be positive")
        timing = replace(timing, budget_s=args.budget)
    return timing


def run(args: argparse.Namespace) -> int:
    from chipfit.report.terminal import bench_table
    from chipfit.pipelines.bench import bench

    timing = timing_from_args(args)
    with measuring(args, "bench") as (saver, executor, store):
        if args.suite:
            result = _run_suite(args, timing, saver, executor, store)
        else:
            result = bench(csv_list(args.workloads),
                           csv_list(args.devices) if args.devices else None,
                           sizes=csv_list(args.sizes) if args.sizes else None,
                           dtypes=csv_list(args.dtypes),
                           modes=csv_list(args.modes) if args.modes else None,
                           quick=args.quick, timing=timing, on_result=saver,
                           executor=executor, store=store, resume=args.resume)
    if store is not None:
        err.print(f"run {result.run_id} kept in {store.path}")
    return finish_run(result, saver, _suite_view(args.suite) if args.suite else bench_table)


def _run_suite(args: argparse.Namespace, timing, saver, executor, store):  # noqa: ANN001, ANN202
    """``--suite NAME``: the suite's own experiments instead of --workloads and friends."""
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.suites import get_suite, run_suite

    suite = get_suite(args.suite)
    if args.sizes or args.modes or args.dtypes != "float32" or (
            args.workloads != "matmul,elementwise"):
        raise InvalidInputError("--suite fixes its own workloads, sizes, dtypes and modes: "
                                "drop --workloads/--sizes/--dtypes/--modes, or drop --suite")
    return run_suite(suite.name, csv_list(args.devices) if args.devices else None,
                     quick=args.quick, timing=timing, on_result=saver, executor=executor,
                     store=store, resume=args.resume)


def _suite_view(name: str):  # noqa: ANN202
    """The results table, then (for a suite with claims) each claim beside its verdict."""
    from rich.console import Group

    from chipfit.report.claims import claims_table
    from chipfit.report.terminal import bench_table
    from chipfit.pipelines.suites import check_claims, get_suite

    suite = get_suite(name)
    if not suite.claims:
        return bench_table
    return lambda run: Group(bench_table(run), claims_table(check_claims(run, suite), run.run_id))


ORDER = 20
