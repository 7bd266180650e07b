"""Measure every prediction stratum's errors out of fit and write the bands chipfit ships.

    python benchmarks/bands.py [--data ../shared/data/gpu_kernels] [--sample 600] [--write]

A band is the multiplicative error e with 80% of a stratum's out-of-fit cases inside
[t/(1+e), t(1+e)]. The cases, by stratum (nothing here is timed; it is a data fit):

- gpu-in-data: the shipped kernel models (fitted on all five GPUs of the NeuSight kernel
  data) predicting the data's end-to-end model latencies (the models are never fitted:
  only kernels are).
- gpu-unseen-fitted-generation: leave one GPU out, for GPUs whose architecture another
  fitted GPU shares (P4 and P100, both Pascal).
- gpu-newer-architecture: generation-out: fit on the older GPUs only, predict the newer
  ones (fit P4/P100/T4/V100 -> A100; fit P4/P100/V100 -> T4 and A100).
- roofline-only: the roofline route (catalog peaks x efficiencies, the fitted eager host
  model) predicting the same end-to-end labels on the five GPUs, as if they had no
  architecture figures.
- engine: the fused-engine stack, leave-one-out over the published MLPerf rows.
- llm: the static LLM predictor, leave-one-out over the published static-batch LLM rows
  (online-serving rows are the serving simulator's: pipelines/serving.stack_bands).
Strata without out-of-fit evidence here (another vendor's GPUs, catalog CPUs) borrow the
nearest stratum's band, widened, and say so in their basis.

Coverage is reported twice: in-sample (by construction about 80%) and leave-one-case-out
(each case against the band of the others), the honest figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chipfit.pipelines import gpu_validate as gv  # noqa: E402

COVERAGE = 0.8
OUT = ROOT / "src" / "chipfit" / "hardware" / "data" / "bands.json"


def band_from(errors: list[float]) -> float:
    """The smallest multiplicative band holding at least 80% of ``errors`` (of 7 cases, 6:
    a quantile would hold 5, under the target)."""
    logs = sorted(abs(math.log1p(e)) for e in errors)
    if not logs:
        return 0.5
    return math.expm1(logs[max(math.ceil(COVERAGE * len(logs)) - 1, 0)]) * (1 + 1e-9)


def loo_coverage(errors: list[float]) -> float:
    if len(errors) < 3:
        return math.nan
    inside = [gv.coverage([e], band_from(errors[:i] + errors[i + 1:])) for i, e in
              enumerate(errors)]
    return float(np.mean(inside))


def gpu_strata(data: Path, sample: int | None, say) -> dict[str, list[float]]:
    from chipfit.analysis.roofline import catalog_roofs
    from chipfit.hardware.catalog import load_catalog
    from chipfit.predictors.core import _roofline_eager

    rows = {g: gv._rows(data, g, sample) for g in gv.GROUPS}

    def fit_without(excluded: set[str]) -> dict:
        say(f"fitting without {', '.join(sorted(excluded))}")
        return gv.fit_without_set(rows, sorted(excluded))

    from chipfit.predictors.fits import shipped_gpu_model

    out: dict[str, list[float]] = {}
    shipped = shipped_gpu_model()  # the model chipfit predicts with (fitted on all five)
    cases = gv.e2e_cases(data, lambda g: shipped, False, say)
    out["gpu-in-data"] = [c.error for c in cases]
    for held in ("p4", "p100-pcie-16gb"):  # each shares Pascal with the other
        model = gv.gpu_model(fit_without({held}))
        out.setdefault("gpu-unseen-fitted-generation", []).extend(
            c.error for c in gv.e2e_cases(data, lambda g, m=model: m, True)
            if c.device == held)
    for held in ({"a100-pcie-40gb"}, {"t4", "a100-pcie-40gb"}):
        model = gv.gpu_model(fit_without(held))
        out.setdefault("gpu-newer-architecture", []).extend(
            c.error for c in gv.e2e_cases(data, lambda g, m=model: m, True)
            if c.device in held)
    catalog = load_catalog()
    roof = []
    for c in cases:
        costs = gv._trace_label(data, c.model, c.seq_len, c.batch, c.mode)
        pred = _roofline_eager(costs, catalog_roofs(catalog[c.device], "torch",
                                                    dtypes=(costs.dtype,)))
        roof.append(pred.seconds / c.measured_s - 1.0)
    out["roofline-only"] = roof
    return out


def published_strata() -> dict[str, list[float]]:
    from chipfit.pipelines.engines import loo_report
    from chipfit.pipelines.llm import published_cases

    out = {"engine": [float(r["loo_error"]) for r in loo_report()["rows"]
                      if r.get("loo_error") is not None],
           # the static LLM predictor's rows; online-serving rows (a concurrency sweep against
           # a server) are the serving simulator's, banded per stratum in pipelines/serving
           "llm": [float(c.loo_error) for c in published_cases()
                   if c.loo_error is not None and math.isfinite(c.loo_error)
                   and not c.concurrency]}
    return out


BORROWED = {  # stratum without evidence -> (stratum whose band it takes, widening, why)
    "gpu-other-vendor": ("gpu-newer-architecture", 1.5,
                         "no other vendor's kernels or end-to-end labels to score against"),
    "catalog-cpu": ("roofline-only", 1.5, "no published eager CPU results to score against"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "gpu_kernels"))
    ap.add_argument("--sample", type=int, default=600, help="rows per operator and GPU (0: all)")
    ap.add_argument("--write", action="store_true", help="write the package's bands.json")
    args = ap.parse_args()
    def say(text: str) -> None:
        print(f"  {text}", file=sys.stderr)

    errors = gpu_strata(Path(args.data), args.sample or None, say)
    errors.update(published_strata())
    strata = {}
    print(f"{'stratum':32}{'cases':>6}{'band':>8}{'in-sample':>11}{'leave-one-out':>15}"
          f"{'median':>8}{'bias':>8}")
    for name, errs in errors.items():
        band = band_from(errs)
        inside = gv.coverage(errs, band)
        loo = loo_coverage(errs)
        med = float(np.median(np.abs(errs)))
        bias = float(np.median(errs))
        print(f"{name:32}{len(errs):6d}{band * 100:7.1f}%{inside * 100:10.0f}%"
              f"{loo * 100:14.0f}%{med * 100:7.1f}%{bias * 100:+7.1f}%")
        strata[name] = {"band": band, "cases": len(errs), "coverage": inside,
                        "loo_coverage": None if math.isnan(loo) else loo,
                        "median_abs_error": med, "median_error": bias,
                        "basis": f"{int(COVERAGE * 100)}th percentile of {len(errs)} out-of-fit "
                                 f"errors ({name}; benchmarks/bands.py)"}
    for name, (source, widen, why) in BORROWED.items():
        if source in strata:
            band = strata[source]["band"] * widen
            strata[name] = {"band": band, "cases": 0, "coverage": None, "loo_coverage": None,
                            "basis": f"assumed: the {source} band x{widen:g} ({why})"}
            print(f"{name:32}{0:6d}{band * 100:7.1f}%  (assumed: {source} x{widen:g})")
    if args.write:
        OUT.write_text(json.dumps({
            "schema_version": 1, "coverage_target": COVERAGE,
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "script": "benchmarks/bands.py", "sample": args.sample, "strata": strata},
            indent=1) + "\n")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
