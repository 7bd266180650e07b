"""Weak scaling of data-parallel torch training on this machine's CPU (or GPUs).

For each network, trains with 1, 2, ... N processes (DistributedDataParallel; gloo on CPU,
nccl with --device cuda), the per-process batch fixed, and prints per N: the median step time
(slowest rank) with its 95% CI, the throughput in samples/s, the scaling efficiency
throughput(N) / (N * throughput(1)), and whether the replicas stayed identical.

On a CPU, each process gets the same share of the physical cores at every N (cores divided by
the largest N), so the 1-process baseline is one "device" of the same size.

Run alone on a quiet machine:  python benchmarks/scaling_torch.py [--processes 4]
"""

from __future__ import annotations

import argparse

from chipfit.pipelines.scale_torch import scale_torch
from chipfit.report.fmt import fmt_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mlp,cnn", help="networks (comma-separated)")
    parser.add_argument("--processes", type=int, default=2, help="largest process count")
    parser.add_argument("--batch", type=int, help="per-process batch (default: per network)")
    parser.add_argument("--platform", choices=("cpu", "cuda"))
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed steps")
    args = parser.parse_args()
    for name in args.workloads.split(","):
        result = scale_torch(name, args.processes, batch=args.batch, platform=args.platform,
                             budget_s=args.budget)
        first = result.points[0].measurement.meta
        print(f"\n{name} {result.mode} on torch {result.platform} "
              f"({first['comm_backend']}), {result.dtype}, batch {first['per_device_batch']} "
              f"per process, {first['threads_per_process']} thread(s) per process (measured)")
        print(f"{'N':>3} {'step (median)':>14} {'95% CI':>22} {'samples/s':>11} "
              f"{'efficiency':>10} {'steps':>6} replicas")
        for p in result.points:
            m = p.measurement
            lo, hi = m.ci_s
            diff = float(m.meta["replica_max_diff"])
            same = "identical" if diff == 0 else f"differ {diff:.2g}"
            print(f"{p.devices:>3} {fmt_seconds(m.median_s):>14} "
                  f"{fmt_seconds(lo) + ' .. ' + fmt_seconds(hi):>22} {p.throughput:>11.1f} "
                  f"{result.efficiency(p):>10.2f} {len(m.block_times_s):>6} {same}")


if __name__ == "__main__":
    main()
