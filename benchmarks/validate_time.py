"""How long ``chipfit validate --quick`` takes end to end (the issue's budget: under 4 minutes).

Not a test: it measures wall time on whatever machine runs it and prints the figures. Run it
on a quiet machine (other processes inflate both the time and validation's errors):

    python benchmarks/validate_time.py [--runs 1] [--keep-calibration]

By default each run starts from an empty data directory, so calibration is included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BUDGET_S = 240.0


def one_run(home: str) -> tuple[float, dict]:
    env = dict(os.environ, CHIPFIT_HOME=home)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "chipfit", "validate", "--quick", "--json"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"chipfit validate failed with exit code {proc.returncode}")
    return wall, json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep-calibration", action="store_true",
                        help="reuse one data directory, so only the first run calibrates")
    args = parser.parse_args()
    shared = tempfile.mkdtemp(prefix="chipfit-validate-")
    for i in range(args.runs):
        home = shared if args.keep_calibration else tempfile.mkdtemp(prefix="chipfit-validate-")
        wall, report = one_run(home)
        summary = report["summary"]
        cases = len(report["cases"])
        print(f"run {i + 1}: {wall:.1f} s wall for {cases} local cases "
              f"({'within' if wall <= BUDGET_S else 'OVER'} the {BUDGET_S:.0f} s budget); "
              f"cpu count {os.cpu_count()}")
        for device, row in summary["local"].items():
            print(f"  {device}: MAPE {row['mape']}, mean APE {row['mean_ape']}, "
                  f"{row['cases']} cases")
        ref = summary["reference"]
        print(f"  published: MAPE {ref['mape']} (GPU/TPU rows {ref['mape_accelerators']}), "
              f"leave-one-out {ref['loo_mape']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
