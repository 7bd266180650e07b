"""Fit chipfit's GPU kernel models on the NeuSight data and report leave-one-GPU-out errors.

    python benchmarks/gpu_predictor.py [--data ../shared/data/gpu_kernels] [--sample 600]
                                       [--write]   # store src/chipfit/hardware/data/gpu_model.json

Prints: kernel MAPE per operator and held-out GPU, end-to-end MAPE per held-out GPU (models
traced shape-only from their config.json), the band and its coverage, and per protocol
(leave-one-GPU-out and the generation-out ones of ``gpu_validate.GENERATION_OUT``) and per
model and mode: mean and median APE and band coverage. A pure data fit: no timing happens
here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chipfit.analysis.gpu_kernels import SINGLE_ISSUE_SOURCE  # noqa: E402
from chipfit.pipelines import gpu_validate as gv  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "gpu_kernels"))
    ap.add_argument("--sample", type=int, default=600, help="rows per operator and GPU (0: all)")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--write", action="store_true", help="write the package's gpu_model.json")
    args = ap.parse_args()
    result = gv.run(args.data, sample=args.sample or None, e2e=not args.no_e2e,
                    progress=lambda s: print(f"  {s}", file=sys.stderr))
    print_tables(result)
    if args.write:
        path = ROOT / "src" / "chipfit" / "hardware" / "data" / "gpu_model.json"
        path.write_text(json.dumps(gv.model_json(result, args.data), indent=1) + "\n")
        print(f"wrote {path}")
    return 0


def print_tables(result: dict) -> None:
    gpus = result["gpus"]
    print("\nKernel MAPE, leave one GPU out (rows: operator; columns: held-out GPU)")
    print(f"{'op':10}" + "".join(f"{g:>16}" for g in gpus) + f"{'mean':>8}")
    for op, per in result["kernels_logo"].items():
        vals = [per.get(g) for g in gpus]
        print(f"{op:10}" + "".join(f"{v * 100:15.1f}%" if v is not None else f"{'-':>16}"
                                   for v in vals)
              + f"{np.mean([v for v in vals if v is not None]) * 100:7.1f}%")
    cases = result["e2e"]
    if not cases:
        return
    print("\nEnd to end (predicted with the fit that left the GPU out | with all GPUs)")
    print(f"{'model':12}{'seq':>6}{'batch':>6}{'mode':>10}{'gpu':>16}{'measured':>11}"
          f"{'held-out':>11}{'err':>8}{'all':>11}{'err':>8}")
    held = [c for c in cases if c.held_out]
    full = {(c.model, c.seq_len, c.batch, c.device, c.mode): c for c in cases if not c.held_out}
    for c in held:
        f = full[c.model, c.seq_len, c.batch, c.device, c.mode]
        print(f"{c.model:12}{c.seq_len:6}{c.batch:6}{c.mode:>10}{c.device:>16}"
              f"{c.measured_s * 1e3:9.1f}ms{c.predicted_s * 1e3:9.1f}ms{c.error * 100:7.1f}%"
              f"{f.predicted_s * 1e3:9.1f}ms{f.error * 100:7.1f}%")
    for gpu in gpus:
        errs = [abs(c.error) for c in held if c.device == gpu]
        if errs:
            print(f"  e2e LOGO MAPE {gpu:16} {np.mean(errs) * 100:5.1f}% ({len(errs)} cases)")
    print(f"e2e LOGO MAPE (all held-out cases): {np.mean([abs(c.error) for c in held]) * 100:.1f}%"
          f"; in-sample: {np.mean([abs(c.error) for c in full.values()]) * 100:.1f}%")
    print(f"band +-{result['band'] * 100:.0f}% ({result['band_basis']}); "
          f"coverage {result['coverage'] * 100:.0f}%")
    print("\nEnd to end by protocol (mean / median APE, median signed error, band coverage)")
    for name, p in (result.get("protocols") or {}).items():
        if p.get("cases"):
            print(f"  {name:62} {p['cases']:3d} cases  mean {p['mean_ape'] * 100:5.1f}%  "
                  f"median {p['median_ape'] * 100:5.1f}%  bias {p['median_error'] * 100:+5.1f}%  "
                  f"in band {p['coverage'] * 100:3.0f}%")
    print("\nEnd to end by protocol, model and mode (mean / median APE, band coverage)")
    for name, p in (result.get("protocols") or {}).items():
        for group, q in (p.get("by_model_mode") or {}).items():
            print(f"  {gv.protocol_short(name):24} {group:22} {q['cases']:3d} cases  "
                  f"mean {q['mean_ape'] * 100:5.1f}%  median {q['median_ape'] * 100:5.1f}%  "
                  f"in band {q['coverage'] * 100:3.0f}%")
    model = result["model"]
    print(f"\ndevice factors: gemm_single_issue {model.params['gemm_single_issue']:.3f} "
          f"(calibrated: {SINGLE_ISSUE_SOURCE}); power_ref_w "
          f"{model.params['power_ref_w']:.0f} W, power_beta {model.params['power_beta']:.2f} "
          "(fitted)")

if __name__ == "__main__":
    raise SystemExit(main())
