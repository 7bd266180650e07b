"""Training plans against published results and local measurements; writes the shipped fit.

Usage: ``python benchmarks/train_plan.py [--write] [--local]``

- throughput: each published MFU (hardware/data/train_results.toml) implies a training
  efficiency (the factor on the catalog's achievable matmul rate that makes the plan's MFU
  match). Leave-one-out: each row is predicted with the median efficiency of the others;
  the error is predicted step time / published - 1. The band per stratum is the 80th
  percentile of the absolute leave-one-out errors (the coverage target is 75-85%).
- single: published single-device training throughput of built-in workloads
  (``[[single_throughput]]``), priced through ``chipfit train MODEL --devices 1 --batch B``
  (the traced step, the predictor's seconds on the device). Nothing in that path is fitted
  on these rows (the predictor is fitted on kernel timings), so each error is already
  out-of-fit (leave-one-out changes nothing); the single stratum's band is their 80th
  percentile of absolute errors.
- memory: the plan's model states per device against the published ones (ZeRO's Table 1).
- ``--local``: real training steps here (chipfit train --measure's worker) of a small CNN,
  a transformer encoder and a small decoder LLM; the plan's memory against the measured peak.
- the 70B search's CPU seconds over 10 hardware keys (measured under load: a report, not a
  claim).

``--write`` stores the efficiency and the bands in hardware/data/train_fit.json.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from pathlib import Path

import tomllib

from chipfit.analysis.train_plan import (
    Parallel,
    TrainModel,
    TrainSetup,
    memory_plan,
    parse_parallel,
    step_time,
)
from chipfit.cost.llm_arch import LlmArch
from chipfit.hardware.catalog import load_catalog
from chipfit.pipelines.train import train_device

DATA = Path(__file__).resolve().parents[1] / "src/chipfit/hardware/data"


def _arch(name: str, a: dict) -> LlmArch:
    return LlmArch(name, "published", a["layers"], a["hidden"], a["heads"], a["kv_heads"],
                   a["head_dim"], a["intermediate"], a["vocab"], gated_mlp=a["gated"],
                   tied_embeddings=a.get("tied", False))


def _mfu(row: dict, eff: float) -> float:
    from chipfit.analysis.train_plan import llm_model

    model = llm_model(_arch(row["name"], row["arch"]))
    dev = train_device(load_catalog()[row["hardware"]])
    setup = TrainSetup(batch=row["batch"], seq_len=row["seq_len"],
                       checkpointing=row.get("checkpointing", False))
    par = parse_parallel(row["parallel"])
    s = step_time(model, setup, par, row["devices"], dev, eff)
    peak, _ = dev.rate("bf16")
    return s.model_flops / (s.total_s * row["devices"] * peak)


def implied(row: dict) -> float:
    lo, hi = 0.05, 3.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mfu(row, mid) < row["mfu"] else (lo, mid)
    return (lo + hi) / 2


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def _stratum(row: dict) -> str:
    from chipfit.analysis.train_plan import stratum

    return stratum(row["devices"], train_device(load_catalog()[row["hardware"]]).node_devices)


def _efficiency_for(row: dict, rows: list[dict], effs: list[float]) -> float:
    """The efficiency a row is predicted with: the median of the same device's other rows
    (two at least), else the median of all other rows."""
    same = [e for r, e in zip(rows, effs, strict=True)
            if r is not row and r["hardware"] == row["hardware"]]
    others = [e for r, e in zip(rows, effs, strict=True) if r is not row]
    return _median(same) if len(same) >= 2 else _median(others)


def throughput(rows: list[dict]) -> tuple[list[float], dict[str, list[float]]]:
    effs = [implied(r) for r in rows]
    strata: dict[str, list[float]] = {}
    print(f"{'published row':52} {'MFU':>5} {'eff':>5} {'LOO err':>8}")
    for r, e in zip(rows, effs, strict=True):
        pred = _mfu(r, _efficiency_for(r, rows, effs))
        err = r["mfu"] / pred - 1  # predicted time / published time - 1
        strata.setdefault(_stratum(r), []).append(err)
        print(f"{r['name'][:52]:52} {r['mfu']:5.2f} {e:5.2f} {err:+8.1%}")
    return effs, strata


def single_device(rows: list[dict]) -> list[float]:
    """Published single-device throughput against ``chipfit train``'s one-device plan: the
    error is predicted step time / published - 1 (published samples/s over predicted)."""
    from chipfit.pipelines.train import train

    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["workload"], r["precision"], r["batch"]), []).append(r)
    pred: dict[int, float] = {}
    for (workload, precision, batch), members in groups.items():
        keys = list(dict.fromkeys(r["hardware"] for r in members))
        rep = train(workload, samples=float(batch) * 100, precision=precision, hardware=keys,
                    devices=1, batch=batch, parallel="ddp")
        step = {p.hardware: p.step_s for p in rep.rows}
        for r in members:
            s = step.get(r["hardware"])
            pred[id(r)] = batch / s if s else math.nan
    errors = []
    print(f"{'published single-device row':52} {'pub/s':>6} {'pred/s':>6} {'err':>7}")
    for r in rows:
        p = pred[id(r)]
        err = r["samples_per_s"] / p - 1
        out = r.get("excluded")
        if math.isfinite(err) and not out:
            errors.append(err)
        print(f"{r['name'][:52]:52} {r['samples_per_s']:6.0f} {p:6.0f} {err:+7.1%}"
              + (" (excluded: not in the band)" if out else ""))
    return errors


def memory(rows: list[dict]) -> list[float]:
    errors = []
    for r in rows:
        model = TrainModel(r["name"], int(r["params"]), layers=r["layers"])
        m = memory_plan(model, TrainSetup(batch=1), Parallel(r["parallel"]), r["devices"])
        states = m.weights + m.gradients + m.master + m.optimizer
        err = states / (r["states_gb"] * 1e9) - 1
        errors.append(err)
        print(f"{r['name'][:52]:52} {states / 1e9:7.2f} GB vs {r['states_gb']:7.2f} "
              f"{err:+7.1%}")
    return errors


def finetune_memory(rows: list[dict]) -> list[float]:
    """Published single-device fine-tuning peaks (allocated bytes) against the plan without
    its runtime overhead (the CUDA context is not allocated memory)."""
    from chipfit.analysis.train_plan import llm_model

    errors = []
    for r in rows:
        model = llm_model(_arch(r["name"], r["arch"]))
        setup = TrainSetup(method=r["method"], lora_rank=r["lora_rank"],
                           lora_targets=tuple(r["lora_targets"]), batch=r["batch"],
                           seq_len=r["seq_len"])
        total = memory_plan(model, setup, Parallel(), 1, 0.0).total
        err = total / (r["gb"] * 1e9) - 1
        errors.append(err)
        print(f"{r['name'][:52]:52} {total / 1e9:7.2f} GB vs {r['gb']:7.2f} {err:+7.1%}")
    return errors


def bounds(rows: list[dict]) -> int:
    """Published "fits under" / "needs more than" figures: how many the plan agrees with."""
    from chipfit.analysis.train_plan import llm_model

    agree = 0
    for r in rows:
        model = llm_model(_arch(r["name"], r["arch"]))
        setup = TrainSetup(method=r["method"], lora_rank=r["lora_rank"], batch=r["batch"],
                           seq_len=r["seq_len"], checkpointing=r["checkpointing"])
        total = memory_plan(model, setup, Parallel(), 1, 1.0e9).total / 1e9
        ok = total < r["gb"] if r["bound"] == "below" else total > r["gb"]
        agree += ok
        print(f"{r['name'][:60]:60} plan {total:7.1f} GB, published {r['bound']} "
              f"{r['gb']:.0f} GB: {'agrees' if ok else 'DISAGREES'}")
    return agree


def local() -> list[float]:
    """Plan vs measured peak (VmHWM growth) for a CNN, an encoder and a decoder, here."""
    from chipfit.pipelines.train import is_llm, trace_model
    from chipfit.pipelines.train_measure import measure_training

    cases = [("resnet50", 8, 0), ("bert-base", 8, 0)]
    import tempfile

    from chipfit.workloads.llm import tiny_config

    cfg = Path(tempfile.mkdtemp()) / "tiny-decoder.json"
    c = {k: v for k, v in tiny_config("llama", layers=4, hidden_size=256,
                                      intermediate_size=688, vocab_size=8000).items()
         if not k.startswith("_")}
    cfg.write_text(json.dumps(c))
    cases.append((str(cfg), 4, 256))
    errors = []
    for name, batch, seq in cases:
        if is_llm(name):
            from chipfit.analysis.train_plan import llm_model
            from chipfit.workloads.llm import load_arch

            tmodel = llm_model(load_arch(name))
        else:
            tmodel = trace_model(name).model
        setup = TrainSetup(precision="fp32", seq_len=seq or 2048)
        m = measure_training(name, tmodel, setup, batch=batch, seq_len=seq or 256, steps=3)
        if not m.ok:
            print(f"{name}: not measured: {m.why}")
            continue
        err = m.planned_bytes / m.peak_bytes - 1
        errors.append(err)
        print(f"{Path(name).name:24} planned {m.planned_bytes / 2**30:6.2f} GiB, measured "
              f"{m.peak_bytes / 2**30:6.2f} GiB ({m.method}): {err:+.1%}")
    return errors


def search_cpu_seconds() -> float:
    from chipfit.pipelines.train import train

    keys = ["h100-sxm", "h200", "b200", "a100-sxm-80gb", "a100-sxm-40gb", "l4", "l40s",
            "mi300x", "tpu-v5e", "tpu-v5p"]
    before = resource.getrusage(resource.RUSAGE_SELF)
    train("llama-3.1-70b", tokens=1e9, method="lora", hardware=keys, deadline_s=86400)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str]) -> int:
    data = tomllib.loads((DATA / "train_results.toml").read_text())
    rows = data["throughput"]
    effs, strata = throughput(rows)
    single = single_device(data.get("single_throughput", []))
    if single:
        strata.setdefault("single", []).extend(single)
    bands = {}
    for name, errs in sorted(strata.items()):
        abs_errs = [abs(e) for e in errs]
        band = _quantile(abs_errs, 0.8)
        cover = sum(a <= band for a in abs_errs) / len(abs_errs)
        what = ("out-of-fit errors on published single-device training throughput rows "
                "(ResNet-50 on A100 and V100, traced and priced by the predictor as chipfit "
                "train --devices 1 does)"
                if name == "single" else f"leave-one-out errors on published {name}-stratum "
                "MFU rows")
        bands[name] = {"band": round(band, 3),
                       "basis": f"80th percentile of {len(errs)} {what}"}
        print(f"throughput, {name}: LOO median |err| {_median(abs_errs):.1%} over {len(errs)} "
              f"rows; band (80th pct) {band:.0%}, coverage {cover:.0%}; median signed "
              f"{_median(errs):+.1%}")
    per_device: dict[str, list[float]] = {}
    for r, e in zip(rows, effs, strict=True):
        per_device.setdefault(r["hardware"], []).append(e)
    mem = memory(data["memory"])
    mem_band = _quantile([abs(e) for e in mem], 0.8)
    print(f"memory (published model states): median |err| "
          f"{_median([abs(e) for e in mem]):.1%}; band {mem_band:.0%}")
    ft = finetune_memory(data.get("memory_finetune", []))
    ft_abs = [abs(e) for e in ft]
    ft_band = _quantile(ft_abs, 0.8) if ft else math.nan
    print(f"memory (published single-device fine-tuning peaks): median |err| "
          f"{_median(ft_abs):.1%} over {len(ft)} rows; band (80th pct) {ft_band:.0%}")
    agree = bounds(data.get("memory_bound", []))
    print(f"memory bounds: {agree} of {len(data.get('memory_bound', []))} agree")
    if "--local" in argv:
        loc = local()
        if loc:
            print(f"memory (measured here): median |err| {_median([abs(e) for e in loc]):.1%}")
    if "--write" in argv:
        node = bands.get("node", {"band": 0.35})["band"]
        single_band = bands.get("single") or {
            "band": round(max(node, 0.35), 3), "basis": "no published single-device row "
            "yet: the one-node band, at least 35% (an assumption)"}
        fit = {"efficiency": round(_median(effs), 4),
               "per_device": {k: round(_median(v), 4) for k, v in sorted(per_device.items())
                              if len(v) >= 3},
               "basis": f"median efficiency implied by {len(effs)} published MFU rows "
                        "(hardware/data/train_results.toml; benchmarks/train_plan.py); a device "
                        "with 3 rows or more has its own",
               "bands": {**bands,
                         "single": single_band,
                         "memory": {"band": round(ft_band, 3), "basis": "80th percentile of "
                                    f"the errors on {len(ft)} published single-device "
                                    "fine-tuning peaks (LitGPT); ZeRO's model states: "
                                    f"{mem_band:.0%}"}}}
        (DATA / "train_fit.json").write_text(json.dumps(fit, indent=1) + "\n")
        print("wrote", DATA / "train_fit.json")
    print(f"70B LoRA plan, 10 hardware keys, search: {search_cpu_seconds():.2f} CPU s "
          "(measured under load)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
