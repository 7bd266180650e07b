"""``chipfit llm``: will a language model fit, on how many devices, and how fast per token.

Gathers what :mod:`chipfit.analysis.llm` computes: the architecture (a built-in or a
``config.json``, read as plain JSON: no weights, no torch for catalog devices), each
hardware target's achievable rates (catalog peaks x documented efficiencies, or this
machine's ``chipfit calibrate`` results for ``local``), the fewest devices that hold the
run, and the prefill/decode prediction on them.

Which software stack a prediction assumes is explicit:

- ``optimized`` (catalog devices by default): a compiled serving stack in the manner of
  TensorRT-LLM (fused kernels, CUDA graphs: launch floor per op, no per-op host cost). Its
  times are scaled by factors fitted on the published TensorRT-LLM rows of
  ``hardware/data/llm_results.toml``; the band is their leave-one-out median error.
- ``llamacpp``: the same roofline with factors fitted on the published llama.cpp rows.
- ``eager`` (``local`` by default): PyTorch eager with transformers, as chipfit measures it
  (``benchmarks/llm_cpu.py``). On a calibrated local CPU the host time of a decode step
  (fixed + per layer) is measured here on tiny models of the same family; on catalog devices
  each ATen operator (counted on a tiny model) pays the catalog's per-op dispatch cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from chipfit.analysis.llm import (
    KV_DTYPES,
    OBJECTIVES,
    PREFILL_CHUNK_TOKENS,
    WEIGHT_DTYPES,
    LlmArch,
    LlmDevice,
    LlmPrediction,
    LlmRun,
    MemoryBreakdown,
    Scored,
    activation_bytes,
    canonical_dtype,
    devices_needed,
    fit_scale_offset,
    kv_bytes_per_token,
    loo_factors,
    max_batch,
    max_context,
    median,
    memory_breakdown,
    predict_llm,
    tp_candidates,
    weight_bytes,
)
from chipfit.errors import InvalidInputError, SchemaError, UsageError

__all__ = ["LlmReport", "LlmRow", "PublishedCase", "llm_report", "published_cases",
           "stack_factors", "target_device"]

LOCAL = "local"
LLM_RESULTS_SCHEMA_VERSION = 1  # history: 1 = first version
# Memory a serving process holds besides weights, KV cache and activations: CUDA context,
# cuBLAS/cuDNN workspaces, allocator slack (GPU/NPU); runtime and interpreter (CPU, TPU host).
# Estimated figures (order of magnitude of a CUDA context plus workspaces), not measured.
OVERHEAD_BYTES = {"gpu": 1.0e9, "npu": 1.0e9, "tpu": 0.5e9, "cpu": 0.5e9}
# Latency per all-reduce call on top of the wire time: the catalog's kernel launch floor (an
# assumption; NCCL's small-message latency on NVLink is of this order).
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class LlmMeasured:
    """Real greedy generation of the run on this machine's CPU (random weights, transformers
    eager, a KV cache): the time to the first token and the median decode step."""

    ttft_s: float
    step_s: float
    steps: int
    batch: int
    dtype: str
    threads: int
    contended: bool | None
    contention_note: str = ""
    source: str = "measured"

    @property
    def decode_tokens_per_s(self) -> float:
        return 1.0 / self.step_s if self.step_s > 0 else math.nan

    def to_dict(self, prediction: LlmPrediction | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ttft_s": self.ttft_s, "decode_step_s": self.step_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "aggregate_tokens_per_s": self.batch * self.decode_tokens_per_s,
            "decode_steps": self.steps, "dtype": self.dtype, "threads": self.threads,
            "contended": self.contended, "contention": self.contention_note or None,
            "source": self.source}
        if prediction is not None:  # (predicted - measured) / measured
            out["prediction_error"] = {
                "decode_tokens_per_s": prediction.decode_tokens_per_s
                / self.decode_tokens_per_s - 1.0,
                "ttft_s": prediction.ttft_s / self.ttft_s - 1.0}
        return out


# what --measure runs here: float weights only (quantised formats need kernels transformers'
# eager CPU path does not have), at most this share of the memory, within the time budget
MEASURE_DTYPES = ("float32", "bfloat16")
MEASURE_MEMORY_SHARE = 0.5
MEASURE_BUDGET_S = 120.0


def measure_why_not(arch: LlmArch, run: LlmRun, row: LlmRow, budget_s: float) -> str:
    """Why the run cannot be measured on this CPU ("" when it can)."""
    if run.weight_dtype not in MEASURE_DTYPES:
        return (f"{run.weight_dtype} weights are not measured here (transformers eager on a "
                f"CPU runs {' or '.join(MEASURE_DTYPES)}); predicted only")
    if KV_DTYPES[run.kv_dtype] < WEIGHT_DTYPES[run.weight_dtype] and run.weight_dtype != "float32":
        return f"a {run.kv_dtype} KV cache is not measured here; predicted only"
    cap = row.memory_capacity
    if cap is not None and row.memory.total > MEASURE_MEMORY_SHARE * cap:
        return (f"needs {row.memory.total / 1e9:.1f} GB, over {MEASURE_MEMORY_SHARE:.0%} of "
                f"this machine's {cap / 1e9:.1f} GB; predicted only")
    p = row.prediction
    # a warm-up generation, then the measured one: about twice one generation's time
    seconds, how = (2.0 * p.total_s, "predicted") if p else (2.0 * _slow_cpu_s(arch, run),
                                                               "estimated at 1 GFLOP/s")
    if seconds > budget_s:
        return (f"{how} to take {seconds:.0f} s with its warm-up, over the {budget_s:.0f} s "
                "measuring budget (--measure-budget); predicted only")
    return ""


def _slow_cpu_s(arch: LlmArch, run: LlmRun) -> float:
    """A generation's time on a slow CPU (1 GFLOP/s, 1 ms of host time per layer and token):
    the bound used to decide whether to measure where nothing predicts this machine."""
    tokens = run.batch * (run.prompt_len + run.gen_len)
    return 2.0 * arch.active_params * tokens / 1e9 + run.gen_len * arch.layers * 1e-3


def measure_generation(cfg: Mapping[str, Any], run: LlmRun) -> LlmMeasured:
    """Greedy generation of ``run`` on torch's CPU with random weights: a warm-up pass over
    the full length (the first pass at each context length selects kernels), then the
    measured pass, watched for other processes sharing the machine."""
    import torch

    from chipfit.timing.contention import watch
    from chipfit.workloads.llm import build_model, greedy_generate

    dtype = "float32" if run.weight_dtype == "float32" else run.weight_dtype
    try:
        model = build_model(cfg, "cpu", dtype)
    except (ValueError, TypeError, KeyError, RuntimeError, ImportError) as exc:
        raise InvalidInputError(f"cannot build {cfg.get('_name', 'the model')} with transformers "
                                f"to measure it: {str(exc).splitlines()[0]}") from None
    vocab = int(model.config.vocab_size)
    ids = torch.randint(0, vocab, (run.batch, run.prompt_len),
                        generator=torch.Generator().manual_seed(0))
    greedy_generate(model, ids, run.gen_len)
    gen, evidence = watch(lambda: greedy_generate(model, ids, run.gen_len), "torch:cpu")
    steps = sorted(gen.step_s)
    step = steps[len(steps) // 2] if steps else math.nan
    return LlmMeasured(gen.prefill_s, step, len(steps), run.batch, dtype,
                       torch.get_num_threads(), evidence.contended, evidence.note)


@dataclass(frozen=True)
class LlmRow:
    """One hardware target's verdict and prediction for one run."""

    hardware: str
    name: str
    kind: str
    local: bool
    memory_capacity: float | None  # bytes per device (catalog or probed)
    devices_needed: int | None  # fewest tensor-parallel devices that hold the run
    memory: MemoryBreakdown  # per device, at devices_needed (or 1 when nothing fits)
    max_batch: int  # at the run's context, on devices_needed devices
    max_context: int  # at the run's batch, on devices_needed devices
    prediction: LlmPrediction | None
    why: str = ""  # why there is no prediction
    sweep: tuple[tuple[int, float, float], ...] = ()  # (batch, per-seq tok/s, aggregate)
    capacity_source: str = "catalog"  # or "measured" (this machine's memory, probed)
    source: str = "predicted"
    measured: LlmMeasured | None = None  # real generation here (``--measure``, local only)
    measured_why: str = ""  # why --measure did not measure this row

    @property
    def fits(self) -> bool | None:
        """Fits on ONE device (None: the device's memory is not known)."""
        return None if self.memory_capacity is None else self.devices_needed == 1

    def __str__(self) -> str:
        """One line: how many devices hold the run, first token and decode speed (with the
        prediction's band), and $ per 1M generated tokens where the catalog has a price."""
        from chipfit.timing.units import fmt_num, fmt_seconds

        p = self.prediction
        where = f"{self.hardware} ({self.name})"
        if self.devices_needed is None:
            return f"{where}: does not fit" + (f" ({self.why})" if self.why else "")
        devices = ("fits on one device" if self.devices_needed == 1 else
                   f"needs {self.devices_needed} devices (tensor-parallel)")
        if p is None:
            return f"{where}: {devices}; no prediction" + (f" ({self.why})" if self.why else "")
        money = (f", ${fmt_num(p.usd_per_million_tokens)} per 1M tokens"
                 if p.usd_per_million_tokens is not None else "")
        return (f"{where}: {devices}, first token {fmt_seconds(p.ttft_s)}, "
                f"{fmt_num(p.decode_tokens_per_s)} tok/s per sequence{money} "
                f"(predicted, ±{p.band:.0%})")

    def to_dict(self) -> dict[str, Any]:
        p = self.prediction
        return {"hardware": self.hardware, "name": self.name, "kind": self.kind,
                "local": self.local, "fits": self.fits, "devices_needed": self.devices_needed,
                "memory_capacity_bytes": self.memory_capacity,
                "memory_capacity_source": self.capacity_source,
                "memory_bytes": self.memory.to_dict(), "max_batch": self.max_batch,
                "max_context": self.max_context,
                "ttft_s": p.ttft_s if p else None,
                "decode_tokens_per_s": p.decode_tokens_per_s if p else None,
                "aggregate_tokens_per_s": p.aggregate_tokens_per_s if p else None,
                "bound": p.decode_bound if p else None,
                "prediction": p.to_dict() if p else None, "why": self.why or None,
                "tokens_per_s_vs_batch": [{"batch": b, "per_sequence": s, "aggregate": a}
                                          for b, s, a in self.sweep],
                "measured": self.measured.to_dict(p) if self.measured else None,
                "measured_why": self.measured_why or None,
                "source": self.source}


@dataclass(frozen=True)
class LlmReport:
    """``chipfit llm``'s answer: the model, the run, one row per hardware target."""

    arch: LlmArch
    run: LlmRun
    rows: tuple[LlmRow, ...]
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        """A short summary: the model and the run asked, then one line per hardware
        (:meth:`LlmRow.__str__`); ``.to_dict()`` has every figure."""
        r = self.run
        head = (f"{self.arch.name} ({self.arch.params / 1e9:.3g}B params, {r.weight_dtype}): "
                f"prompt {r.prompt_len}, generate {r.gen_len}, batch {r.batch}")
        return "\n".join([head, *(f"  {row}" for row in self.rows)])

    def to_dict(self) -> dict[str, Any]:
        a = self.arch
        return {"model": a.name, "architecture": {
                    "family": a.family, "params": a.params, "active_params": a.active_params,
                    "layers": a.layers, "hidden": a.hidden, "heads": a.heads,
                    "kv_heads": a.kv_heads, "head_dim": a.head_dim, "vocab": a.vocab,
                    "experts": a.experts, "experts_per_token": a.experts_per_token,
                    "source": a.source or "config"},
                "run": {"prompt_len": self.run.prompt_len, "gen_len": self.run.gen_len,
                        "batch": self.run.batch, "dtype": self.run.weight_dtype,
                        "kv_dtype": self.run.kv_dtype},
                "rows": [r.to_dict() for r in self.rows], "notes": list(self.notes)}


# -------------------------------------------------------------------------- devices


def _flat(rate: float | None) -> tuple[tuple[float, float], ...] | None:
    return None if rate is None or not math.isfinite(rate) else ((1.0, rate),)


def _eff(spec: Any, name: str, fallback: str = "matmul") -> float:
    from chipfit.errors import UnknownNameError

    try:
        return spec.efficiency(name).value
    except UnknownNameError:
        return spec.efficiency(fallback).value


def catalog_device(spec: Any) -> LlmDevice:
    """A catalog entry as achievable rates: peaks x the catalog's documented efficiencies x
    the share of its boost clock a GPU holds under its power cap (as the kernel route and
    the engine layer price it: ``predictors.sustained_share``)."""
    from chipfit.predictors import sustained_share

    held = sustained_share(spec.key)
    mm = _eff(spec, "matmul") * held
    curves = {"float32": _flat(spec.peak("fp32") and spec.peak("fp32") * mm),
              "bfloat16": _flat(spec.peak("bf16") and spec.peak("bf16") * mm),
              "float16": _flat(spec.peak("fp16") and spec.peak("fp16") * mm),
              "float8": _flat(spec.peak("fp8") and spec.peak("fp8") * _eff(spec, "matmul_fp8")
                              * held)}
    if spec.memory_bw is None:
        raise InvalidInputError(f"{spec.key}: memory bandwidth is not in the catalog")
    us = 1e-6
    link = spec.interconnect_bw
    return LlmDevice(
        key=spec.key, name=spec.name, kind=spec.kind, memory_bytes=spec.memory_bytes,
        matmul=tuple((k, v) for k, v in curves.items() if v),
        bandwidth=((1.0, spec.memory_bw * spec.efficiency("memory").value),),
        link_bw=link * spec.efficiency("memory").value if link else None,
        link_latency_s=spec.efficiency("kernel_floor_us").value * us or 5 * us,
        per_op_s=spec.efficiency("host_per_op_us").value * us,
        kernel_floor_s=spec.efficiency("kernel_floor_us").value * us,
        overlapped=spec.kind != "cpu", overhead_bytes=OVERHEAD_BYTES.get(spec.kind, 1e9),
        tdp_w=spec.tdp_w, price_usd_hr=spec.price_usd_hr, basis="catalog",
        notes=(() if link else (f"{spec.key}: no interconnect bandwidth in the catalog, so no "
                                "multi-device prediction",))
        + ((f"{spec.key}: matrix peaks x {held:.2f}, the boost-clock share it holds under its "
            f"{spec.tdp_w:.0f} W power cap (the GPU kernel models' fitted power term)",)
           if held < 1 and spec.tdp_w else ()))


#: a device-to-device link assumed where the catalog has none: PCIe 4.0 x16, ~25 GB/s per
#: direction in practice (an assumption, said in the row's notes)
ASSUMED_LINK_BW = 25e9


def with_assumed_link(dev: LlmDevice) -> LlmDevice:
    """``dev`` with a link for tensor/pipeline parallel traffic where the catalog has none:
    its host link (PCIe) where cataloged, else :data:`ASSUMED_LINK_BW`; the note says so."""
    from chipfit.hardware.catalog import load_catalog

    spec = load_catalog().get(dev.key)
    link = (spec.host_link_bw if spec is not None else None) or ASSUMED_LINK_BW
    kept = tuple(n for n in dev.notes if "no interconnect bandwidth" not in n)
    return replace(dev, link_bw=link, notes=kept + (
        f"{dev.key}: no interconnect figure in the catalog: tensor/pipeline-parallel traffic "
        f"assumed over {link / 1e9:.0f} GB/s (PCIe, assumed)",))


def calibrated_device(cal: Any, memory: float | None) -> LlmDevice:
    """This machine's device from its ``chipfit calibrate`` results (measured curves)."""
    return LlmDevice(
        key=cal.device, name=cal.name, kind=cal.kind, memory_bytes=memory or cal.memory_bytes,
        matmul=tuple((d, c) for d, c in cal.matmul if c), bandwidth=cal.bandwidth,
        per_op_s=cal.host_per_op_s, per_module_s=cal.host_per_module_s,
        overlapped=cal.kind != "cpu" and cal.asynchronous,
        overhead_bytes=OVERHEAD_BYTES.get(cal.kind, 0.5e9), basis="calibrated",
        notes=(f"calibrated {cal.created_at} (chipfit {cal.chipfit_version})",),
        streamed=cal.streamed, private_cache_bytes=cal.private_cache_bytes,
        llc_bytes=cal.llc_bytes)


@lru_cache(maxsize=4)
def eager_host_overhead(family: str = "llama", steps: int = 24) -> tuple[float, float]:
    """(fixed, per layer) seconds of one transformers-eager decode step that are not the
    roofs: measured here on 1- and 3-layer tiny models (64 wide, so their compute is
    negligible) with real greedy generation; the fast quantile (20th percentile) of the
    steps of each (the best of three runs), as chipfit calibrate takes a fast quantile, so
    other processes' bursts are left out. Where noise hides the layers' difference, the
    whole 1-layer step is split evenly between the fixed part and the layer."""
    fast = [_fast_step(family, layers, steps) for layers in (1, 3)]
    per_layer = (fast[1] - fast[0]) / 2
    if per_layer <= 0:
        return fast[0] / 2, fast[0] / 2
    return max(fast[0] - per_layer, 0.0), per_layer


def _fast_step(family: str, layers: int, steps: int) -> float:
    import torch

    from chipfit.workloads.llm import build_model, greedy_generate, tiny_config

    model = build_model(tiny_config(family, layers), "cpu")
    ids = torch.zeros((1, 8), dtype=torch.long)
    greedy_generate(model, ids, steps + 1)  # warm-up: every context length seen once
    quantiles = []
    for _ in range(3):  # the best of three runs: bursts of other processes fall out
        times = sorted(greedy_generate(model, ids, steps + 1).step_s)
        quantiles.append(times[len(times) // 5])
    return min(quantiles)


def _local_memory() -> float | None:
    from chipfit.hardware.cpu import probe_cpu

    return probe_cpu().memory_bytes


def _local_catalog_entry() -> Any:
    from chipfit.hardware.catalog import load_catalog
    from chipfit.hardware.cpu import probe_cpu

    facts = probe_cpu()
    return load_catalog().match(facts.name or "", facts.cores) if facts.name else None


def _is_torch_cpu(text: str) -> bool:
    """Whether ``text`` is a device id of torch's CPU (``torch:cpu``, ``torch:cpu@4t``); a
    malformed id is refused (not taken for the CPU because it starts like one)."""
    from chipfit.spec import DeviceRef

    ref = DeviceRef.parse(text)
    return ref.backend == "torch" and ref.is_cpu


def target_device(text: str) -> tuple[LlmDevice | None, str, bool]:
    """(device, why-not, local) for one ``--hardware`` entry."""
    if text == LOCAL or (":" in text and _is_torch_cpu(text)):
        from chipfit.errors import UnreliableError
        from chipfit.pipelines.calibrate import load_calibration, reusable

        cal, refused = load_calibration("torch:cpu"), ""
        try:
            cal = reusable(cal)  # one measured while the machine was shared is not used
        except UnreliableError as exc:
            cal, refused = None, f"{exc}; "
        if cal is not None:
            return calibrated_device(cal, _local_memory()), "", True
        spec = _local_catalog_entry()
        if spec is None or spec.memory_bw is None:
            return None, f"{refused}not calibrated: run chipfit calibrate --devices torch:cpu", True
        dev = catalog_device(spec)
        note = (f"{refused}local CPU not calibrated: catalog entry {spec.key} used (run chipfit "
                "calibrate --devices torch:cpu for measured rates)")
        return replace(dev, key="torch:cpu", memory_bytes=_local_memory() or dev.memory_bytes,
                       notes=dev.notes + (note,)), "", True
    from chipfit.hardware.catalog import load_catalog

    return catalog_device(load_catalog()[text]), "", False


# ------------------------------------------------------------------ eager op counts


@lru_cache(maxsize=16)
def eager_counts_per_layer(family: str) -> tuple[float, float]:
    """(ATen operators, ``nn.Module`` calls) per decoder layer of one decode step in
    transformers eager, counted on a 1- and a 2-layer tiny model of ``family`` (the
    difference is one layer's worth)."""
    import torch

    from chipfit.workloads.llm import build_model, count_module_calls, count_ops, tiny_config

    ops, modules = [], []
    ids = torch.zeros((1, 4), dtype=torch.long)
    for layers in (1, 2):
        model = build_model(tiny_config(family, layers), "cpu")
        ops.append(count_ops(model, ids)[1])
        modules.append(count_module_calls(model, ids))
    return float(ops[1] - ops[0]), float(modules[1] - modules[0])


def eager_ops_per_layer(family: str) -> float:
    """ATen operators per decoder layer of one eager decode step (see eager_counts_per_layer)."""
    return eager_counts_per_layer(family)[0]


def _counts(arch: LlmArch) -> tuple[float, float]:
    try:
        return eager_counts_per_layer(arch.family)
    except Exception:  # noqa: BLE001 - a family transformers cannot build tiny: use llama's
        return eager_counts_per_layer("llama")


#: the most sequences a serving replica runs at once by default: vLLM's max_num_seqs
SERVING_MAX_SEQS = 256


def kv_capacity_tokens(arch: LlmArch, run: LlmRun, dev: Any, tp: int, pp: int = 1,
                       token_budget: int = PREFILL_CHUNK_TOKENS, max_seqs: int = SERVING_MAX_SEQS
                       ) -> tuple[int, float]:
    """(KV-cache tokens one replica holds, bytes per device before the cache): the device's
    memory less the weights, one step's activations (a full token budget; every sequence's
    logits) and the overhead."""
    fixed = (weight_bytes(arch, run.weight_dtype) / (tp * pp) + dev.overhead_bytes
             + activation_bytes(arch, token_budget + max_seqs, max_seqs, run.act_bytes, tp))
    free = (dev.memory_bytes or 0.0) - fixed
    per_token = kv_bytes_per_token(arch, run.kv_dtype) * max(arch.kv_heads / tp, 1.0) \
        / arch.kv_heads / pp
    return (int(free / per_token) if free > 0 else 0), fixed


def simulate_published(arch: LlmArch, run: LlmRun, dev: Any, tp: int, concurrency: int,
                       requests: int) -> Any:
    """A published online-serving row (closed loop of ``concurrency``, ``requests`` sent,
    fixed lengths) through the simulator on the raw roofline (no stack factor: those are
    what the rows fit)."""
    from chipfit.analysis.serving import Engine, Workload, simulate, step_cost

    kv, _ = kv_capacity_tokens(arch, run, dev, tp)
    step = step_cost(arch, run, dev, tp)
    work = Workload(run.prompt_len, run.gen_len, None, concurrency, "fixed", requests)
    return simulate(step, Engine(max(kv, run.context), PREFILL_CHUNK_TOKENS, SERVING_MAX_SEQS),
                    work)


# ------------------------------------------------------------- published results


@dataclass(frozen=True)
class PublishedCase:
    """A published LLM result with chipfit's catalog prediction (raw and leave-one-out)."""

    id: str
    model: str
    hardware: str
    tp: int
    metric: str
    published: float
    unit: str
    predicted: float  # raw roofline, no stack factor
    loo_factor: float
    loo_error: float  # (corrected - published) / published
    stack: str
    source: str
    loo_request_s: float = 0.0  # the fixed time per request fitted without this row (prefill)
    prefill_tokens: int = 0  # batch x prompt: what a prefill tokens/s figure counts
    concurrency: int = 0  # an online-serving row's concurrent requests (0: a static batch)


def _results_data() -> dict[str, Any]:
    from importlib import resources

    from chipfit.hardware.catalog import _toml

    text = resources.files("chipfit.hardware").joinpath("data/llm_results.toml").read_text("utf-8")
    data = _toml().loads(text)
    version = data.get("schema_version")
    if not isinstance(version, int) or version > LLM_RESULTS_SCHEMA_VERSION:
        raise SchemaError(f"llm_results.toml has schema version {version}, newer than this "
                          "chipfit understands; upgrade chipfit")
    return data


def _predict_row(row: Mapping[str, Any]) -> float:
    from chipfit.workloads.llm import load_arch

    arch = load_arch(row["model"])
    run = LlmRun(row["input_len"], row["output_len"], row["batch"], row["precision"],
                 row.get("kv_dtype", "bfloat16"))
    dev = target_device(row["hardware"])[0]
    assert dev is not None
    metric = row["metric"]
    if row.get("concurrency"):  # an online-serving row: the serving simulator
        res = simulate_published(arch, replace(run, batch=1), dev, row.get("tp", 1),
                                 int(row["concurrency"]), int(row.get("requests", 200)))
        if metric == "ttft":
            return res.p("ttft", 50) * 1000.0
        if metric == "throughput":
            return res.output_tokens_per_s / row.get("tp", 1)
        raise InvalidInputError(f"llm_results.toml: {metric!r} is not an online-serving "
                                f"metric ({row['id']})")
    p = predict_llm(arch, run, dev, row.get("tp", 1), "optimized")
    if metric == "ttft":
        return p.ttft_s * 1000.0
    if metric == "prefill_tokens_per_s":
        return run.batch * run.prompt_len / p.ttft_s
    if metric == "decode_tokens_per_s":
        return p.decode_tokens_per_s
    if metric == "throughput":
        return p.throughput_tokens_per_s / p.tp
    raise InvalidInputError(f"llm_results.toml: unknown metric {metric!r} in {row['id']}")


# which factor (prefill or decode time) each published metric calibrates
_PHASE = {"ttft": "prefill", "prefill_tokens_per_s": "prefill", "throughput": "decode",
          "decode_tokens_per_s": "decode"}
# --stack -> (the analysis stack, the published stack family its factors come from)
STACKS = {"optimized": ("optimized", "TensorRT-LLM"), "tensorrt-llm": ("optimized", "TensorRT-LLM"),
          "llamacpp": ("optimized", "llama.cpp"), "vllm": ("optimized", "vLLM"),
          "compiled": ("optimized", "TensorRT-LLM"), "xla": ("optimized", "TensorRT-LLM"),
          "eager": ("eager", "")}
#: stacks with no published rows of their own: they borrow the family's factors above, and
#: their band is at least 50%
BORROWED = {"compiled", "xla"}


def _stack_family(stack: str) -> str:
    return stack.split(" ")[0]


def _group(r: Mapping[str, Any]) -> str:
    """The rows sharing a fitted efficiency: stack family and phase; decode on several
    devices apart (tensor parallelism adds synchronisation the roofline's all-reduce wire
    time does not hold, so its efficiency is fitted on its own rows)."""
    phase = _PHASE[r["metric"]]
    multi = "/tp" if phase == "decode" and r.get("tp", 1) > 1 else ""
    online = "/online" if r.get("concurrency") else ""
    return f"{_stack_family(r['stack'])}/{phase}{multi}{online}"


@lru_cache(maxsize=1)
def published_cases() -> tuple[PublishedCase, ...]:
    """Every published row predicted from the catalog, scored leave-one-out: each row's
    prediction is scaled by the median published/predicted ratio of the other rows of the
    same stack family and metric (a per-stack efficiency fitted without that row)."""
    data = _results_data()
    scored = [Scored(r["id"], _group(r),
                     float(r["value"]),
                     _predict_row(r), r["metric"] != "ttft",
                     (("row", r), ("source", data["sources"][r["source"]])))
              for r in data["results"]]
    out = []
    for s, k, e in loo_factors(scored):
        r = dict(s.extra)["row"]
        case = PublishedCase(s.id, r["model"], r["hardware"], r.get("tp", 1), r["metric"],
                             s.published, r["unit"], s.predicted, k, e, r["stack"],
                             dict(s.extra)["source"], prefill_tokens=r["batch"] * r["input_len"],
                             concurrency=int(r.get("concurrency", 0)))
        if _PHASE[r["metric"]] == "prefill":  # scale and a fixed time per request, LOO
            others = [o for o in scored if o.group == s.group and o.id != s.id]
            k2, c = fit_scale_offset([_first_token_s(o, o.published) for o in others],
                                     [_first_token_s(o, o.predicted) for o in others])
            pub, pred = _first_token_s(s, s.published), _first_token_s(s, s.predicted)
            corrected = k2 * pred + c
            error = (corrected / pub - 1.0) if r["metric"] == "ttft" else pub / corrected - 1.0
            case = replace(case, loo_factor=k2, loo_error=error, loo_request_s=c)
        elif r.get("concurrency"):  # online throughput: a scale and a host time per token
            others = [o for o in scored if o.group == s.group and o.id != s.id]
            k2, c = fit_scale_offset([1.0 / o.published for o in others],
                                     [1.0 / o.predicted for o in others])
            corrected = 1.0 / (k2 / s.predicted + c)
            case = replace(case, loo_factor=k2, loo_error=corrected / s.published - 1.0,
                           loo_request_s=c)
        out.append(case)
    return tuple(out)


def _first_token_s(s: Scored, value: float) -> float:
    r = dict(s.extra)["row"]
    return _seconds_to_first_token(r["metric"], r["batch"] * r["input_len"], value)


def _seconds_to_first_token(metric: str, prefill_tokens: int, value: float) -> float:
    """A prefill-phase figure (published or predicted) as seconds to the first token."""
    if metric == "ttft":
        return value / 1000.0  # the rows and _predict_row give milliseconds
    return prefill_tokens / value  # prefill tokens/s


def stack_factors(stack: str = "TensorRT-LLM") -> tuple[dict[str, float], float, str]:
    """(time factors {"prefill", "decode"}, band, basis) fitted on ALL published rows of the
    ``stack`` family: the median predicted/published speed ratio per phase (a time factor)."""
    cases = [c for c in published_cases() if _stack_family(c.stack) == stack]
    if not cases:
        return {}, 0.5, "default 50% (no published rows)"
    factors: dict[str, float] = {}
    k_online = math.nan
    online = [c for c in cases if _PHASE[c.metric] == "decode" and c.concurrency]
    if online:
        # a served stream: seconds per output token = k x the roofline's + the server's host
        # time per sequence and step (sampling, detokenising, streaming), fitted together
        k_online, factors["seq_s"] = fit_scale_offset([1.0 / c.published for c in online],
                                                      [1.0 / c.predicted for c in online])
    ratios = [c.predicted / c.published for c in cases
              if _PHASE[c.metric] == "decode" and c.tp == 1 and not c.concurrency]
    k = median(ratios) if ratios else k_online  # static rows first; else the online fit
    factors["decode"] = k if math.isfinite(k) else 1.0
    multi = [c.predicted / c.published for c in cases
             if _PHASE[c.metric] == "decode" and c.tp > 1 and not c.concurrency]
    k_tp = median(multi)  # decode on a tensor-parallel group, where rows exist
    factors["decode_tp"] = k_tp if math.isfinite(k_tp) else factors["decode"]
    # the prefill factor from static rows only: an online row's TTFT is mostly queueing
    # behind other requests' steps (and the server's host work), not the prefill's roofline
    prefill = [c for c in cases if _PHASE[c.metric] == "prefill" and not c.concurrency]
    pub = [_seconds_to_first_token(c.metric, c.prefill_tokens, c.published) for c in prefill]
    pred = [_seconds_to_first_token(c.metric, c.prefill_tokens, c.predicted) for c in prefill]
    if prefill:
        factors["prefill"], factors["request_s"] = fit_scale_offset(pub, pred)
    elif stack != "TensorRT-LLM":  # no static prefill rows: TensorRT-LLM's, borrowed
        borrowed = stack_factors("TensorRT-LLM")[0]
        factors["prefill"] = borrowed.get("prefill", 1.0)
        factors["request_s"] = borrowed.get("request_s", 0.0)
    from chipfit.predictors import band_for

    band, basis = band_for("llm", median(abs(c.loo_error) for c in cases),
                           f"leave-one-out median error on {len(cases)} published {stack} rows "
                           "(hardware/data/llm_results.toml)")
    devices = {c.hardware for c in cases}
    if len(devices) == 1:
        band, basis = max(band, 0.5), (f"at least 50%: the published {stack} rows are all on "
                                       f"{next(iter(devices))} (other devices unvalidated)")
    return factors, band, basis


# ----------------------------------------------------------------------- the report


def parse_run(prompt_len: int, gen_len: int, batch: int, dtype: str,
              kv_dtype: str | None = None) -> LlmRun:
    """An :class:`LlmRun` from CLI-style values (dtype aliases accepted; sizes bounded by
    :func:`chipfit.workloads.config_schema.check_run_size`)."""
    from chipfit.workloads.config_schema import MAX_BATCH, MAX_TOKENS, check_run_size

    for flag, value, high in (("--prompt-len", prompt_len, MAX_TOKENS),
                              ("--gen-len", gen_len, MAX_TOKENS), ("--batch", batch, MAX_BATCH)):
        check_run_size(flag, value, high)
    wd = canonical_dtype(dtype, WEIGHT_DTYPES, "weight dtype")
    kv_default = "float32" if wd == "float32" else ("float16" if wd == "float16" else "bfloat16")
    kv = canonical_dtype(kv_dtype or kv_default, KV_DTYPES, "KV-cache dtype")
    return LlmRun(prompt_len, gen_len, batch, wd, kv, 4.0 if wd == "float32" else 2.0)


@dataclass(frozen=True)
class _Fit:
    need: int | None
    tp: int
    memory: MemoryBreakdown
    max_batch: int
    max_context: int


def _fit(arch: LlmArch, run: LlmRun, cap: float | None, overhead: float, paged: bool = False,
         tp: int | None = None) -> _Fit:
    """Devices needed and, on that many, the memory, the largest batch and context.

    ``paged`` (serving stacks): prefill runs in chunks of ``PREFILL_CHUNK_TOKENS`` and the KV
    cache is paged, so the model needs room for the weights, one chunk and ONE sequence at
    full context; the batch runs as many sequences at once as the cache holds
    (``max_batch``), the rest waiting. Otherwise (eager ``generate``) the whole batch is
    prefilled at once and its KV cache allocated up front. ``tp``: the degree asked
    (``--tp``) instead of the fewest that fit."""
    chunk = PREFILL_CHUNK_TOKENS if paged else None
    need = devices_needed(arch, run, cap, overhead, chunk, paged) if cap else None
    use = tp or need or 1
    running = run.batch
    if paged and cap:
        running = max(1, min(run.batch, max_batch(arch, run, cap, overhead, use, chunk)))
    return _Fit(need, use, memory_breakdown(arch, run, use, overhead, batch=running, chunk=chunk),
                max_batch(arch, run, cap, overhead, use, chunk) if cap else 0,
                max_context(arch, replace(run, batch=1) if paged else run, cap, overhead, use,
                            chunk) if cap else 0)


def _row(arch: LlmArch, run: LlmRun, text: str, stack: str | None, tp: int | None = None
         ) -> LlmRow:
    try:
        dev, why, local = target_device(text)
    except (InvalidInputError, SchemaError) as exc:  # a catalog gap: a row note, not an abort
        from chipfit.hardware.catalog import load_catalog

        spec = load_catalog()[text]
        return LlmRow(spec.key, spec.name, spec.kind, False, spec.memory_bytes, None,
                      memory_breakdown(arch, run), 0, 0, None, f"{exc}: not predicted")
    if dev is None:
        return _verdict_only(arch, run, text, _local_memory() if local else None, why)
    cap = dev.memory_bytes
    chosen = stack or ("eager" if local else "optimized")
    paged = STACKS[chosen][0] != "eager"
    fit = _fit(arch, run, cap, dev.overhead_bytes, paged, tp)

    def row(prediction: LlmPrediction | None, why: str = "",
            sweep: tuple[tuple[int, float, float], ...] = ()) -> LlmRow:
        return LlmRow(dev.key, dev.name, dev.kind, local, cap,
                      fit.tp if tp and fit.need else fit.need, fit.memory,
                      fit.max_batch, fit.max_context, prediction, why, sweep,
                      capacity_source="measured" if local else "catalog")

    if cap is not None and fit.need is None:
        per = memory_breakdown(arch, replace(run, batch=1 if paged else run.batch), 64,
                               dev.overhead_bytes, chunk=PREFILL_CHUNK_TOKENS if paged else None)
        return row(None, f"does not fit even on {max(tp_candidates(arch))} tensor-parallel "
                         f"devices ({per.total / 1e9:.1f} GB per device at the most: weights "
                         f"{per.weights / 1e9:.1f}, KV cache {per.kv_cache / 1e9:.1f}, "
                         f"activations {per.activations / 1e9:.1f})")
    if tp and cap is not None and fit.memory.total > cap:
        return row(None, f"TP{tp} needs {fit.memory.total / 1e9:.1f} GB per device, over "
                         f"{cap / 1e9:.0f} GB (fewest that fit: TP{fit.need})")
    if fit.tp > 1 and dev.link_bw is None:
        dev = with_assumed_link(dev)
    if local and dev.basis == "calibrated" and chosen == "eager":
        base, per_layer = eager_host_overhead()  # measured once per process, only when needed
        dev = replace(dev, host_base_s=base, host_per_layer_s=per_layer)

    def predict(batch: int) -> LlmPrediction:
        return _predict(arch, replace(run, batch=batch), dev, fit.tp, chosen, local)

    sweep = tuple((b, *_rates(predict(b))) for b in BATCHES
                  if b == 1 or b <= fit.max_batch or cap is None)
    why = "" if cap else "memory capacity not in the catalog: fit not judged, one device predicted"
    running = run.batch
    if paged and cap and fit.max_batch < run.batch:
        running = max(fit.max_batch, 1)
        why = (f"the paged KV cache holds {running} of the {run.batch} sequences at full "
               f"context on TP{fit.tp}: predicted at {running} running together, the rest "
               "waiting (continuous batching)")
    return row(predict(running), why, sweep)


def _rates(p: LlmPrediction) -> tuple[float, float]:
    return p.decode_tokens_per_s, p.aggregate_tokens_per_s


def _predict(arch: LlmArch, run: LlmRun, dev: LlmDevice, tp: int, stack: str,
             local: bool) -> LlmPrediction:
    kind, family = STACKS[stack]
    if kind == "optimized":
        factors, band, basis = stack_factors(family)
        if dev.kind == "cpu":  # the published rows are all GPUs: no evidence for CPUs
            band, basis = max(band, 0.5), "default 50% (no published CPU rows for this stack)"
        if stack in BORROWED:
            band, basis = max(band, 0.5), (f"at least 50%: no published {stack} rows, "
                                           f"{family}'s factors borrowed")
        if tp > 1:
            factors = {**factors, "decode": factors.get("decode_tp", factors.get("decode", 1.0))}
        p = predict_llm(arch, run, dev, tp, kind, factors=factors, band=band, band_basis=basis)
        note = (f"assumes a compiled stack like {family} (fused kernels; launch floor per op, no"
                f" per-op host cost), times scaled by factors fitted on published {family} rows")
        if stack in BORROWED:
            note = (f"{stack} stack: no published rows of its own; the roofline scaled by "
                    f"{family}'s fitted factors")
    else:
        band = 0.25 if local else 0.5
        basis = ("calibration of this machine; see benchmarks/llm_cpu.py for the measured check"
                 if local else "default 50% (eager PyTorch on catalog devices is not validated)")
        # operator counts only where the host cost is not measured per layer already
        ops, modules = _counts(arch) if not dev.host_per_layer_s else (0.0, 0.0)
        p = predict_llm(arch, run, dev, tp, kind, eager_ops_per_layer=ops,
                        eager_modules_per_layer=modules, band=band, band_basis=basis)
        note = "assumes PyTorch eager with transformers (per-op dispatch cost included)"
    return replace(p, notes=p.notes + (note,))


def _verdict_only(arch: LlmArch, run: LlmRun, key: str, cap: float | None, why: str) -> LlmRow:
    fit = _fit(arch, run, cap, OVERHEAD_BYTES["cpu"])
    return LlmRow(key, "this machine's CPU", "cpu", True, cap, fit.need, fit.memory,
                  fit.max_batch, fit.max_context, None, why, capacity_source="measured")


def llm_report(model: str | Mapping[str, Any], hardware: Sequence[str], prompt_len: int = 512,
               gen_len: int = 128, batch: int = 1, dtype: str = "bfloat16",
               kv_dtype: str | None = None, stack: str | None = None, measure: bool = False,
               measure_budget_s: float = MEASURE_BUDGET_S,
               progress: Callable[[str], None] | None = None,
               tp: int | None = None) -> LlmReport:
    """Fit verdicts and predictions of ``model`` (a built-in name, a config.json path or a
    config dict) on each of ``hardware`` (catalog keys or ``local``). Pure arithmetic from the
    config for catalog devices: nothing is allocated.

    ``measure``: also run the generation for real on this machine's CPU (the ``local`` row,
    random weights) when it is small enough to finish within ``measure_budget_s``; the row
    then carries the measured times beside the prediction, or says why it was not measured.
    ``progress`` is handed a line before the measuring starts. ``tp``: predict on that many
    tensor-parallel devices instead of the fewest that hold the run.
    """
    from chipfit.workloads.llm import arch_from_config, load_config

    cfg = dict(model) if isinstance(model, Mapping) else load_config(model)
    arch = arch_from_config(cfg)
    run = parse_run(prompt_len, gen_len, batch, dtype, kv_dtype)
    if arch.max_context and run.context > arch.max_context:
        raise InvalidInputError(f"prompt + generation = {run.context} tokens exceeds "
                                f"{arch.name}'s {arch.max_context}-token context")
    if stack is not None and stack not in STACKS:
        from chipfit.errors import UnknownNameError

        raise UnknownNameError("stack", stack, STACKS)
    targets = _dedupe(t.strip() for t in hardware if t.strip())
    if not targets:
        raise UsageError("no hardware given: pass --hardware h100-sxm,l4,local ...")
    if measure and (not math.isfinite(measure_budget_s) or measure_budget_s <= 0):
        raise InvalidInputError("--measure-budget must be a positive number of seconds")
    if tp is not None and (tp <= 0 or arch.heads % tp):
        raise InvalidInputError(f"--tp must be a positive divisor of {arch.name}'s "
                                f"{arch.heads} attention heads")
    rows = tuple(_row(arch, run, t, stack, tp) for t in targets)
    if measure:
        if not any(r.local for r in rows):
            raise UsageError("--measure runs the model on this machine: add 'local' to "
                             "--hardware")
        rows = tuple(_measured_row(cfg, arch, run, r, measure_budget_s, progress)
                     if r.local else r for r in rows)
    notes = ("memory figures are per device of the tensor-parallel group, estimated; "
             f"framework overhead per device {OVERHEAD_BYTES['gpu'] / 1e9:.1f} GB on GPUs "
             "(estimated)",
             "energy per 1M tokens is at TDP (upper bound; host and cooling not included)")
    return LlmReport(arch, run, rows, notes)


def _measured_row(cfg: Mapping[str, Any], arch: LlmArch, run: LlmRun, row: LlmRow,
                  budget_s: float, progress: Callable[[str], None] | None) -> LlmRow:
    why = measure_why_not(arch, run, row, budget_s)
    if why:
        return replace(row, measured_why=why)
    if progress is not None:
        progress(f"measuring {arch.name} on this CPU: a warm-up generation, then the measured "
                 f"one ({run.batch} x {run.prompt_len} prompt tokens, {run.gen_len} generated)")
    return replace(row, measured=measure_generation(cfg, run))


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return [t for t in items if not (t in seen or seen.add(t))]


# ------------------------------------------------------------------------- advice

def _score(row: LlmRow, objective: str) -> float | None:
    p = row.prediction
    if p is None:
        return None
    value = {"latency": p.total_s, "throughput": p.throughput_tokens_per_s * 1.0,
             "cost": p.usd_per_million_tokens, "energy": p.kwh_per_million_tokens}[objective]
    return None if value is None or not math.isfinite(value) else value


@dataclass(frozen=True)
class LlmAdvice:
    """Hardware for a language model ranked by one objective, with what was left out.

    The ranking and the verdict are :mod:`chipfit.analysis.ranking`'s and
    :mod:`chipfit.analysis.verdict`'s, as for every other model: ties within the prediction
    bands, ordered by the stated secondary objectives; ``verdict.best`` is ``choice`` and the
    first of ``ranked``."""

    report: LlmReport
    objective: str
    ranked: tuple[tuple[LlmRow, float], ...]  # best first
    excluded: tuple[tuple[str, str], ...]  # (hardware, why)
    verdict: Any = None  # chipfit.analysis.verdict.Verdict over the rows' options
    ties: tuple[tuple[str, ...], ...] = ()
    tie_break: str = ""
    service: str = ""  # the service question's answer (chipfit.pipelines.serving), if asked
    service_report: Any = None

    @property
    def choice(self) -> str | None:
        return self.ranked[0][0].hardware if self.ranked else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.report.arch.name, "objective": self.objective,
                "choice": self.choice,
                "ranked": [{"hardware": r.hardware, "devices": r.devices_needed, "score": v,
                            "unit": OBJECTIVES[self.objective][1], "source": "predicted",
                            "band": r.prediction.band if r.prediction else None}
                           for r, v in self.ranked],
                "ties": [list(t) for t in self.ties], "tie_break": self.tie_break or None,
                "excluded": [{"hardware": h, "why": w} for h, w in self.excluded],
                "service": (self.service_report.to_dict() if self.service_report is not None
                            else None),
                "report": self.report.to_dict()}


def llm_option(row: LlmRow) -> Any:
    """A predicted row as a ranking :class:`~chipfit.analysis.evidence.Option` whose item is
    one generated token: latency is one request of the batch (prefill + decode), price and
    power are the devices' together, so throughput, $ per 1M and J per item are the row's
    tokens/s, $ per 1M tokens and energy per token."""
    from chipfit.analysis.evidence import Option

    p = row.prediction
    assert p is not None
    tokens = p.batch * p.gen_len
    return Option(device=row.hardware, kind=row.kind, name=row.name, present=False,
                  batch=tokens, latency_s=p.total_s, latency_source="predicted",
                  bound=p.decode_bound,
                  price_usd_hr=None if p.price_usd_hr is None else p.price_usd_hr * p.tp,
                  power_w=None if p.tdp_w is None else p.tdp_w * p.tp,
                  joules_per_item=(None if p.tdp_w is None else p.tdp_w * p.tp * p.total_s / tokens),
                  energy_source="estimated: TDP x time" if p.tdp_w is not None else "",
                  band=p.band, route="llm")  # stack: the row's label is its hardware alone


def advise_report(report: LlmReport, objective: str = "latency",
                  max_latency: float | None = None, budget: float | None = None) -> LlmAdvice:
    """Rank ``report``'s rows by ``objective`` through the shared ranking and verdict;
    ``max_latency`` (seconds per request) and ``budget`` (USD per 1M tokens) exclude rows."""
    from chipfit.analysis.evidence import Evidence, ModelFacts
    from chipfit.analysis.ranking import recommend
    from chipfit.analysis.verdict import settle
    from chipfit.errors import UnknownNameError

    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    scored, excluded = {}, []
    for row in report.rows:
        value = _score(row, objective)
        p = row.prediction
        if value is None:
            excluded.append((row.hardware, row.why or f"no {objective} figure"))
        elif max_latency is not None and p is not None and p.total_s > max_latency:
            excluded.append((row.hardware, f"{p.total_s:.3g} s per request (TTFT "
                                           f"{p.ttft_s * 1e3:.3g} ms + {p.gen_len - 1} x "
                                           f"{p.step_s * 1e3:.3g} ms) > --max-latency "
                                           f"{max_latency * 1e3:.3g} ms"))
        elif budget is not None and (p is None or p.usd_per_million_tokens is None
                                     or p.usd_per_million_tokens > budget):
            excluded.append((row.hardware, "over budget or no price in the catalog"))
        else:
            scored[row.hardware] = (row, value)
    options = tuple(llm_option(row) for row, _ in scored.values())
    ev = Evidence(ModelFacts(report.arch.name, int(report.arch.params), 0.0),
                  report.run.batch, "inference", options)
    rec, verdict = settle(recommend(ev, objective), ev)
    ranked = tuple(scored[o.device] for o in rec.ranked)
    return LlmAdvice(report, objective, ranked, tuple(excluded), verdict, rec.ties,
                     rec.tie_break)


def llm_advice(model: str | Mapping[str, Any], hardware: Sequence[str], objective: str = "latency",
               max_latency: float | None = None, budget: float | None = None,
               **run: Any) -> LlmAdvice:
    """Rank ``hardware`` for ``model`` by ``objective`` (latency, throughput, cost, energy);
    ``max_latency`` (seconds per request) and ``budget`` (USD per 1M tokens) exclude rows."""
    from chipfit.errors import UnknownNameError

    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    return advise_report(llm_report(model, hardware, **run), objective, max_latency, budget)


def is_llm(model: str) -> bool:
    """Whether ``model`` names a built-in LLM or a decoder-only ``config.json``. A ``.json``
    file's own defects, and its not being a decoder-only config, are raised (one line naming
    the field), not taken for "not a language model", which would send the file on to the
    model-file loaders (a JSON file is never a model file)."""
    from pathlib import Path

    from chipfit.workloads.llm import (
        ALIASES,
        BUILTIN_CONFIGS,
        arch_from_config,
        is_decoder_config,
        load_config,
    )

    key = ALIASES.get(model.lower(), model.lower())
    if key in BUILTIN_CONFIGS:
        return True
    folder = Path(model).is_dir() and (Path(model) / "config.json").exists()
    if not (model.endswith((".json", "/")) or folder):
        return False
    cfg = load_config(model)
    if model.endswith(".json"):
        arch_from_config(cfg)  # a bert or t5 config is refused here, in words
        return True
    return is_decoder_config(cfg)
