"""How long ``chipfit sweep WORKLOAD --quick`` takes, per workload, against its 2-minute target.

Each sweep runs as a user runs it (a fresh ``python -m chipfit`` process, default devices:
every device found plus torch's CPU at one thread), so the time includes interpreter and
framework start-up, discovery, every build, the timing itself and the analysis. Printed per
workload: wall time, points measured (ok / all), the ladder, and the crossover statements'
kinds. Issue 4's target: under 120 s on two cores.

Run alone on a quiet machine:  python benchmarks/sweep_time.py [--workloads matmul,mlp]
Timings taken while other work shares the CPU are not the product's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0


def _all_workloads() -> list[str]:
    from chipfit.workloads import all_workloads

    return [w.name for w in all_workloads()]


def time_sweep(workload: str, devices: str | None) -> dict[str, object]:
    """Run one quick sweep in a fresh process; return its wall time and what it measured."""
    with tempfile.TemporaryDirectory(prefix="chipfit-sweep-time-") as home:
        out = Path(home) / "run.json"
        cmd = [sys.executable, "-m", "chipfit", "sweep", workload, "--quick", "--no-save",
               "--json", str(out)] + (["--devices", devices] if devices else [])
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=dict(os.environ, CHIPFIT_HOME=home))
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            return {"workload": workload, "wall_s": wall, "error": proc.stderr.strip()[-300:]}
        return _summary(workload, wall, out)


def _summary(workload: str, wall: float, path: Path) -> dict[str, object]:
    from chipfit.pipelines.sweep import analyze_run
    from chipfit.store.runs import load_run

    run = load_run(path)
    analysis = analyze_run(run, resamples=500).analysis
    return {"workload": workload, "wall_s": wall,
            "ok": sum(m.ok for m in run.measurements), "points": len(run.measurements),
            "ladder": dict(run.settings).get("sizes", ""),
            "devices": dict(run.settings).get("devices", ""),
            "crossovers": [f"{c.a.device}/{c.a.dtype} vs {c.b.device}/{c.b.dtype}: {c.kind}"
                           for c in analysis.crossovers]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", help="comma-separated (default: every workload)")
    parser.add_argument("--devices", help="comma-separated devices (default: chipfit's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    names = args.workloads.split(",") if args.workloads else _all_workloads()
    rows = []
    for name in names:
        row = time_sweep(name, args.devices)
        rows.append(row)
        verdict = "ok" if row["wall_s"] < TARGET_S and "error" not in row else "OVER"
        print(f"{name:18s} {row['wall_s']:7.1f} s  {verdict:4s}  "
              f"{row.get('ok', '-')}/{row.get('points', '-')} points  "
              f"ladder {row.get('ladder', '')}  {row.get('error', '')}", flush=True)
        for line in row.get("crossovers", []):
            print(f"{'':20s}{line}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["wall_s"] < TARGET_S and "error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
