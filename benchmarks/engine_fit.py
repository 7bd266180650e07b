"""Fit the fused-engine stack on the published MLPerf rows and write the fit chipfit ships.

    python benchmarks/engine_fit.py [--write]   # src/chipfit/hardware/data/engine_fit.json

Prediction (chipfit.predictors.engine) reads that file and never fits; `chipfit validate`
shows the leave-one-out table. Without --write it prints the leave-one-out errors by model
family (CNN / BERT) and by GPU generation. A pure data fit: nothing is timed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

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
        for title, groups in (("model family", by_family(report["rows"])),
                              ("GPU generation", by_generation(report["rows"]))):
            print(f"\nleave-one-out by {title} (median / mean absolute error, rows)")
            for name, errors in sorted(groups.items()):
                print(f"  {name:24} {np.median(np.abs(errors)) * 100:6.1f}% "
                      f"{np.mean(np.abs(errors)) * 100:6.1f}%  {len(errors)}")
    return 0


#: MLPerf model -> family (the published engine rows are ResNet-50 and BERT).
FAMILIES = {"resnet50": "CNN", "bert": "BERT"}


def by_family(rows: list[dict]) -> dict[str, list[float]]:
    """Leave-one-out errors grouped by model family (CNN / BERT / other)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        if r.get("loo_error") is not None:
            family = next((f for m, f in FAMILIES.items() if m in str(r.get("model"))), "other")
            out.setdefault(family, []).append(float(r["loo_error"]))
    return out


def by_generation(rows: list[dict]) -> dict[str, list[float]]:
    """Leave-one-out errors grouped by the device's architecture (gpu_arch.toml), CPUs as
    "cpu"; rows of a cache written before devices were recorded as "unknown"."""
    from chipfit.hardware.gpu_arch import gpu_figures

    figures = gpu_figures()
    out: dict[str, list[float]] = {}
    for r in rows:
        if r.get("loo_error") is None:
            continue
        device = r.get("device")
        if r.get("family") == "cpu":
            name = "cpu"
        elif device in figures:
            name = figures[device].architecture or device
        else:
            name = str(device or "unknown")
        out.setdefault(name, []).append(float(r["loo_error"]))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
