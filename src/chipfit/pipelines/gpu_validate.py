"""Fit and check the GPU kernel models on measured data (``shared/data/gpu_kernels``).

Orchestration behind ``benchmarks/gpu_predictor.py`` and ``chipfit validate --gpu-data``:
read the kernel files, fit every model group (:mod:`chipfit.analysis.gpu_fit`), refit with
each GPU left out and score it on its kernels and on its end-to-end labels (models traced
shape-only from their configs, :mod:`chipfit.workloads.gpu_trace`), derive the uncertainty
band from those held-out errors, and write the fitted model as package data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.analysis.gpu_fit import GROUPS, FitResult, fit_group, mape, predict_rows
from chipfit.analysis.gpu_kernels import DEFAULTS, GpuParams, single_issue_from_evidence
from chipfit.analysis.gpu_predict import GpuModel, HostCosts, estimate
from chipfit.errors import UsageError
from chipfit.predictors.fits import GPU_MODEL_SCHEMA_VERSION, load_gpu_model

__all__ = ["GENERATION_OUT", "GPU_MODEL_SCHEMA_VERSION", "E2eCase", "fit_all", "load_gpu_model",
           "protocol_summary", "run"]

#: The part of a synchronous eager call's floor that a queued call does not pay: the
#: synchronisation round trip (cudaDeviceSynchronize / event wait), a few microseconds.
SYNC_S = 8e-6
#: Host time of a view/metadata operator and of one ``nn.Module`` call in eager PyTorch
#: (Python dispatch without a kernel); order-of-magnitude figures, not fitted.
VIEW_S = 2e-6
MODULE_S = 4e-6
#: Share of held-out cases the band is sized to cover.
COVERAGE = 0.8


@dataclass(frozen=True)
class E2eCase:
    model: str
    seq_len: int
    batch: int
    device: str
    mode: str
    measured_s: float
    predicted_s: float
    held_out: bool

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s


def _rows(data_dir: Path, group: str, sample: int | None) -> Any:
    from chipfit.pipelines.gpu_data import load_kernel_rows

    return load_kernel_rows(data_dir, GROUPS[group][0], sample=sample)


def fit_all(rows: Mapping[str, Any], exclude: str | None = None) -> dict[str, FitResult]:
    """Fit every group, optionally without GPU ``exclude``; later groups start from earlier
    fits (the power model fitted on GEMMs is used by the elementwise compute term)."""
    from chipfit.hardware.gpu_arch import gpu_figures

    devs = gpu_figures()
    params = GpuParams.of(DEFAULTS)
    fits = {}
    for group, data in rows.items():
        use = data if exclude is None else data.subset(data.device != exclude)
        fits[group] = fit_group(group, use, devs, params)
        params = fits[group].params
    # no GPU of the data has single-issue SMs: that factor comes from a published figure
    params = params.with_values(gemm_single_issue=single_issue_from_evidence(params))
    return {g: FitResult(params, f.floors) for g, f in fits.items()}


def host_costs(fits: Mapping[str, FitResult]) -> HostCosts:
    """Eager host cost per family: the median fitted floor over GPUs, less the sync; and each
    GPU's machine relative to that median host (its floors over the family medians, median
    over families: the five servers' hosts differ, not their GPUs' tiny kernels)."""
    per_op: dict[str, list[float]] = {}
    per_gpu: dict[str, dict[str, list[float]]] = {}
    for fit in fits.values():
        for (gpu, op), value in fit.floors.items():
            family = op if op in ("linear", "bmm", "conv", "ln", "softmax") else "elementwise"
            per_op.setdefault(family, []).append(value)
            per_gpu.setdefault(str(gpu), {}).setdefault(family, []).append(value)
    median = {f: float(np.median(v)) for f, v in per_op.items()}
    table = tuple(sorted((f, max(m - SYNC_S, 1e-6)) for f, m in median.items()))
    machines = tuple(sorted(
        (gpu, round(float(np.median([v / median[f] for f, vs in fams.items() for v in vs])), 3))
        for gpu, fams in per_gpu.items()))
    return HostCosts(table, VIEW_S, MODULE_S,
                     "median per-operator floor of synchronous eager calls in the NeuSight "
                     f"kernel data, less {SYNC_S * 1e6:.0f} us of synchronisation", machines)


def kernel_logo(rows: Mapping[str, Any], fits_without: Mapping[str, Mapping[str, FitResult]]
                ) -> dict[str, dict[str, float]]:
    """Group -> held-out GPU -> MAPE of that GPU's kernels under the fit without it."""
    from chipfit.hardware.gpu_arch import gpu_figures

    devs = gpu_figures()
    out: dict[str, dict[str, float]] = {}
    for group, data in rows.items():
        for gpu in sorted(np.unique(data.device)):
            test = data.subset(data.device == gpu)
            pred = predict_rows(test, devs, fits_without[str(gpu)][group])
            for op in sorted(np.unique(test.op)):
                m = test.op == op
                out.setdefault(str(op), {})[str(gpu)] = mape(pred[m], test.seconds[m])
    return out


def gpu_model(fits: Mapping[str, FitResult], band: float = 0.25,
              band_basis: str = "default") -> GpuModel:
    last = list(fits.values())[-1]
    return GpuModel(last.params, host_costs(fits), band, band_basis)


def e2e_cases(data_dir: Path, models: Callable[[str], GpuModel],
              held_out: bool, progress: Callable[[str], None] | None = None) -> list[E2eCase]:
    """Predict every end-to-end label with ``models(gpu)``; labels that cannot be traced
    shape-only (Switch's data-dependent expert routing) are skipped with a note."""
    from chipfit.errors import UnsupportedError
    from chipfit.hardware.gpu_arch import gpu_figures
    from chipfit.pipelines.gpu_data import load_e2e_labels

    devs = gpu_figures()
    traces: dict[tuple[str, int, int, str], Any] = {}
    cases = []
    for label in load_e2e_labels(data_dir):
        key = (label["model"], label["seq_len"], label["batch"], label["mode"])
        if key not in traces:
            if progress:
                progress(f"tracing {key[0]} seq {key[1]} batch {key[2]} {key[3]}")
            try:
                traces[key] = _trace_label(data_dir, *key)
            except UnsupportedError as exc:
                traces[key] = exc
        costs = traces[key]
        if isinstance(costs, Exception):
            continue
        est = estimate(costs, devs[label["device"]], models(label["device"]))
        cases.append(E2eCase(label["model"], label["seq_len"], label["batch"], label["device"],
                             label["mode"], label["seconds"], est.seconds, held_out))
    return cases


#: The heads the data's runs used, read off their op_labels (BERT inference ends in a
#: 2-way classifier on the pooled output, BERT training in the pre-training heads).
LABEL_HEADS = {("bert_large", "inference"): "BertForSequenceClassification",
               ("bert_large", "train"): "BertForPreTraining"}


@lru_cache(maxsize=32)  # labels of several GPUs share a trace; costs are immutable records
def _trace_label(data_dir: Path, model: str, seq_len: int, batch: int, mode: str) -> Any:
    """The data's runs used PyTorch 2.1 with transformers' eager attention (matmul, softmax,
    matmul: see op_labels), so the labels are traced with ``attention="eager"``."""
    from chipfit.workloads.gpu_trace import trace_config

    path = data_dir / "models" / f"{model}.json"
    return trace_config(path, batch, seq_len, mode=mode, attention="eager",
                        architecture=LABEL_HEADS.get((model, mode)))


def band_from(errors: Sequence[float], coverage: float = COVERAGE) -> float:
    """The multiplicative band ``e`` with ``coverage`` of cases inside [t/(1+e), t(1+e)]."""
    logs = np.abs(np.log1p(np.asarray(errors, float)))
    return float(math.expm1(np.quantile(logs, coverage))) if len(logs) else 0.5


def coverage(errors: Sequence[float], band: float) -> float:
    inside = [1.0 / (1 + band) <= 1 + e <= 1 + band for e in errors]
    return float(np.mean(inside)) if inside else math.nan


#: Generation-out protocols: fit on older GPUs only, test on newer ones (what users ask:
#: a GPU newer than any fitted). name -> (GPUs left out of the fit and tested).
GENERATION_OUT = {
    "newest-out (fit P4, P100, T4, V100; test A100)": ("a100-pcie-40gb",),
    "turing-and-ampere-out (fit P4, P100, V100; test T4, A100)": ("t4", "a100-pcie-40gb"),
    "volta-and-turing-out (fit P4, P100, A100; test V100, T4)": ("v100-pcie-32gb", "t4"),
    # two and three generations ahead, as Hopper/Blackwell are from the data's newest GPU
    "pascal-only (fit P4, P100; test V100, T4, A100)": ("v100-pcie-32gb", "t4",
                                                        "a100-pcie-40gb"),
}


def fit_without_set(rows: Mapping[str, Any], excluded: Sequence[str]) -> dict[str, FitResult]:
    """:func:`fit_all` on every GPU but ``excluded``."""
    use = {g: r.subset(~np.isin(r.device, sorted(excluded))) for g, r in rows.items()}
    return fit_all(use)


def generation_out(data_dir: Path, rows: Mapping[str, Any],
                   progress: Callable[[str], None] | None = None) -> dict[str, list[E2eCase]]:
    """Protocol name -> end-to-end cases of the GPUs it left out, predicted by the fit
    without them (:data:`GENERATION_OUT`)."""
    say = progress or (lambda s: None)
    out = {}
    for name, held in GENERATION_OUT.items():
        say(f"fitting for {name}")
        model = gpu_model(fit_without_set(rows, held))
        out[name] = [c for c in e2e_cases(data_dir, lambda g, m=model: m, True)
                     if c.device in held]
    return out


def protocol_summary(cases: Sequence[E2eCase], band: float) -> dict[str, Any]:
    """Mean and median APE, median signed error and the band's coverage of ``cases``, overall
    and per model and mode (``by_model_mode``: "bert_large inference" -> the same figures)."""
    summary = _summary([c.error for c in cases], band)
    if summary["cases"]:
        groups: dict[str, list[float]] = {}
        for c in cases:
            groups.setdefault(f"{c.model} {c.mode}", []).append(c.error)
        summary["by_model_mode"] = {k: _summary(v, band) for k, v in sorted(groups.items())}
    return summary


def _summary(errors: Sequence[float], band: float) -> dict[str, Any]:
    if not errors:
        return {"cases": 0}
    return {"cases": len(errors), "mean_ape": float(np.mean(np.abs(errors))),
            "median_ape": float(np.median(np.abs(errors))),
            "median_error": float(np.median(errors)), "band": band,
            "coverage": coverage(errors, band)}


def protocol_short(name: str) -> str:
    """A protocol's name without its parenthesised description (for narrow tables)."""
    return name.split(" (")[0]


def run(data_dir: str | Path, *, sample: int | None = 600, e2e: bool = True,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit on all GPUs, leave each out in turn, and return the model and its errors."""
    data_dir = Path(data_dir)
    if not (data_dir / "kernels").is_dir():
        raise UsageError(f"{data_dir} has no kernels/ folder: pass the gpu_kernels data directory")
    say = progress or (lambda s: None)
    rows = {g: _rows(data_dir, g, sample) for g in GROUPS}
    say("fitting on all GPUs")
    fits = fit_all(rows)
    gpus = sorted({str(d) for r in rows.values() for d in np.unique(r.device)})
    without = {}
    for gpu in gpus:
        say(f"fitting without {gpu}")
        without[gpu] = fit_all(rows, exclude=gpu)
    kernels = kernel_logo(rows, without)
    result: dict[str, Any] = {"kernels_logo": kernels, "gpus": gpus}
    cases: list[E2eCase] = []
    if e2e:
        cases = e2e_cases(data_dir, lambda g: gpu_model(without[g]), True, say)
        cases += e2e_cases(data_dir, lambda g: gpu_model(fits), False, say)
    held = [c.error for c in cases if c.held_out]
    band = band_from(held) if held else 0.25
    basis = (f"{int(COVERAGE * 100)}th percentile of leave-one-GPU-out end-to-end errors "
             f"({len(held)} cases)" if held else "default (no end-to-end check run)")
    model = gpu_model(fits, band, basis)
    protocols: dict[str, Any] = {}
    if e2e:
        protocols["leave-one-GPU-out"] = protocol_summary([c for c in cases if c.held_out], band)
        generation = generation_out(data_dir, rows, say)
        for name, gen_cases in generation.items():
            protocols[name] = protocol_summary(gen_cases, band)
        result["protocol_cases"] = generation
    result.update({"protocols": protocols})
    result.update({"e2e": cases, "band": band, "band_basis": basis,
                   "coverage": coverage(held, band) if held else math.nan, "model": model,
                   "rows": {g: len(r) for g, r in rows.items()}, "sample": sample})
    return result


def model_json(result: Mapping[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """The package-data form of a fitted model with its provenance and held-out errors."""
    model: GpuModel = result["model"]
    held = [c for c in result["e2e"] if c.held_out]
    return {
        "schema_version": GPU_MODEL_SCHEMA_VERSION,
        "provenance": {
            "data": "NeuSight GPU kernel data (Lee, Phanishayee, Mahajan, ASPLOS 2025; MIT), "
                    "shared/data/gpu_kernels",
            "data_dir": str(data_dir), "gpus": result["gpus"], "rows": result["rows"],
            "sample_per_op_and_gpu": result["sample"],
            "script": "benchmarks/gpu_predictor.py",
            "fitted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "params": dict(model.params.values),
        "host": {"per_kernel_s": dict(model.host.per_kernel), "view_s": model.host.view,
                 "module_s": model.host.module, "source": model.host.source,
                 "machines": dict(model.host.machines)},
        "band": model.band, "band_basis": model.band_basis,
        "errors": {
            "kernels_logo_mape": result["kernels_logo"],
            "e2e_logo": [{"model": c.model, "seq_len": c.seq_len, "batch": c.batch,
                          "device": c.device, "mode": c.mode, "measured_s": c.measured_s,
                          "predicted_s": c.predicted_s} for c in held],
            "e2e_logo_mape": mape([c.predicted_s for c in held], [c.measured_s for c in held])
            if held else None,
            "coverage": result["coverage"] if held else None,
            "protocols": result.get("protocols") or {},
        },
    }
