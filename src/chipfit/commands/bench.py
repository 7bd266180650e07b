"""``chipfit bench``: measure workloads on every device (or the ones named)."""

from __future__ import annotations

import argparse

from chipfit.commands._common import Saver, add_output_flags, csv_list, finish_run, progress


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
    add_output_flags(p)
    p.set_defaults(func=run)


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
    from chipfit.runner import bench
    from chipfit.report.terminal import bench_table

    timing = timing_from_args(args)
    with progress() as bar:
        task = bar.add_task("bench", total=None, current="")
        saver = Saver(args, bar, task)
        result = bench(csv_list(args.workloads),
                       csv_list(args.devices) if args.devices else None,
                       sizes=csv_list(args.sizes) if args.sizes else None,
                       dtypes=csv_list(args.dtypes),
                       modes=csv_list(args.modes) if args.modes else None,
                       quick=args.quick, timing=timing, on_result=saver)
    return finish_run(result, saver, bench_table)
ORDER = 20
