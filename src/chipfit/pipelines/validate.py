"""``chipfit validate``: how good are the predictions? Measured against the truth, twice.

1. **Local**: every built-in workload (the registry) at a few sizes on every local device
   (inference; without ``quick`` the training step too):
   predict from the stored calibration (``chipfit calibrate``; run first if missing), then
   measure with the same runner ``chipfit bench`` uses. Each case's error is
   ``(predicted - measured) / measured``.
2. **Published**: every row of ``hardware/data/reference_results.toml`` (MLPerf Inference,
   NVIDIA DeepLearningExamples) predicted from the catalog alone. The models are built from
   their published architectures on the meta device (no weights, no compute): ResNet-50 v1.5
   (transformers ``ResNetConfig`` defaults, 1000 classes) and BERT-large (24 layers, 1024
   hidden, 16 heads, 4096 intermediate). MLPerf rows run TensorRT / oneDNN INT8 engines:
   they are predicted as an *optimised stack* (matrix operators only, at INT8 with INT8 bytes;
   bias, normalisation and activations fused into them; one launch per inference; offline
   throughput at batch 256 for ResNet-50 and 64 for BERT), which is an upper bound. BERT rows
   use the full 384-token sequence, while NVIDIA's engines skip padding, so they are
   under-predicted. Published rows are also scored leave-one-out: each row's prediction is
   scaled by the median published/predicted speed ratio of the *other* rows of the same stack
   family and model, which estimates how well a stack efficiency learned from published
   results transfers to a new device.

MAPE here is the *median* absolute percentage error (robust to the odd outlier); the mean is
reported beside it. Local cases measured while the machine was shared, or too noisy, are left
out of both and counted (:mod:`chipfit.analysis.validation`); a stored calibration measured
while the machine was shared is measured again, and validation stops if the new one is too.
Nothing in this module prints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from chipfit.analysis.roofline import Prediction, Roofs, catalog_roofs, predict, scaled
from chipfit.analysis.validation import (
    Case,
    ReferenceCase,
    ValidationReport,
    engine_roofs,
    finite_fields,
    leave_one_out,
    optimized_stack,
    retyped,
)
from chipfit.cost.records import WorkloadCosts
from chipfit.errors import InvalidInputError
from chipfit.paths import check_schema, utc_now, write_json_atomic
from chipfit.predictors.fits import validation_path  # validate writes it, prediction reads it

__all__ = ["reference_cases", "save_validation", "load_validation", "validate"]

REFERENCE_DEVICES = {"T4": "t4", "A100 SXM 80GB": "a100-sxm-80gb", "L4": "l4",
                     "2x Xeon Platinum 8480+": "xeon-8480plus", "H100 SXM 80GB": "h100-sxm",
                     "V100 16GB": "v100-sxm2"}
OFFLINE_BATCH = {"resnet50": 256, "bert-large": 64}
SIZES_PER_WORKLOAD = {True: 3, False: 5}


# ----------------------------------------------------------------- published results

@lru_cache(maxsize=1)
def reference_rows() -> tuple[dict[str, Any], ...]:
    """The shipped reference results (``hardware/data/reference_results.toml``)."""
    from importlib import resources

    from chipfit.hardware.catalog import _toml

    data_file = resources.files("chipfit.hardware").joinpath("data/reference_results.toml")
    text = data_file.read_text("utf-8")
    data = _toml().loads(text)
    check_schema(data.get("schema_version", 0), 1, "reference_results.toml", "upgrade chipfit")
    return tuple(data["results"])


@lru_cache(maxsize=8)
def reference_model_costs(model: str, batch: int, seq_len: int = 384) -> WorkloadCosts:
    """FP32 eager costs of a published architecture, traced on the meta device."""
    import torch

    from chipfit.cost.torch import trace_torch

    with torch.device("meta"):
        net, inputs = _reference_model(model, batch, seq_len)
    with torch.inference_mode():
        return trace_torch(net, inputs, workload=model, size=str(batch), items=batch,
                           tensors="meta")


def _reference_model(model: str, batch: int, seq_len: int) -> tuple[Any, tuple[Any, ...]]:
    import torch

    if model == "resnet50":
        from transformers import ResNetConfig, ResNetForImageClassification

        net = ResNetForImageClassification(ResNetConfig(num_labels=1000)).eval()
        return net, (torch.empty(batch, 3, 224, 224),)
    if model == "bert-large":
        from transformers import BertConfig, BertModel

        cfg = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                         intermediate_size=4096)
        return BertModel(cfg, add_pooling_layer=False).eval(), (
            torch.zeros(batch, seq_len, dtype=torch.long),)
    raise InvalidInputError(f"no reference architecture for {model!r}")


def _reference_prediction(row: dict[str, Any]) -> tuple[Prediction, int]:
    from chipfit.hardware.catalog import load_catalog

    spec = load_catalog()[REFERENCE_DEVICES[row["device"]]]
    optimized = row["scenario"].startswith("mlperf")
    batch = int(row.get("batch") or OFFLINE_BATCH[row["model"]])
    costs = reference_model_costs(row["model"], batch, int(row.get("seq_len") or 384))
    dtype = {"int8": "int8", "fp16-amp": "float16"}.get(row["precision"], "float32")
    roofs = catalog_roofs(spec, "torch", dtypes=(dtype,))
    if optimized:
        costs, roofs = optimized_stack(costs), engine_roofs(roofs)
    elif dtype == "float16":
        costs = retyped(costs, "float16", 0.5)
    count = int(row.get("accelerators") or 1)
    if not optimized and count == 1 and _gpu_model_key(spec):
        return _gpu_eager_prediction(row, spec.key, batch, dtype), batch
    return predict(costs, scaled(roofs, count)), batch


def _gpu_model_key(spec: Any) -> bool:
    from chipfit.hardware.gpu_arch import gpu_figures

    return spec.kind == "gpu" and spec.key in gpu_figures()


def _gpu_eager_prediction(row: dict[str, Any], key: str, batch: int, dtype: str) -> Prediction:
    """An eager PyTorch row on a GPU: the fitted kernel models on a trace of the model as a
    CUDA build runs it (fused attention), AMP rows with float16 matrix operators."""
    import torch

    from chipfit.predictors import predict_catalog
    from chipfit.workloads.gpu_trace import trace_for_gpu

    with torch.device("meta"):
        net, inputs = _reference_model(row["model"], batch, int(row.get("seq_len") or 384))
    with torch.inference_mode():
        costs = trace_for_gpu(net, inputs, workload=row["model"], size=str(batch), items=batch)
    if dtype == "float16":
        costs = retyped(costs, "float16", 0.5)
    return predict_catalog(costs, key)


def reference_cases(use_cache: bool = True) -> tuple[ReferenceCase, ...]:
    """Predict every published result from the catalog, then score it leave-one-out too.

    Tracing the models needs torch and transformers (seconds); the result is cached under the
    data directory, keyed by the chipfit version and the catalog and reference data.
    """
    path, key = _reference_cache()
    if use_cache and path.exists():
        from chipfit.paths import RUN_FILE_LIMIT, read_user_json

        try:
            data = read_user_json(path, RUN_FILE_LIMIT, "cache file")
            if data.get("key") == key:
                return tuple(ReferenceCase(**{k: (math.nan if v is None else v)
                                              for k, v in c.items()}) for c in data["cases"])
        except (InvalidInputError, AttributeError, ValueError, TypeError, KeyError):
            pass  # a damaged cache is recomputed
    cases = _compute_reference_cases()
    if use_cache:
        write_json_atomic(path, {"key": key, "cases": [finite_fields(asdict(c)) for c in cases]})
    return cases


def _reference_cache() -> tuple[Path, str]:
    import hashlib
    from importlib import resources

    from chipfit._version import __version__
    from chipfit.paths import data_dir

    digest = hashlib.sha256(f"{__version__}/cases-with-kind".encode())
    for name in ("catalog.toml", "reference_results.toml"):
        digest.update(resources.files("chipfit.hardware").joinpath(f"data/{name}").read_bytes())
    return data_dir() / "validation" / "references.json", digest.hexdigest()[:16]


def _compute_reference_cases() -> tuple[ReferenceCase, ...]:
    from chipfit.hardware.catalog import load_catalog

    cases = []
    for row in reference_rows():
        pred, batch = _reference_prediction(row)
        latency_ms = pred.seconds * 1e3
        value = pred.throughput if row["metric"] == "throughput" else latency_ms
        note = ("optimised-stack upper bound (INT8 engine)" if row["scenario"].startswith("mlperf")
                else "PyTorch eager")
        if row["model"] == "bert-large" and row["scenario"].startswith("mlperf"):
            note += "; full 384-token sequences (the engine skips padding)"
        cases.append(ReferenceCase(
            row["id"], row["model"], row["scenario"], row["stack"],
            REFERENCE_DEVICES[row["device"]], int(row.get("accelerators") or 1), batch,
            row["precision"], row["metric"], row["unit"], float(row["value"]), value,
            pred.resident_bound, row["source"], note=note,
            kind=load_catalog()[REFERENCE_DEVICES[row["device"]]].kind))
    return tuple(leave_one_out(cases))


# ------------------------------------------------------------------------ local cases

def _roofs_for(device: str, discovery: Any, quick: bool, progress: Callable[[str], None],
               recalibrate: bool) -> tuple[Roofs, str]:
    """The calibrated roofs of ``device``: the stored calibration, or a new one where there is
    none, ``recalibrate`` asks, or the stored one is refused (measured while the machine was
    shared, or missing its checks: said, then measured again). A new one that is refused too
    stops validation (UnreliableError): every case would be scored against the neighbours."""
    from chipfit.analysis.calibration import contention_of, refusal, roofs_from_calibration
    from chipfit.pipelines.calibrate import calibrate, load_calibration, save_calibration

    cal = None if recalibrate else load_calibration(device)
    if cal is not None and refusal(cal):
        contended, why = contention_of(cal)
        reason = (f"was measured while the machine was shared ({why or 'stored evidence'})"
                  if contended else f"misses its own held-out checks by {cal.check_mape:.0%}")
        progress(f"the stored calibration of {device} {reason}: measuring it again")
        cal = None
    if cal is None:
        progress(f"calibrating {device}")
        cal = calibrate(device, quick=quick, discovery=discovery,
                        progress=lambda s: progress(f"calibrating {device}: {s}"))
        save_calibration(cal)  # refuses one still measured while the machine was shared
    return roofs_from_calibration(cal), cal.created_at


def local_devices(discovery: Any) -> list[str]:
    """Every discovered device (the CPU through each framework, and any accelerator)."""
    return [d.ref for d in discovery.devices]


def _case(workload: Any, size: str, device: str, mode: str, roofs: Roofs, timing: Any,
          discovery: Any, costs_cache: dict[tuple[str, ...], WorkloadCosts]) -> Case:
    from chipfit.execute._worker import run_here  # watched for contention
    from chipfit.execute.costs import extract_costs
    from chipfit.spec import DeviceRef, Job

    ref = DeviceRef.parse(device)
    dtype = "float32"
    key = (workload.name, size, dtype, mode, ref.backend)
    try:
        if key not in costs_cache:
            costs_cache[key] = extract_costs(workload, size, dtype, mode, ref.backend)
        pred = predict(costs_cache[key], roofs)
    except Exception as exc:  # a workload the extractor cannot trace is a finding
        return Case(workload.name, size, dtype, mode, device, math.nan, math.nan,
                    status="error", note=f"prediction failed: {type(exc).__name__}: {exc}"[:200])
    m = run_here(Job(workload.name, size, ref, dtype, mode, timing), discovery)
    if not m.ok:
        return Case(workload.name, size, dtype, mode, device, pred.seconds, math.nan,
                    pred.bound, status=m.status, note=m.note[:200])
    return Case(workload.name, size, dtype, mode, device, pred.seconds, m.median_s, pred.bound,
                noisy=m.noisy or bool(m.contended), contended=bool(m.contended),
                spread=m.rel_iqr,
                note=f"measured while the machine was shared ({m.contention_note})"
                if m.contended else "")


def plan_cases(quick: bool, workloads: Sequence[str] | None = None,
               devices: Sequence[str] = ("torch:cpu",),
               sizes: Sequence[str] | None = None) -> list[tuple[Any, str, str, str]]:
    """(workload, size, device, mode): each workload's first sizes on each device it runs on;
    inference only with ``quick``, else training steps too."""
    from chipfit.spec import DeviceRef
    from chipfit.workloads import all_workloads, get_workload

    chosen = [get_workload(w) for w in workloads] if workloads else all_workloads()
    out = []
    for wl in chosen:
        ladder = sizes or wl.sizes(quick)[: SIZES_PER_WORKLOAD[quick]] or wl.sizes(False)[:2]
        modes = wl.modes[:1] if quick else wl.modes[:2]
        for device in devices:
            if DeviceRef.parse(device).backend in wl.backends():
                out += [(wl, wl.parse_size(s), device, m) for m in modes for s in ladder]
    return out


def validate(devices: Sequence[str] | None = None, *, quick: bool = True,
             workloads: Sequence[str] | None = None, sizes: Sequence[str] | None = None,
             timing: Any = None, references: bool = True, recalibrate: bool = False,
             progress: Callable[[str], None] | None = None,
             on_case: Callable[[Case], None] | None = None) -> ValidationReport:
    """Predict and measure built-in workloads locally, and score the published references."""
    from chipfit.discovery import discover, resolve_devices
    from chipfit.spec import TimingConfig

    progress = progress or (lambda s: None)
    started = utc_now()
    discovery = discover()
    refs = ([str(r) for r in resolve_devices(devices, discovery)] if devices
            else local_devices(discovery))
    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    roofs, calibrations = {}, []
    for device in refs:
        roofs[device], created = _roofs_for(device, discovery, quick, progress, recalibrate)
        calibrations.append((device, created))
    plan = plan_cases(quick, workloads, refs, sizes)
    cases: list[Case] = []
    cache: dict[tuple[str, ...], WorkloadCosts] = {}
    for i, (wl, size, device, mode) in enumerate(plan):
        progress(f"[{i + 1}/{len(plan)}] {wl.name} {size} {mode} on {device}")
        cases.append(_case(wl, size, device, mode, roofs[device], timing, discovery, cache))
        if on_case:
            on_case(cases[-1])
    progress("published results")
    refs_cases = reference_cases() if references else ()
    return ValidationReport(tuple(cases), refs_cases, started, utc_now(), quick, tuple(refs),
                            tuple(calibrations))


# ------------------------------------------------------------------------- storing


def save_validation(report: ValidationReport, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the report as JSON (atomically); the latest one feeds prediction bands."""
    return write_json_atomic(Path(path) if path is not None else validation_path(), report.to_dict())


def load_validation(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The summary of the last ``chipfit validate`` (a plain dict), or None."""
    from chipfit.predictors.fits import last_validation

    return last_validation(path)
