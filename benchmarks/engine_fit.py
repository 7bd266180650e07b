"""Fit the fused-engine stack on the published MLPerf rows and write the fit chipfit ships.

    python benchmarks/engine_fit.py [--write]   # src/chipfit/hardware/data/engine_fit.json

Prediction (chipfit.predictors.engine) reads that file and never fits; `chipfit validate`
shows the leave-one-out table. A pure data fit: nothing is timed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chipfit.pipelines import engines  # noqa: E402

OUT = ROOT / "src" / "chipfit" / "hardware" / "data" / "engine_fit.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the package's engine_fit.json")
    args = ap.parse_args()
    if args.write:
        data = engines.write_fit(OUT)
        print(f"wrote {OUT}: {data['rows']} rows, leave-one-out median error "
              f"{data['loo_median_error']:.1%}")
    else:
        report = engines.loo_report()
        print(f"{len(report['rows'])} rows, leave-one-out median error "
              f"{report['summary']['all']:.1%} (add --write to ship the fit)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
