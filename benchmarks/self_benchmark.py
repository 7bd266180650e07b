"""chipfit's timer against torch.utils.benchmark's adaptive_autorange, side by side.

For each matmul size both timers measure the same prebuilt tensors in one process, the order
alternating per size, with the same thread count. Printed per size: each median, the ratio of
medians (chipfit / torch), the wall time each spent (including warm-up and block sizing), and
the precision each reached (chipfit: half-width of the 95% CI of the median; torch: IQR/median,
its own stopping rule).

Targets (issue 2): medians agree within 5% for n = 64..2048 and the seeds' 70x30 case, and
chipfit needs no more wall time than torch's timer to reach its +-2% target.

Run alone on a quiet machine:  python benchmarks/self_benchmark.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.benchmark import Timer

from chipfit.spec import TimingConfig
from chipfit.timing.timer import measure
from chipfit.workloads.matmul import SEED_SMALL, shape_of

SIZES = (SEED_SMALL, "64", "128", "256", "512", "1024", "2048")


def _chipfit(a: torch.Tensor, b: torch.Tensor, config: TimingConfig) -> tuple[float, float, float]:
    start = time.perf_counter()
    result, _ = measure(lambda: torch.matmul(a, b), lambda out: None, config)
    wall = time.perf_counter() - start
    per_call = [t / result.number_per_block for t in result.block_times_s]
    from chipfit.timing import stats

    return statistics.median(per_call), wall, stats.rel_ci_halfwidth(per_call)


def _torch(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    start = time.perf_counter()
    timer = Timer("torch.matmul(a, b)", globals={"a": a, "b": b, "torch": torch},
                  num_threads=torch.get_num_threads())
    m = timer.adaptive_autorange()
    wall = time.perf_counter() - start
    return m.median, wall, m.iqr / m.median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds per size (default 3)")
    args = parser.parse_args()
    config = TimingConfig()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; chipfit target "
          f"+-{config.target_rel_ci:.0%}, budget {config.budget_s}s; torch adaptive_autorange "
          "defaults (IQR/median < 10%)")
    print(f"{'size':>20} {'chipfit med':>12} {'torch med':>12} {'ratio':>7} "
          f"{'chipfit wall':>13} {'torch wall':>11} {'wall ratio':>10} {'chipfit CI':>10} "
          f"{'torch IQR':>9}")
    ratios, walls = [], []
    for size in SIZES:
        m, k, n = shape_of(size)
        a, b = torch.rand(m, k), torch.rand(k, n)
        rows = []
        for r in range(args.repeats):
            if r % 2 == 0:
                c, t = _chipfit(a, b, config), _torch(a, b)
            else:
                t, c = _torch(a, b), _chipfit(a, b, config)
            rows.append((c, t))
        c_med = statistics.median(c[0] for c, _ in rows)
        t_med = statistics.median(t[0] for _, t in rows)
        c_wall = statistics.median(c[1] for c, _ in rows)
        t_wall = statistics.median(t[1] for _, t in rows)
        c_ci = statistics.median(c[2] for c, _ in rows)
        t_iqr = statistics.median(t[2] for _, t in rows)
        ratios.append(c_med / t_med)
        walls.append(c_wall / t_wall)
        print(f"{size:>20} {c_med * 1e6:>10.2f}us {t_med * 1e6:>10.2f}us {c_med / t_med:>7.3f} "
              f"{c_wall:>12.3f}s {t_wall:>10.3f}s {c_wall / t_wall:>10.2f} {c_ci:>9.1%} "
              f"{t_iqr:>8.1%}")
    worst = max(abs(r - 1) for r in ratios)
    print(f"\nmedian ratio within {worst:.1%} of 1 (target 5%); chipfit/torch wall time: "
          f"median {statistics.median(walls):.2f}x, max {max(walls):.2f}x (target <= 1)")


if __name__ == "__main__":
    main()
