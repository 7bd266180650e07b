"""Language-model inference arithmetic: memory, fit verdicts, prefill and decode rooflines.

Pure: an :class:`LlmArch` (layer counts and widths from a transformers config), the run's
shape (:class:`LlmRun`) and a device's achievable rates (:class:`LlmDevice`) in, frozen
findings out. Nothing here imports torch or measures.

The model of one forward pass, per device of a tensor-parallel group of ``tp``:

- every matrix product is a roofline op (Williams et al., CACM 2009):
  ``max(flops / matmul_rate, bytes / bandwidth)``; its bytes are the weight slice (read once
  per step, whatever the batch: the reason decode is bandwidth-bound at small batch) plus
  activations;
- attention reads the KV cache: ``2 * layers * kv_heads * head_dim * kv_bytes`` per token of
  context (grouped-query attention stores ``kv_heads``, not ``heads``; Ainslie et al., "GQA",
  2023), and does ``4 * heads * head_dim * context`` FLOPs per query token (QK^T and AV);
- a mixture-of-experts layer reads the experts the batch touches: with ``E`` experts, ``k``
  per token and ``n`` tokens, ``E * (1 - (1 - k/E)^n)`` in expectation (uniform routing, an
  assumption), and computes ``k`` of them per token;
- tensor parallelism (Shoeybi et al., "Megatron-LM", 2019) splits heads and the MLP width and
  adds two all-reduces of the activations per layer; a ring all-reduce of ``m`` bytes over
  ``t`` devices moves ``2 (t-1)/t * m`` bytes per device over the link (Patarasuk and Yuan,
  2009), plus a fixed latency per call;
- per op a fixed cost: the host's dispatch (eager frameworks) and/or the kernel launch floor
  (compiled stacks with CUDA graphs pay only the floor).

Prefill of ``B`` prompts of ``L`` tokens is one pass over ``B*L`` tokens (causal attention:
``L(L+1)/2`` query-key pairs per head); the logits are taken for the last token only. Decode
is ``G-1`` further passes over ``B`` tokens, each at a longer context; the first generated
token comes out of prefill. The weight dtype sets the bytes of the linear layers (int4
carries a 16-bit scale per 128 weights, as GPTQ/AWQ group quantisation does); embeddings and
the LM head stay 16-bit under weight-only quantisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.analysis.roofline import curve_rate
from chipfit.cost.llm_arch import LlmArch
from chipfit.cost.records import rows_variant
from chipfit.errors import InvalidInputError, UnknownNameError

__all__ = [
    "OBJECTIVES", "WEIGHT_DTYPES", "KV_DTYPES", "LlmArch", "LlmRun", "LlmDevice",
    "MemoryBreakdown",
    "LlmPrediction", "PhaseTime", "kv_bytes_per_token", "memory_breakdown", "devices_needed",
    "max_batch", "max_context", "predict_llm", "tp_candidates", "loo_factors", "median",
    "fit_scale_offset", "PREFILL_CHUNK_TOKENS", "activation_bytes", "weight_bytes",
]

# bytes per weight; int4 = 4 bits + one 16-bit scale per group of 128 (GPTQ/AWQ default group)
WEIGHT_DTYPES: dict[str, float] = {
    "float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "int8": 1.0,
    "int4": 0.5 + 2.0 / 128,
}
KV_DTYPES: dict[str, float] = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "fp8": 1.0,
                               "int8": 1.0}
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32",
                 "float8": "fp8", "float8_e4m3fn": "fp8", "e4m3": "fp8", "w8": "int8",
                 "w4": "int4"}
# the matmul precision each weight dtype computes at (weight-only int8/int4 dequantise to 16 bit)
COMPUTE_DTYPE = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16",
                 "fp8": "float8", "int8": "bfloat16", "int4": "bfloat16"}
STACKS = ("optimized", "eager")
OBJECTIVES = {  # advice objective -> (what is ranked, unit, lower is better)
    "latency": ("time per request (TTFT + decode)", "s", True),
    "throughput": ("generated tokens/s for the batch", "tokens/s", False),
    "cost": ("dollars per 1M generated tokens", "USD", True),
    "energy": ("kWh per 1M generated tokens (at TDP)", "kWh", True),
}


def canonical_dtype(text: str, table: Mapping[str, float], what: str = "dtype") -> str:
    """``bf16`` -> ``bfloat16`` ...; unknown names raise with the known ones."""
    name = DTYPE_ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in table:
        raise UnknownNameError(what, text, table)
    return name


def median(values: Iterable[float]) -> float:
    """The median of the finite values; NaN if none."""
    xs = sorted(v for v in values if math.isfinite(v))
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


@dataclass(frozen=True)
class LlmRun:
    """What is asked: prompt and generation lengths, batch, weight and KV-cache dtypes."""

    prompt_len: int = 512
    gen_len: int = 128
    batch: int = 1
    weight_dtype: str = "bfloat16"
    kv_dtype: str = "bfloat16"
    act_bytes: float = 2.0  # activations at 16 bit (4.0 for float32 runs)

    def __post_init__(self) -> None:
        for name in ("prompt_len", "gen_len", "batch"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be positive")
        canonical_dtype(self.weight_dtype, WEIGHT_DTYPES, "weight dtype")
        canonical_dtype(self.kv_dtype, KV_DTYPES, "KV-cache dtype")

    @property
    def context(self) -> int:
        return self.prompt_len + self.gen_len


def kv_bytes_per_token(arch: LlmArch, kv_dtype: str = "bfloat16") -> float:
    """KV-cache bytes one token of context holds across all layers (K and V, GQA-aware)."""
    return 2.0 * arch.layers * arch.kv_heads * arch.head_dim * KV_DTYPES[kv_dtype]


def _kv_heads_per_device(arch: LlmArch, tp: int) -> float:
    # beyond kv_heads devices, KV heads are replicated (each device keeps at least one)
    return max(arch.kv_heads / tp, 1.0)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes on each device of a ``tp``-way group; every entry is ``estimated`` arithmetic."""

    weights: float
    kv_cache: float
    activations: float
    overhead: float
    tp: int = 1
    source: str = "estimated"

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead

    def to_dict(self) -> dict[str, float]:
        return {"weights": self.weights, "kv_cache": self.kv_cache,
                "activations": self.activations, "overhead": self.overhead,
                "total": self.total, "per_device": True, "tp": self.tp, "source": self.source}


def weight_bytes(arch: LlmArch, weight_dtype: str) -> float:
    """Bytes of all weights: linear layers at ``weight_dtype``, the rest at 16 bit at least."""
    wb = WEIGHT_DTYPES[weight_dtype]
    rest_b = max(wb, 2.0) if weight_dtype != "float32" else 4.0
    return arch.linear_params * wb + (arch.params - arch.linear_params) * rest_b


#: prompt tokens one serving step prefills at most (chunked prefill): TensorRT-LLM's default
#: ``max_num_tokens`` and vLLM's ``max_num_batched_tokens`` for chunked prefill are of this
#: order (8192); a serving stack's activations never hold more than one chunk.
PREFILL_CHUNK_TOKENS = 8192


def activation_bytes(arch: LlmArch, tokens: int, batch: int, act_bytes: float, tp: int,
                     chunk: int | None = None) -> float:
    """Peak transient activations of one layer's forward over ``tokens`` (prefill), plus the
    float32 logits of the last position per sequence. Layers run one after another, so one
    layer's worth is alive (inference keeps nothing for a backward pass).

    Per token: the residual stream and its normalised copy (``2 * hidden``, whole on every
    device), the q/k/v projections' outputs and the MLP's gate and up outputs (split over
    the ``tp`` devices). ``chunk``: a serving stack prefills at most this many tokens per
    step (chunked prefill), so at most ``chunk`` tokens are alive; None: all at once (eager
    ``generate``)."""
    alive = tokens if chunk is None else min(tokens, chunk)
    qkv = (arch.heads + 2 * arch.kv_heads) * arch.head_dim / tp
    mlp = 2 * arch.intermediate * min(arch.experts_per_token, arch.experts) / tp
    width = 2 * arch.hidden + qkv + mlp
    return alive * width * act_bytes + min(batch, alive) * arch.vocab * 4.0


def memory_breakdown(arch: LlmArch, run: LlmRun, tp: int = 1, overhead: float = 0.0,
                     batch: int | None = None, context: int | None = None,
                     chunk: int | None = None, pp: int = 1) -> MemoryBreakdown:
    """Per-device memory of serving ``run`` (or ``batch`` x ``context``) on ``tp`` x ``pp``
    devices (pipeline stages hold ``1/pp`` of the layers, weights and KV cache alike);
    ``chunk``: chunked prefill (see :func:`activation_bytes`)."""
    b = run.batch if batch is None else batch
    ctx = run.context if context is None else context
    kv = kv_bytes_per_token(arch, run.kv_dtype) * _kv_heads_per_device(arch, tp) / arch.kv_heads
    prompt = min(run.prompt_len, ctx)
    return MemoryBreakdown(weight_bytes(arch, run.weight_dtype) / (tp * pp), b * ctx * kv / pp,
                           activation_bytes(arch, b * prompt, b, run.act_bytes, tp, chunk),
                           overhead, tp)


def tp_candidates(arch: LlmArch, limit: int = 64) -> list[int]:
    """Tensor-parallel degrees that split the heads evenly: powers of two dividing ``heads``."""
    out, t = [], 1
    while t <= limit and arch.heads % t == 0:
        out.append(t)
        t *= 2
    return out


def devices_needed(arch: LlmArch, run: LlmRun, memory: float, overhead: float,
                   chunk: int | None = None, paged: bool = False) -> int | None:
    """The fewest devices (tensor parallel) whose memory holds ``run``; None if none does.
    ``paged``: a paged KV cache serves the batch as memory allows, so what must fit is the
    weights, one chunk's activations and ONE sequence at full context (the rest of the
    batch waits for KV blocks: :func:`max_batch` says how many run at once)."""
    for tp in tp_candidates(arch):
        b = 1 if paged else None
        if memory_breakdown(arch, run, tp, overhead, batch=b, chunk=chunk).total <= memory:
            return tp
    return None


def _largest(fits: Callable[[int], bool], limit: int) -> int:
    """The largest n >= 1 with ``fits(n)`` (0 if none), for ``fits`` true up to some n and
    false beyond: doubling up to ``limit``, then bisection."""
    lo, hi = 0, 1
    while hi < limit and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def max_batch(arch: LlmArch, run: LlmRun, memory: float, overhead: float, tp: int = 1,
              chunk: int | None = None) -> int:
    """The largest batch at ``run.context`` tokens that fits (0 if not even one)."""
    return _largest(lambda b: memory_breakdown(arch, run, tp, overhead, batch=b,
                                               chunk=chunk).total <= memory, 1 << 20)


def max_context(arch: LlmArch, run: LlmRun, memory: float, overhead: float, tp: int = 1,
                chunk: int | None = None) -> int:
    """The longest context (prompt + generated) at ``run.batch`` that fits (0 if none)."""
    return _largest(lambda c: memory_breakdown(arch, run, tp, overhead, context=c,
                                               chunk=chunk).total <= memory, 1 << 24)


# ----------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class LlmDevice:
    """One device's achievable rates for LLM serving.

    ``matmul`` maps a compute dtype (``bfloat16``, ``float8`` ...) to (FLOPs per op, FLOP/s)
    curves; ``bandwidth`` is (bytes per op, bytes/s). ``link_bw`` is the per-direction
    device-to-device bandwidth tensor parallelism uses (None: no multi-device prediction).
    ``per_op_s`` is host dispatch per operator (eager); ``kernel_floor_s`` the launch floor;
    ``overlapped``: host dispatch runs ahead of the device (accelerators) rather than on the
    same cores (CPUs).
    """

    key: str
    name: str
    kind: str
    memory_bytes: float | None
    matmul: tuple[tuple[str, tuple[tuple[float, float], ...]], ...]
    bandwidth: tuple[tuple[float, float], ...]
    link_bw: float | None = None
    link_latency_s: float = 0.0
    per_op_s: float = 0.0
    per_module_s: float = 0.0  # eager Python per nn.Module call (calibrated CPUs)
    # measured host time of one eager decode step outside the roofs: fixed + per layer
    # (0: count operators x per_op_s instead)
    host_base_s: float = 0.0
    host_per_layer_s: float = 0.0
    kernel_floor_s: float = 0.0
    overlapped: bool = True
    overhead_bytes: float = 0.0
    tdp_w: float | None = None
    price_usd_hr: float | None = None
    basis: str = "catalog"  # catalog (peaks x efficiencies) or calibrated (measured here)
    notes: tuple[str, ...] = ()
    # calibrated CPUs: few-row linear layers over weights streamed from beyond the private
    # caches, "<dtype>/stream_bw" (weight bytes/s) and "<dtype>/stream_fixed" (seconds per
    # matrix) over rows; and the private cache size that says when they apply
    streamed: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()
    private_cache_bytes: float | None = None
    llc_bytes: float | None = None

    def streamed_time(self, dtype: str, rows: float, nbytes: float, matrices: float,
                      working_set: float, tall: bool = False) -> float | None:
        """Seconds of ``matrices`` few-row linear layers of ``rows`` rows reading ``nbytes``
        in a pass whose ``working_set`` does not stay in the private caches, from the
        calibrated streamed curves; None where they do not apply (no curves, a pass small
        enough to stay cached, or more rows than were measured)."""
        if not self.streamed or working_set <= (self.private_cache_bytes or math.inf):
            return None
        curves = dict(self.streamed)
        suffix = "_tall" if tall and f"{dtype}/stream_bw_tall" in curves else ""
        bw = curves.get(f"{dtype}/stream_bw{suffix}")
        fixed = curves.get(f"{dtype}/stream_fixed{suffix}")
        if not bw or not fixed or rows > bw[-1][0]:
            return None  # beyond the rows measured: the compute roofline decides
        r = max(rows, 1.0)
        return matrices * curve_rate(fixed, r) + nbytes / curve_rate(bw, r)

    def rate(self, dtype: str, flops: float, rows: float = math.inf) -> float:
        """Achievable FLOP/s of one matmul; few-row products (decode) use the calibrated
        ``gemv``/``skinny`` curves where the device has them (their own kernel paths)."""
        curves = dict(self.matmul)
        variant = rows_variant(rows)
        used = self.rate_dtype(dtype)
        curve = (curves.get(f"{used}/{variant}") if variant else None) or curves.get(used)
        return curve_rate(curve or ((1.0, math.nan),), max(flops, 1.0))

    def rate_dtype(self, dtype: str) -> str:
        """The matmul dtype whose rate is used for ``dtype``: itself, else bfloat16, float16,
        float32 in that order (fp8 weights on a GPU without fp8 units dequantise to 16 bit;
        a GPU without bfloat16, such as the T4, runs the 16-bit work in float16)."""
        curves = dict(self.matmul)
        chain = (dtype, "bfloat16", "float16", "float32")
        return next((d for d in chain if d in curves), dtype)

    def bw(self, nbytes: float) -> float:
        return curve_rate(self.bandwidth, max(nbytes, 1.0))


# ------------------------------------------------------------------------ the roofline


@dataclass(frozen=True)
class Op:
    """``count`` identical operators of one forward pass on one device; ``flops`` and
    ``bytes`` are those of ONE of them."""

    name: str
    count: int
    flops: float
    bytes: float
    kind: str = "matmul"  # matmul | attention | allreduce | other
    rows: float = math.inf  # output rows of a matmul (tokens): picks the gemv/skinny path
    matrices: float = 1.0  # separate weight matrices (kernel calls) in ONE of them


def _moe_experts_read(arch: LlmArch, tokens: int) -> float:
    if arch.experts == 1:
        return 1.0
    e, k = arch.experts, arch.experts_per_token
    return e * (1.0 - (1.0 - k / e) ** tokens)


def forward_ops(arch: LlmArch, run: LlmRun, tokens: int, seqs: int, ctx: float, tp: int,
                prefill: bool, eager_ops: float = 0.0) -> list[Op]:
    """The operators of one forward pass over ``tokens`` new tokens of ``seqs`` sequences
    whose context reaches ``ctx``, per device of a ``tp`` group."""
    wb, ab = WEIGHT_DTYPES[run.weight_dtype], run.act_bytes
    kvb = KV_DTYPES[run.kv_dtype]
    h, hd, n = arch.hidden, arch.head_dim, tokens
    q_cols = arch.heads * hd / tp
    kv_cols = _kv_heads_per_device(arch, tp) * hd

    def lin(name: str, k: float, m: float, count: int = 1, weights: float = 1.0,
            matrices: float = 1.0) -> Op:
        return Op(name, count * arch.layers, 2.0 * n * k * m,
                  weights * k * m * wb + n * (k + m) * ab, rows=n, matrices=matrices)

    pairs = seqs * (tokens / seqs) * ((tokens / seqs) + 1) / 2 if prefill else n * ctx
    kv_read = seqs * ctx * 2 * kv_cols * kvb
    # GPT-2 projects q, k and v with one fused matrix; the others with three
    ops = [lin("qkv", h, q_cols + 2 * kv_cols, matrices=1.0 if arch.family == "gpt2" else 3.0),
           lin("o", q_cols, h),
           Op("attention", arch.layers, 4.0 * pairs * q_cols,
              kv_read + n * (q_cols * 2) * ab, "attention")]
    inter = arch.intermediate / tp
    touched = _moe_experts_read(arch, n)
    per_tok = arch.experts_per_token if arch.experts > 1 else 1
    mlp = Op("mlp", arch.layers, 2.0 * n * per_tok * arch.mlp_matrices * h * inter,
             touched * arch.mlp_matrices * h * inter * wb + n * per_tok * (2 * h + inter) * ab,
             rows=n * per_tok / touched, matrices=touched * arch.mlp_matrices)
    ops.append(mlp)
    head_b = max(wb, 2.0) if run.weight_dtype != "float32" else 4.0
    ops.append(Op("lm_head", 1, 2.0 * seqs * h * arch.vocab / tp,
                  h * arch.vocab / tp * head_b + seqs * arch.vocab * 4.0, rows=seqs))
    if tp > 1:
        ops.append(Op("allreduce", 2 * arch.layers, 0.0, n * h * ab, "allreduce"))
    if eager_ops:  # the eager count includes the operators listed above
        rest = int(round(eager_ops)) - sum(op.count for op in ops)
        ops.append(Op("other", max(rest, 0), 0.0, 0.0, "other"))
    return ops


def _op_time(op: Op, dev: LlmDevice, dtype: str, tp: int,
             working_set: float = 0.0) -> tuple[float, str]:
    """Seconds for ``op.count`` operators and what bounds them.

    The bandwidth is read at the pass's whole working set, not at one operator's bytes: a
    decode step streams every layer's weights once, so a layer's few MB come from DRAM when
    the pass's hundreds of MB do not fit the caches, although a probe of that one layer
    (repeated on the same buffer) runs from cache. Calibrated CPUs have such a size-dependent
    curve; catalog devices a flat rate, where this changes nothing."""
    if op.kind == "allreduce":
        if dev.link_bw is None:
            return math.nan, "interconnect"
        wire = 2.0 * (tp - 1) / tp * op.bytes / dev.link_bw
        return op.count * (wire + dev.link_latency_s), "interconnect"
    if op.kind == "other":
        return 0.0, "overhead"
    streamed = (dev.streamed_time(dtype, op.rows, op.bytes, op.matrices, working_set,
                                  tall=op.name == "lm_head") if op.kind == "matmul" else None)
    if streamed:  # measured as a decode step runs it: streaming and the few rows together
        return op.count * streamed, "bandwidth"
    compute = op.flops / dev.rate(dtype, op.flops, op.rows) if op.flops else 0.0
    memory = op.bytes / dev.bw(max(op.bytes, working_set)) if op.bytes else 0.0
    return op.count * max(compute, memory), ("compute" if compute >= memory else "bandwidth")


@dataclass(frozen=True)
class PhaseTime:
    """One forward pass: seconds and the seconds spent under each bound."""

    seconds: float
    parts: tuple[tuple[str, float], ...]  # bound -> seconds (compute, bandwidth, ...)

    @property
    def bound(self) -> str:
        return max(self.parts, key=lambda p: p[1])[0] if self.parts else "unknown"


def pass_time(ops: Sequence[Op], dev: LlmDevice, dtype: str, tp: int, eager: bool,
              modules: float = 0.0, layers: int = 0) -> PhaseTime:
    """Time of one forward pass: device roofs plus launch floors, with host dispatch either
    overlapped (accelerators: ``max``) or serial (CPUs: ``+``); eager stacks pay dispatch."""
    parts: dict[str, float] = {}
    device = 0.0
    n_ops = 0
    working_set = sum(op.count * op.bytes for op in ops if op.kind != "allreduce")
    for op in ops:
        t, bound = _op_time(op, dev, dtype, tp, working_set)
        parts[bound] = parts.get(bound, 0.0) + t
        device += t
        n_ops += op.count
    floor = n_ops * dev.kernel_floor_s
    host = 0.0
    if eager and dev.host_per_layer_s:
        host = dev.host_base_s + layers * dev.host_per_layer_s
    elif eager:
        host = n_ops * dev.per_op_s + modules * dev.per_module_s
    total = max(device + floor, host) if dev.overlapped else device + floor + host
    overhead = total - device
    if overhead > 0:
        parts["overhead"] = parts.get("overhead", 0.0) + overhead
    return PhaseTime(total, tuple(sorted(parts.items())))


@dataclass(frozen=True)
class LlmPrediction:
    """Prefill and decode of one run on ``tp`` devices of one kind (``source="predicted"``)."""

    hardware: str
    name: str
    tp: int
    stack: str
    ttft_s: float
    step_s: float  # mean decode step (one token for every sequence of the batch)
    prefill_bound: str
    decode_bound: str
    decode_parts: tuple[tuple[str, float], ...]
    batch: int
    gen_len: int
    band: float = 0.5
    band_basis: str = "default"
    tdp_w: float | None = None
    price_usd_hr: float | None = None
    notes: tuple[str, ...] = ()
    source: str = "predicted"

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second one sequence sees while decoding."""
        return 1.0 / self.step_s if self.step_s > 0 else math.nan

    @property
    def aggregate_tokens_per_s(self) -> float:
        """Generated tokens per second over the whole batch (decode only)."""
        return self.batch * self.decode_tokens_per_s

    @property
    def total_s(self) -> float:
        """Prefill plus the ``gen_len - 1`` decode steps after the first token."""
        return self.ttft_s + max(self.gen_len - 1, 0) * self.step_s

    @property
    def throughput_tokens_per_s(self) -> float:
        """Generated tokens per second end to end (prefill included), static batching."""
        return self.batch * self.gen_len / self.total_s

    def _per_million(self, per_device_hour: float | None) -> float | None:
        if per_device_hour is None or not math.isfinite(self.total_s):
            return None
        hours = self.total_s * 1e6 / (self.batch * self.gen_len) / 3600.0
        return per_device_hour * self.tp * hours

    @property
    def usd_per_million_tokens(self) -> float | None:
        return self._per_million(self.price_usd_hr)

    @property
    def kwh_per_million_tokens(self) -> float | None:
        """At TDP (an upper bound on the chips' draw; host and cooling not included)."""
        return self._per_million(None if self.tdp_w is None else self.tdp_w / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "stack": self.stack, "ttft_s": self.ttft_s,
                "decode_step_s": self.step_s, "decode_tokens_per_s": self.decode_tokens_per_s,
                "aggregate_tokens_per_s": self.aggregate_tokens_per_s,
                "throughput_tokens_per_s": self.throughput_tokens_per_s,
                "prefill_bound": self.prefill_bound, "bound": self.decode_bound,
                "decode_seconds_by_bound": dict(self.decode_parts),
                "allreduce_s_per_step": dict(self.decode_parts).get("interconnect", 0.0),
                "usd_per_million_tokens": self.usd_per_million_tokens,
                "kwh_per_million_tokens": self.kwh_per_million_tokens,
                "band": self.band, "band_basis": self.band_basis, "notes": list(self.notes),
                "source": self.source}


DECODE_SAMPLES = 16


def _decode_contexts(run: LlmRun) -> list[float]:
    steps = run.gen_len - 1
    if steps <= 0:
        return []
    k = min(steps, DECODE_SAMPLES)
    # midpoints of k equal slices of the decode steps (context prompt+1 .. prompt+gen-1)
    return [run.prompt_len + 1 + (i + 0.5) * steps / k - 0.5 for i in range(k)]


def predict_llm(arch: LlmArch, run: LlmRun, dev: LlmDevice, tp: int = 1, stack: str = "optimized",
                eager_ops_per_layer: float = 0.0, eager_modules_per_layer: float = 0.0,
                factors: Mapping[str, float] | None = None,
                band: float = 0.5, band_basis: str = "default") -> LlmPrediction:
    """Time to first token and decode step time of ``run`` on ``tp`` devices ``dev``.

    ``factors`` (``{"prefill": k, "decode": k}``) scale the roofline times: per-stack
    efficiencies fitted on published results (:func:`loo_factors`); 1 without them.
    ``"request_s"``, where fitted (:func:`fit_scale_offset`), is a serving stack's fixed time
    per request added to the time to first token (scheduling, sampling, the first token's
    return): what makes a short prompt's TTFT longer than its roofline.
    """
    if stack not in STACKS:
        raise UnknownNameError("stack", stack, STACKS)
    eager = stack == "eager"
    dtype = COMPUTE_DTYPE[run.weight_dtype]
    if run.act_bytes >= 4.0:
        dtype = "float32"
    extra = eager_ops_per_layer * arch.layers if eager else 0.0
    mods = eager_modules_per_layer * arch.layers
    b, p = run.batch, run.prompt_len
    n = arch.layers
    pre = pass_time(forward_ops(arch, run, b * p, b, p, tp, True, extra), dev, dtype, tp, eager,
                    mods, n)
    steps = [pass_time(forward_ops(arch, run, b, b, c, tp, False, extra), dev, dtype, tp, eager,
                       mods, n) for c in _decode_contexts(run)]
    f = dict(factors or {})
    step_s = (sum(s.seconds for s in steps) / len(steps)) if steps else 0.0
    parts: dict[str, float] = {}
    for s in steps:
        for k, v in s.parts:
            parts[k] = parts.get(k, 0.0) + v / len(steps)
    decode = PhaseTime(step_s, tuple(sorted(parts.items())))
    used = dev.rate_dtype(dtype)
    notes = dev.notes + ((f"{run.weight_dtype} weights on {dev.key}: no {dtype} matmul rate, "
                          f"the {used} rate is used",) if used != dtype else ())
    ttft = pre.seconds * f.get("prefill", 1.0) + f.get("request_s", 0.0)
    return LlmPrediction(dev.key, dev.name, tp, stack, ttft,
                         step_s * f.get("decode", 1.0), pre.bound, decode.bound if steps else "-",
                         decode.parts, b, run.gen_len, band, band_basis, dev.tdp_w,
                         dev.price_usd_hr, notes)


def bytes_per_decode_token(arch: LlmArch, run: LlmRun, ctx: float) -> float:
    """Bytes one batch-1 decode step must read (weights touched + KV cache), one device."""
    ops = forward_ops(arch, replace(run, batch=1), 1, 1, ctx, 1, False)
    return sum(op.count * op.bytes for op in ops if op.kind != "allreduce")


# ------------------------------------------------------------------ leave-one-out fits


@dataclass(frozen=True)
class Scored:
    """A published figure beside its prediction (``ratio = measured / predicted`` speed)."""

    id: str
    group: str  # rows sharing a fitted efficiency: stack family + metric
    published: float
    predicted: float
    higher_is_better: bool
    extra: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def ratio(self) -> float:
        r = self.published / self.predicted
        return r if self.higher_is_better else 1.0 / r


def loo_factors(rows: Sequence[Scored]) -> list[tuple[Scored, float, float]]:
    """Each row with its leave-one-out speed factor (median ratio of the *other* rows of its
    group) and the resulting relative error of the corrected prediction."""
    out = []
    for row in rows:
        others = [r.ratio for r in rows if r.group == row.group and r.id != row.id]
        k = median(others) if others else 1.0
        corrected = row.predicted * k if row.higher_is_better else row.predicted / k
        out.append((row, k, (corrected - row.published) / row.published))
    return out


#: fewest rows from which a scale and an offset are both fitted (else the scale alone)
MIN_OFFSET_ROWS = 4


def fit_scale_offset(published_s: Sequence[float],
                     predicted_s: Sequence[float]) -> tuple[float, float]:
    """``(k, c)`` such that ``k * predicted + c`` matches published times with the least
    squared *relative* error (each row weighs alike whatever its size); ``c >= 0`` seconds.

    Where fewer than :data:`MIN_OFFSET_ROWS` rows are given, or the best offset would be
    negative (no fixed cost is visible), ``c = 0`` and ``k`` is the median ratio.
    """
    pairs = [(p, q) for p, q in zip(published_s, predicted_s, strict=True)
             if p > 0 and q > 0 and math.isfinite(p) and math.isfinite(q)]
    if not pairs:
        return 1.0, 0.0
    ratio = median(p / q for p, q in pairs)
    if len(pairs) < MIN_OFFSET_ROWS:
        return ratio, 0.0
    # minimise sum((k q + c) / p - 1)^2: normal equations of x = (k, c), rows (q/p, 1/p)
    a11 = sum((q / p) ** 2 for p, q in pairs)
    a12 = sum(q / p**2 for p, q in pairs)
    a22 = sum(1 / p**2 for p, _ in pairs)
    b1 = sum(q / p for p, q in pairs)
    b2 = sum(1 / p for p, _ in pairs)
    det = a11 * a22 - a12 * a12
    if det <= 0:
        return ratio, 0.0
    k, c = (b1 * a22 - b2 * a12) / det, (a11 * b2 - a12 * b1) / det
    if c < 0 or k <= 0:
        return ratio, 0.0
    return k, c
