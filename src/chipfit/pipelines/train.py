"""``chipfit train``: will training fit, how long, on how many devices, for how much.

Resolves MODEL into what the pure plans need (:mod:`chipfit.analysis.train_plan`):

- a decoder LLM (an ``llm`` built-in such as ``llama-3.1-8b``, or a decoder ``config.json``):
  its architecture (:mod:`chipfit.cost.llm_arch`), sized analytically;
- any other torch model (a built-in workload such as ``resnet50``, a ``module:function``
  factory): one training step (forward, loss, backward) traced shape-only as a GPU runs it,
  at two large batch sizes: the slope of the tracer's peak of live bytes is the activations one
  sample keeps; the predictor (:func:`chipfit.predictors.predict_catalog`) prices the step
  on each catalog device.

Catalog devices become :class:`TrainDevice` values (peaks x the catalog's efficiencies; a
missing figure is an assumption, said in the row's notes). ``--measure`` runs a few real
training steps here on the CPU in a fresh subprocess (:mod:`chipfit.pipelines.train_measure`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from chipfit.analysis.train_plan import (
    Parallel,
    TrainDevice,
    TrainModel,
    TrainPlan,
    TrainSetup,
    largest_batch,
    largest_seq,
    llm_model,
    plan,
    rank_plans,
    search,
    stratum,
)
from chipfit.errors import InvalidInputError, UnsupportedError

__all__ = ["DEFAULT_HARDWARE", "TracedModel", "TrainReport", "bands", "device_efficiency",
           "efficiency", "train",
           "trace_model", "train_device"]

DEFAULT_HARDWARE = ("h100-sxm", "a100-sxm-80gb", "l4", "tpu-v5e")
#: Per-device network bandwidth across nodes where the catalog has none: 400 Gb/s
#: InfiniBand NDR per GPU (a DGX H100 node's eight ConnectX-7 ports), an assumption.
NETWORK_BW = 50e9
OVERHEAD_BYTES = {"gpu": 1.0e9, "npu": 1.0e9, "tpu": 0.5e9, "cpu": 0.5e9}
#: Largest sample/token counts accepted (a typo guard, not a physical limit).
MAX_SAMPLES = 1e15
MAX_DEVICES = 65536
#: The batch the traced step is priced at by the predictor.
TRACE_BATCH = 16
#: The batches whose peaks of live bytes give the activations' slope: large, so that
#: activations and not the gradients set the peak even of a small model (shape-only
#: tracing allocates nothing, whatever the batch).
SLOPE_BATCHES = (128, 256)


@dataclass(frozen=True)
class TracedModel:
    """A non-LLM model: its plan figures and its traced step (for the predictor)."""

    model: TrainModel
    costs: Any  # WorkloadCosts of one forward + backward at ``batch``, GPU flavour
    batch: int


@dataclass(frozen=True)
class TrainReport:
    """Everything ``chipfit train`` prints: plans best first, the verdict, notes."""

    model: str
    kind: str  # llm | traced
    params: int
    setup: TrainSetup
    samples: float
    tokens: float
    rows: tuple[TrainPlan, ...]
    verdict: str
    searched: bool
    deadline_s: float | None = None
    budget_usd: float | None = None
    measured: Any = None  # chipfit.pipelines.train_measure.Measured
    notes: tuple[str, ...] = ()
    efficiency: float = math.nan
    efficiency_basis: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "params": self.params,
                "setup": {"method": self.setup.method, "optimizer": self.setup.optimizer,
                          "precision": self.setup.precision,
                          "checkpointing": self.setup.checkpointing,
                          "lora_rank": self.setup.lora_rank,
                          "lora_targets": list(self.setup.lora_targets),
                          "seq_len": self.setup.seq_len if self.kind == "llm" else None},
                "samples": self.samples, "tokens": self.tokens or None,
                "deadline_s": self.deadline_s, "budget_usd": self.budget_usd,
                "verdict": self.verdict, "searched": self.searched,
                "efficiency": {"value": self.efficiency, "basis": self.efficiency_basis},
                "rows": [row_dict(r) for r in self.rows],
                "measured": self.measured.to_dict() if self.measured is not None else None,
                "notes": list(self.notes)}


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def row_dict(p: TrainPlan) -> dict[str, Any]:
    step = p.step
    return {"hardware": p.hardware, "hardware_name": p.hardware_name, "devices": p.devices,
            "parallel": p.parallel.label(), "checkpointing": p.checkpointing,
            "batch": p.batch, "global_batch": p.global_batch,
            "seq_len": p.seq_len, "fits": p.fits, "max_batch": p.max_batch,
            "max_seq_len": p.max_seq_len,
            "memory_bytes_per_device": p.memory.total,
            "capacity_bytes": p.capacity_bytes, "memory_breakdown": p.memory.to_dict(),
            "step_s": _num(p.step_s), "steps": p.steps, "total_s": _num(p.total_s),
            "low_s": _num(p.total_s / (1 + p.band)) if p.total_s else None,
            "high_s": _num(p.total_s * (1 + p.band)) if p.total_s else None,
            "usd": _num(p.usd), "kwh": _num(p.kwh), "mfu": _num(p.mfu),
            "time_breakdown": None if step is None else {
                "compute_s": step.compute_s, "optimizer_s": step.optimizer_s,
                "comm_s": step.comm_s, "exposed_comm_s": step.exposed_comm_s,
                "bubble_s": step.bubble_s, "comm_bytes_per_device": step.comm_bytes,
                "precision": step.precision_used},
            "band": p.band, "band_basis": p.band_basis,
            "memory_band": bands()["memory"][0], "memory_band_basis": bands()["memory"][1],
            "fits_with_band": (None if p.capacity_bytes is None else
                               p.memory.total * (1 + bands()["memory"][0]) <= p.capacity_bytes),
            "provenance": dict(p.provenance),
            "notes": list(p.notes)}


# --------------------------------------------------------------------------- devices


def _eff(spec: Any, name: str, fallback: str = "matmul") -> float:
    from chipfit.errors import UnknownNameError

    try:
        return float(spec.efficiency(name).value)
    except UnknownNameError:
        return float(spec.efficiency(fallback).value)


def train_device(spec: Any) -> TrainDevice:
    """A catalog entry as training figures; a missing link, price or TDP is said."""
    notes = []
    mem_eff = _eff(spec, "memory")
    link = spec.interconnect_bw
    if link is None and spec.host_link_bw:
        link = spec.host_link_bw
        notes.append(f"{spec.key}: no device interconnect in the catalog: the host link "
                     f"({spec.host_link_bw / 1e9:.0f} GB/s, PCIe) is assumed for collectives")
    chosen = spec.price()
    if chosen is None:
        notes.append(f"{spec.key}: no price in the catalog: no $ figure")
    else:
        notes.append(f"{spec.key}: ${chosen.usd_hr:.2f} per device-hour ({chosen.provider}, "
                     f"{chosen.date}; --price-basis {chosen.basis})")
    if spec.tdp_w is None:
        notes.append(f"{spec.key}: no TDP in the catalog: no kWh figure")
    network = None
    if spec.kind == "tpu":
        network = link  # the ICI spans the slice: no node boundary
    elif spec.kind in ("gpu", "npu"):
        network = NETWORK_BW
    if spec.memory_bw is None:
        raise UnsupportedError(f"{spec.key}: memory bandwidth is not in the catalog")
    peaks = {p: spec.peak(p) for p in ("fp32", "tf32", "bf16", "fp16", "fp8")
             if spec.peak(p)}
    return TrainDevice(
        key=spec.key, name=spec.name, kind=spec.kind, memory_bytes=spec.memory_bytes,
        peaks=peaks, matmul_eff=_eff(spec, "matmul"), memory_bw=spec.memory_bw * mem_eff,
        link_bw=link * mem_eff if link else None, network_bw=network,
        tdp_w=spec.tdp_w, price_usd_hr=chosen.usd_hr if chosen is not None else None,
        overhead_bytes=OVERHEAD_BYTES.get(spec.kind, 1e9),
        node_devices=1 << 30 if spec.kind == "tpu" else 8, notes=tuple(notes))


# ---------------------------------------------------------------------------- models


def is_llm(text: str) -> bool:
    """An ``llm`` built-in name or a decoder-only ``config.json``."""
    from chipfit.workloads.llm import ALIASES, BUILTIN_CONFIGS, is_decoder_config, load_config

    key = ALIASES.get(text.lower(), text.lower())
    if key in BUILTIN_CONFIGS:
        return True
    if text.endswith(".json"):
        return is_decoder_config(load_config(text))
    return False


def _source(text: str, inputs: Sequence[str]) -> tuple[str, Callable[[], Any],
                                                       Callable[[int], tuple[Any, ...]],
                                                       Callable[[Any, tuple[Any, ...]], Any]]:
    """(name, build a module, make inputs for a batch, run forward and return the loss)."""
    from chipfit.pipelines.model_predict import is_model_spec

    if is_model_spec(text) and not text.endswith(".json"):
        from chipfit.pipelines.model_predict import check_model
        from chipfit.workloads.user import first_tensor, load_model

        check_model(text, batch=1, seq_len=1, inputs=inputs)
        model = load_model(text, inputs=tuple(inputs))
        if not model.inputs:
            raise InvalidInputError(f"{text}: say the input shape with --input "
                                    "(e.g. 1x3x224x224)")

        def loss(module: Any, args: tuple[Any, ...]) -> Any:
            return first_tensor(module(*args), model.name).float().mean()

        return (model.name, model.fresh,
                lambda b: tuple(s.make(b, seed=i) for i, s in enumerate(model.inputs)), loss)
    from chipfit.workloads import get_workload

    wl = get_workload(text)
    if not (hasattr(wl, "make_model") and hasattr(wl, "make_inputs")):
        raise InvalidInputError(f"{wl.name} has no torch module to plan training for "
                                "(the model workloads, LLM built-ins and factories do)")
    fwd = wl.forward("train")

    def wl_loss(module: Any, args: tuple[Any, ...]) -> Any:
        return fwd(module, *args).loss

    return wl.name, wl.make_model, lambda b: tuple(wl.make_inputs(b, "train")), wl_loss


def _linear_dims(module: Any) -> tuple[tuple[int, int], ...]:
    import torch

    dims = []
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            dims.append((int(m.in_features), int(m.out_features)))
        elif isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)) and m.groups == 1:
            k = int(math.prod(m.kernel_size))
            dims.append((int(m.in_channels) * k, int(m.out_channels)))
    return tuple(dims)


def _config_model(path: str, seq_len: int, dtype: str) -> tuple[
        str, Any, Callable[[int], tuple[tuple[Any, ...], Callable[..., Any]]]]:
    """(name, a meta module, batch -> (inputs, step)) for a non-decoder ``config.json``."""
    from chipfit.workloads.gpu_trace import config_model, read_config

    read_config(path)  # checked, one line per bad field
    holder: dict[str, Any] = {}

    def at(b: int) -> tuple[tuple[Any, ...], Callable[..., Any]]:
        model, args, call = config_model(path, b, seq_len, dtype=dtype)
        holder["module"] = model.train()

        def step(*values: Any) -> Any:
            out = call(*values)
            first = out[0] if isinstance(out, tuple) else next(iter(out.values()))
            first.float().mean().backward()
            return first

        return args, step

    from pathlib import Path

    from chipfit.workloads.gpu_trace import hf_config

    positions = getattr(hf_config(read_config(path), path), "max_position_embeddings", None)
    if isinstance(positions, int) and 0 < positions < seq_len:
        raise InvalidInputError(f"--seq-len {seq_len} is longer than {path}'s "
                                f"{positions} positions: say --seq-len {positions} or less")
    at(1)

    return Path(path).stem, holder, at


def trace_model(text: str, inputs: Sequence[str] = (), dtype: str = "float32",
                batch: int = TRACE_BATCH, seq_len: int = 128,
                progress: Callable[[str], None] | None = None) -> TracedModel:
    """Trace one training step of a torch model (shape only, as a GPU runs it) at ``batch``
    (the costs the predictor prices) and at :data:`SLOPE_BATCHES` (the activations one sample
    keeps: the slope of the peak of live bytes) into a :class:`TrainModel`."""
    import torch

    from chipfit.workloads.gpu_trace import trace_for_gpu
    from chipfit.workloads.user import user_output_to_stderr

    config = text.endswith(".json")
    if config:  # a non-decoder transformers config: built on meta, traced on meta
        name, holder, at = _config_model(text, seq_len, dtype)
        module = holder["module"]
        tensors = "meta"
    else:
        name, build, make_inputs, loss = _source(text, inputs)
        with user_output_to_stderr():
            module = build()
        module = module.to(getattr(torch, dtype)).train()
        tensors = "fake"
    params = sum(int(p.numel()) for p in module.parameters())
    dims = _linear_dims(module)
    slope_batches = SLOPE_BATCHES if not config else (8, 16)  # seq x vocab logits per sample

    def traced(b: int) -> Any:
        if config:
            args, step = at(b)
        else:
            args = tuple(a.to(getattr(torch, dtype)) if a.is_floating_point() else a
                         for a in make_inputs(b))

            def step(*values: Any) -> Any:
                out = loss(module, values)
                out.backward()
                return out

        if progress:
            progress(f"tracing a training step of {name} at batch {b} (shape only)")
        try:
            with user_output_to_stderr():
                return trace_for_gpu(step, args, workload=name, size=str(b), dtype=dtype,
                                     mode="train-fwd-bwd", items=b, tensors=tensors,
                                     module=holder["module"] if config else module)
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise InvalidInputError(f"cannot trace a training step of {name} "
                                    f"({type(exc).__name__}: {first})") from None

    one = traced(batch)
    lo, hi = (traced(b) for b in slope_batches)
    if lo.peak_bytes is None or hi.peak_bytes is None:
        raise UnsupportedError(f"{name}: the tracer followed no live bytes")
    slope = max((hi.peak_bytes - lo.peak_bytes) / (slope_batches[1] - slope_batches[0]), 0.0)
    elem = 4.0 if dtype == "float32" else 2.0
    # forward + backward FLOPs per sample (matrix classes: what the predictor counts too)
    flops = one.flops / batch
    model = TrainModel(name, params, act_bytes_per_sample=slope * 4.0 / elem,
                       flops_per_sample=flops, linear_dims=dims, layers=max(len(dims), 1),
                       source=f"traced: {text}")
    return TracedModel(model, one, batch)


# ---------------------------------------------------------------------------- validation


@lru_cache(maxsize=1)
def _shipped_efficiency() -> dict[str, Any]:
    text = resources.files("chipfit.hardware.data").joinpath("train_fit.json").read_text()
    return json.loads(text)


def efficiency() -> tuple[float, str]:
    """The training efficiency (fraction of the catalog's achievable matmul rate) for a
    device without published rows, fitted by ``benchmarks/train_plan.py``, and its basis."""
    data = _shipped_efficiency()
    return float(data["efficiency"]), str(data["basis"])


def device_efficiency() -> dict[str, float]:
    """Device key -> the efficiency fitted on that device's own published rows."""
    return {k: float(v) for k, v in _shipped_efficiency().get("per_device", {}).items()}


def bands() -> dict[str, tuple[float, str]]:
    """Stratum (single, node, multi, memory) -> (band, basis); a stratum the shipped fit
    lacks gets a default 50% band, said so."""
    data = _shipped_efficiency()
    out = {k: (float(v["band"]), str(v["basis"])) for k, v in data["bands"].items()}
    for name in ("single", "node", "multi", "memory"):
        out.setdefault(name, (0.5, f"no out-of-fit evidence for stratum {name}: a default "
                                   "50% band"))
    return out


# ------------------------------------------------------------------------------- train


def _duration_h(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def train(model: str, *, samples: float | None = None, tokens: float | None = None,
          epochs: float = 1.0, method: str = "full", lora_rank: int = 16,
          lora_targets: Sequence[str] | None = None, optimizer: str = "adam",
          checkpointing: bool = False, precision: str = "bf16", parallel: str | None = None,
          hardware: Sequence[str] | None = None, devices: int | None = None,
          batch: int | None = None, seq_len: int = 2048, deadline_s: float | None = None,
          budget_usd: float | None = None, measure: bool = False, inputs: Sequence[str] = (),
          progress: Callable[[str], None] | None = None) -> TrainReport:
    """Plans for training ``model`` for ``samples`` (or ``tokens``) x ``epochs`` on catalog
    hardware: memory per device, step time, total time, $ and kWh; without ``devices``
    (or with a deadline or budget), a search over device count (x layout, unless
    ``parallel`` fixes it) x micro-batch; else the one layout and count asked for."""
    from chipfit.hardware.catalog import load_catalog

    _check_counts(samples, tokens, epochs, devices, batch, deadline_s, budget_usd)
    setup = TrainSetup(method=method, optimizer=optimizer, precision=precision,
                       checkpointing=checkpointing, lora_rank=lora_rank,
                       lora_targets=tuple(lora_targets) if lora_targets else
                       TrainSetup().lora_targets, batch=batch or 1, seq_len=seq_len)
    par = None
    if parallel is not None:
        from chipfit.analysis.train_plan import parse_parallel

        par = parse_parallel(parallel)
    catalog = load_catalog()
    keys = list(dict.fromkeys(hardware or DEFAULT_HARDWARE))
    for key in keys:
        catalog[key]  # UnknownNameError with a did-you-mean
    notes: list[str] = []
    devs = []
    for key in keys:
        spec = catalog[key]
        if spec.memory_bytes is None or spec.memory_bw is None:
            notes.append(f"{key}: memory or bandwidth not in the catalog: not planned")
            continue
        devs.append(train_device(spec))
    if not devs:
        raise InvalidInputError("none of the hardware named has the memory and bandwidth "
                                "figures a plan needs")
    traced: TracedModel | None = None
    llm = is_llm(model)
    if llm:
        from chipfit.workloads.llm import load_arch

        arch = load_arch(model)
        tmodel = llm_model(arch)
        name = arch.name
        if seq_len > 1 << 20:
            raise InvalidInputError("--seq-len above 1048576 tokens is not planned")
    else:
        if tokens is not None:
            raise InvalidInputError("--tokens is for language models: say --samples for "
                                    f"{model}")
        if par is not None and par.model_parallel > 1:
            raise InvalidInputError("tensor and pipeline parallel plans need a decoder LLM's "
                                    f"layer shapes; plan {model} with ddp, zero1-3 or fsdp")
        dtype = "float32" if precision == "fp32" else "bfloat16"
        traced = trace_model(model, inputs, dtype=dtype, seq_len=seq_len, progress=progress)
        tmodel = traced.model
        name = tmodel.name
    total = _samples(samples, tokens, epochs, setup.seq_len if llm else 1)
    eff, eff_basis = efficiency()
    band_map = bands()
    traced_s = _traced_seconds(traced, devs, notes) if traced is not None else {}
    searched = devices is None or deadline_s is not None or budget_usd is not None
    counts = [devices] if devices else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    if searched:
        from chipfit.analysis.train_plan import STRATEGIES

        named = parallel is not None and any(
            p.strip().lower() in STRATEGIES for p in parallel.split(","))
        strategies = (par.strategy,) if par and named else ("ddp", "zero1", "zero2", "zero3")
        rows = _search(tmodel, setup, devs, total, eff, band_map, counts, strategies, par,
                       batch, deadline_s, budget_usd, traced_s)
    else:
        rows = [_fixed(tmodel, setup, d, par or Parallel(), devices or 1, total, eff,
                       band_map, traced_s, batch) for d in devs]
        rows = rank_plans(rows, deadline_s, budget_usd) + [r for r in rows if not r.fits]
    rows = [_with_limits(r, tmodel, setup, devs) for r in rows]
    if traced is not None:
        rows = [_traced_band(r, traced_s) for r in rows]
    shown = {r.hardware for r in rows}
    for d in devs:
        if d.key not in shown and (tmodel.arch is not None or d.key in traced_s):
            hint = "" if checkpointing else " (--checkpointing keeps fewer activations)"
            notes.append(f"{d.key}: no plan fits, up to {max(counts) if searched else devices}"
                         f" devices{hint}")
    measured = None
    if measure:
        from chipfit.pipelines.train_measure import measure_training

        measured = measure_training(model, tmodel, setup, inputs=inputs, progress=progress)
    report = TrainReport(name, "llm" if llm else "traced", tmodel.params, setup, total,
                         total * setup.seq_len if llm else 0.0, tuple(rows), "", searched,
                         deadline_s, budget_usd, measured, tuple(dict.fromkeys(notes)), eff,
                         eff_basis, {"parallel": par.label() if par else None,
                                     "memory_band": band_map["memory"][0]})
    return replace(report, verdict=verdict(report, devs, tmodel, traced_s))


def _check_counts(samples: float | None, tokens: float | None, epochs: float,
                  devices: int | None, batch: int | None, deadline_s: float | None,
                  budget_usd: float | None) -> None:
    if (samples is None) == (tokens is None):
        raise InvalidInputError("say how much to train on: --samples N or --tokens N (one)")
    for flag, value, top in (("--samples", samples, MAX_SAMPLES), ("--tokens", tokens,
                                                                    MAX_SAMPLES),
                             ("--epochs", epochs, 1e6), ("--deadline", deadline_s, 1e10),
                             ("--budget", budget_usd, 1e12)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or not 0 < value <= top:
            raise InvalidInputError(f"{flag} must be a positive number up to {top:g}, "
                                    f"not {value!r}")
    for flag, value in (("--devices", devices), ("--batch", batch)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or \
                not 0 < value <= MAX_DEVICES:
            raise InvalidInputError(f"{flag} must be an integer from 1 to {MAX_DEVICES}, "
                                    f"not {value!r}")
    if deadline_s is not None and budget_usd is not None:
        raise InvalidInputError("say --deadline or --budget, not both")


def _samples(samples: float | None, tokens: float | None, epochs: float, seq: int) -> float:
    if tokens is not None:
        return float(tokens) * epochs / seq
    return float(samples) * epochs  # type: ignore[arg-type]


def _traced_seconds(traced: TracedModel, devs: Sequence[TrainDevice],
                    notes: list[str]) -> dict[str, tuple[Any, ...]]:
    """The predictor's seconds of the traced step on each device (one device)."""
    from chipfit.predictors import predict_catalog

    out = {}
    for d in devs:
        try:
            pred = predict_catalog(traced.costs, d.key)
        except UnsupportedError as exc:
            notes.append(f"{d.key}: not predicted: {exc}")
            continue
        # (seconds, batch, band, basis, split): split is (device seconds, host launch
        # seconds) where the route models them: the device's part grows with the batch, the
        # host's launches do not (step_time); None scales the seconds linearly
        split = ((float(pred.device_s), float(pred.host_s))
                 if pred.device_s is not None and pred.host_s is not None else None)
        out[d.key] = (pred.seconds, traced.batch, pred.band, pred.band_basis, split)
    return out


def _traced_band(row: TrainPlan, traced_s: Mapping[str, tuple[Any, ...]]) -> TrainPlan:
    """A traced model's row takes the wider of the predictor's band for its step on one
    device and the row's stratum band: on one device the single stratum's (published
    single-device training throughput against this same path, benchmarks/train_plan.py),
    across devices the node or multi stratum's (the scaling is the plan's)."""
    t = traced_s.get(row.hardware)
    if t is None:
        return row
    band, basis = float(t[2]), f"the predictor's band for {row.hardware} ({t[3]})"
    if row.band > band:
        band, basis = row.band, row.band_basis
    return replace(row, band=band, band_basis=basis)


def _search(tmodel: TrainModel, setup: TrainSetup, devs: Sequence[TrainDevice], total: float,
            eff: float, band_map: Mapping[str, tuple[float, str]], counts: Sequence[int],
            strategies: Sequence[str], par: Parallel | None, batch: int | None,
            deadline_s: float | None, budget_usd: float | None,
            traced_s: Mapping[str, tuple[Any, ...]]) -> list[TrainPlan]:
    devs = [d for d in devs if tmodel.arch is not None or d.key in traced_s]
    batches = (batch,) if batch else (1, 2, 4, 8, 16, 32, 64)
    if par is not None and (par.tp > 1 or par.pp > 1):
        found = []
        for d in devs:
            for n in counts:
                if n % par.model_parallel:
                    continue
                for strategy in strategies:
                    lay = Parallel(strategy, par.tp, par.pp)
                    for ck in ((True,) if setup.checkpointing else (False, True)):
                        found.append(_fixed(tmodel, replace(setup, checkpointing=ck), d, lay,
                                            n, total, eff, band_map, traced_s, batch))
        ranked = rank_plans(found, deadline_s, budget_usd)
        seen_keys: set[str] = set()
        return [p for p in ranked if not (p.hardware in seen_keys or seen_keys.add(p.hardware))]
    # checkpointing is searched too unless asked for: off, and on (recomputing the forward
    # to keep fewer activations)
    setups = [setup] if setup.checkpointing else [setup, replace(setup, checkpointing=True)]

    def found(on: Sequence[TrainDevice], margin: float) -> list[TrainPlan]:
        return [p for s in setups
                for p in search(tmodel, s, on, samples=total, efficiency=eff, bands=band_map,
                                counts=counts, deadline_s=deadline_s, budget_usd=budget_usd,
                                batches=batches, traced=traced_s, strategies=strategies,
                                device_efficiency=device_efficiency(), memory_margin=margin)]

    # plans that keep the memory band free first; a device with none of those gets its
    # tight plans (the table says "tight")
    plans = found(devs, band_map["memory"][0])
    have = {p.hardware for p in plans}
    plans += found([d for d in devs if d.key not in have], 0.0)
    best = rank_plans(plans, deadline_s, budget_usd)
    # one row per device type: its best plan (the search's order), then the rest by order
    seen: set[str] = set()
    first = [p for p in best if not (p.hardware in seen or seen.add(p.hardware))]
    return first


def _fixed(tmodel: TrainModel, setup: TrainSetup, dev: TrainDevice, par: Parallel, n: int,
           total: float, eff: float, band_map: Mapping[str, tuple[float, str]],
           traced_s: Mapping[str, tuple[Any, ...]], batch: int | None) -> TrainPlan:
    """The plan for one layout; without ``batch``, the largest power-of-two micro-batch up to
    64 that fits (1 when none does: the row then says it does not fit)."""
    b = batch
    if b is None:
        cap = (largest_batch(tmodel, replace(setup, batch=1), par, n, dev.memory_bytes,
                             dev.overhead_bytes, limit=64) if dev.memory_bytes else 1)
        b = 1 << max(cap.bit_length() - 1, 0) if cap else 1
    band, basis = band_map[stratum(n)]
    t = traced_s.get(dev.key)
    eff = device_efficiency().get(dev.key, eff)
    p = plan(tmodel, replace(setup, batch=b), par, n, dev, samples=total, efficiency=eff,
             band=band, band_basis=basis, traced_step_s=t[0] if t else None,
             traced_batch=t[1] if t else 0, traced_split=t[4] if t else None)
    if tmodel.arch is None and t is None:
        p = replace(p, step=None, usd=None, kwh=None, mfu=None)
    return p


def verdict(report: TrainReport, devs: Sequence[TrainDevice], tmodel: TrainModel,
            traced_s: Mapping[str, tuple[Any, ...]]) -> str:
    """The first line: the best fitting plan, and (for LoRA/QLoRA) what full training needs."""
    what = {"full": "Train", "lora": "Fine-tune with LoRA", "qlora": "Fine-tune with QLoRA"}
    best = next((r for r in report.rows if r.fits and r.total_s is not None), None)
    method = report.setup.method
    if best is None:
        cap = max((d.memory_bytes or 0) for d in devs)
        need = min((r.memory.total for r in report.rows), default=math.nan)
        if not math.isfinite(need):  # nothing fitted, so no row: the least any layout needs
            from chipfit.analysis.train_plan import layouts, memory_plan

            need = min(memory_plan(tmodel, replace(report.setup, batch=1), lay, 256,
                                   d.overhead_bytes).total
                       for d in devs for lay in layouts(tmodel, 256))
        fixed = report.extra.get("parallel")
        head = (f"{what[method].split(' with')[0]} {report.model} ({method}) fits none of the "
                "plans tried" + (f" with --parallel {fixed}" if fixed else "")
                + f" ({'other layouts need' if fixed else 'needs'} {need / 2**30:.1f} GiB per "
                f"device at best; the largest device has {cap / 2**30:.0f} GiB)")
        if not report.setup.checkpointing:
            head += "; --checkpointing keeps fewer activations"
        return head
    line = (f"{what[method]} on {best.devices}x {best.hardware_name}"
            f"{'' if best.layout == 'ddp' else f' ({best.layout})'}: "
            f"{_duration_h(best.total_s)}"
            + (f", ${best.usd:,.2f}" if best.usd is not None else ", no price in the catalog"))
    if report.deadline_s is not None and best.total_s > report.deadline_s:
        line += f" (misses the {_duration_h(report.deadline_s)} deadline: the fastest plan)"
    if report.budget_usd is not None and (best.usd is None or best.usd > report.budget_usd):
        line += f" (over the ${report.budget_usd:,.0f} budget: the cheapest plan)"
    if method != "full":
        full = _fewest_full(tmodel, report.setup, devs)
        if full:
            line += f"; full fine-tuning needs {full}"
        else:
            line += "; full fine-tuning fits none of these devices up to 256"
    return line


def _fewest_full(tmodel: TrainModel, setup: TrainSetup, devs: Sequence[TrainDevice]) -> str:
    """The fewest devices (ZeRO-3, batch 1, checkpointing: the least memory full training
    takes) that hold full training, over ``devs``."""
    from chipfit.analysis.train_plan import memory_plan

    full = replace(setup, method="full", batch=1, checkpointing=True)
    best: tuple[int, float, str] | None = None
    for d in devs:
        if d.memory_bytes is None:
            continue
        for n in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            strat = "ddp" if n == 1 else "zero3"
            if memory_plan(tmodel, full, Parallel(strat), n, d.overhead_bytes).total \
                    <= d.memory_bytes:
                cand = (n, -(d.memory_bytes or 0), f"{n}x {d.name}")
                best = cand if best is None or cand < best else best
                break
    return best[2] if best else ""


def _with_limits(row: TrainPlan, tmodel: TrainModel, setup: TrainSetup,
                 devs: Sequence[TrainDevice]) -> TrainPlan:
    """``row`` with the largest micro-batch (and, for a decoder, the longest sequence at the
    row's batch) that fit its layout."""
    dev = next(d for d in devs if d.key == row.hardware)
    if dev.memory_bytes is None:
        return row
    at = replace(setup, batch=row.batch, seq_len=row.seq_len)
    big = largest_batch(tmodel, replace(at, batch=1), row.parallel, row.devices,
                        dev.memory_bytes, dev.overhead_bytes)
    seq = (largest_seq(tmodel, at, row.parallel, row.devices, dev.memory_bytes,
                       dev.overhead_bytes) if tmodel.arch is not None else None)
    return replace(row, max_batch=big, max_seq_len=seq)
