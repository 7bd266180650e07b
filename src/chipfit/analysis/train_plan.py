"""Training and fine-tuning plans: memory per device, step time, time and cost to train.

Pure: a model's shape (:class:`TrainModel`: a decoder LLM's :class:`LlmArch`, or a traced
model's parameter count and activation bytes per sample), the training set-up
(:class:`TrainSetup`), a parallel layout (:class:`Parallel`) and a device's figures
(:class:`TrainDevice`) in; frozen findings out. Nothing here imports torch or reads a file.

Memory (bytes per device; every term is ``estimated`` arithmetic, named in the breakdown):

- model states (Rajbhandari et al., "ZeRO", SC'20, section 3.1): weights, gradients, the
  fp32 master copy of mixed precision and the optimizer state, per parameter:
  fp32 4+4+0, bf16 mixed 2+2+4, fp8 (Transformer Engine: bf16 weights plus an fp8 copy)
  3+2+4; Adam two fp32 moments (8 bytes), 8-bit Adam (Dettmers et al., 2022) 2 bytes,
  SGD with momentum 4 bytes. So bf16 mixed Adam is ZeRO's 16 bytes per parameter;
- LoRA (Hu et al., 2021) freezes the base (weights only, at the precision's weight bytes)
  and trains ``rank * (in + out)`` parameters per targeted matrix; QLoRA (Dettmers et al.,
  2023) stores the frozen linear layers in 4-bit NF4 with double-quantised block scales,
  4.127 bits per parameter (the paper's section 3), embeddings and the LM head at 16 bit;
- activations saved for the backward pass, per token of a decoder layer (the accounting of
  Korthikanti et al., "Reducing Activation Recomputation", 2022, for a model with fused
  (flash/SDPA) attention, so no ``seq x seq`` scores are kept): the norms' inputs and their
  fp32 normalised outputs, the Q/K/V projections (before and after rotary), the attention
  output, and the MLP's input, gate and up projections, its activation and product; plus the
  logits in the activation dtype and the fp32 copy and log-softmax the loss keeps. With
  gradient checkpointing (per layer, as transformers does it) only each layer's input is
  kept, plus one layer's activations while it is recomputed;
- a traced model's activations are what its traced forward + backward keeps per sample (the
  slope of the tracer's peak of live bytes over two batch sizes); checkpointed, they shrink
  to ``2 / sqrt(layers)`` (Chen et al., "Training deep nets with sublinear memory cost",
  2016: an assumption for models chipfit cannot split into layers itself);
- sharding: DDP replicates everything (and its gradient buckets copy the gradients:
  ``gradient_as_bucket_view=False``, PyTorch's default); ZeRO-1 shards the optimizer state
  and master weights over the data-parallel group, ZeRO-2 also the gradients, ZeRO-3/FSDP
  also the weights (two layers gathered at a time, the prefetch); tensor parallelism
  (Megatron-LM, Shoeybi et al., 2019) splits the layers' weights and their inner
  activations over ``tp``; pipeline parallelism over ``pp`` stages splits the layers, and
  under 1F1B each stage holds up to ``pp`` micro-batches of its layers' activations, so a
  stage keeps one full micro-batch's worth (Narayanan et al., SC'21).

Time per optimizer step (one micro-batch per data-parallel rank, no gradient accumulation):

- compute: model FLOPs (PaLM's ``6 N + 12 L h s`` per token, Chowdhery et al. 2022, appendix
  B; LoRA skips the frozen weights' gradients, ``4 N``; checkpointing recomputes the forward,
  ``+2 N``) over the device's achievable matmul rate at the precision, times a training
  efficiency fitted on published results (``hardware/data/train_results.toml``); a traced
  model's step comes from the predictor instead (:mod:`chipfit.predictors`);
- the optimizer update, bandwidth-bound: every trainable parameter's states read and written;
  QLoRA's dequantisation of each frozen 4-bit matrix per pass (read 4-bit, write and read 16-bit);
- communication per device (ring collectives, Patarasuk and Yuan 2009: an all-reduce moves
  ``2 (d-1)/d`` of the data per device, an all-gather or reduce-scatter ``(d-1)/d``): DDP and
  ZeRO-1/2 all-reduce the gradients (ZeRO-2 as reduce-scatter + all-gather: the same
  volume), ZeRO-3/FSDP all-gathers the weights twice (forward, backward) and
  reduce-scatters the gradients (1.5x DDP, the ZeRO paper's section 7); tensor parallelism
  all-reduces the activations four times per layer (two forward, two backward); pipeline
  stages send activations point to point and idle for the bubble ``(pp-1)/(m+pp-1)`` with
  ``m = 4 pp`` micro-batches (an assumption). Data-parallel traffic overlaps the backward
  pass for :data:`DP_OVERLAP` of its time (an assumption, stated in every plan); tensor- and
  pipeline-parallel traffic is on the critical path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from chipfit.cost.llm_arch import LlmArch
from chipfit.errors import InvalidInputError, UnknownNameError

__all__ = [
    "DP_OVERLAP", "METHODS", "OPTIMIZERS", "PRECISIONS", "STRATEGIES", "LORA_TARGETS",
    "MemoryPlan", "Parallel", "Precision", "StepTime", "TrainDevice", "TrainModel",
    "TrainPlan", "TrainSetup", "largest_batch", "largest_seq", "layouts", "llm_model",
    "lora_params", "rank_plans", "stratum",
    "memory_plan", "parse_parallel", "plan", "search", "step_time",
]


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each model state, and per activation element."""

    name: str
    weight: float
    grad: float
    master: float
    act: float
    compute: str  # the catalog peak the matmuls run at (fp32, bf16, fp8)


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 4.0, 4.0, 0.0, 4.0, "fp32"),
    "bf16": Precision("bf16", 2.0, 2.0, 4.0, 2.0, "bf16"),
    # Transformer Engine keeps bf16 weights and an fp8 copy; activations saved for the fp8
    # matmuls are fp8, the rest 16-bit: 1.5 bytes per element on average (an assumption)
    "fp8": Precision("fp8", 3.0, 2.0, 4.0, 1.5, "fp8"),
}
#: Optimizer state bytes per trainable parameter.
OPTIMIZERS: dict[str, float] = {"adam": 8.0, "adam8bit": 2.0, "sgd": 4.0}
METHODS = ("full", "lora", "qlora")
#: 4-bit NF4 with 64-weight blocks and double-quantised scales: 4.127 bits (QLoRA, sec. 3).
NF4_BYTES = 4.127 / 8
STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "fsdp")
#: A decoder LLM's linear layers LoRA can target (transformers' module names, short).
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
#: Fraction of data-parallel communication hidden behind the backward pass (an assumption:
#: PyTorch DDP and FSDP overlap gradient buckets with the remaining backward; measured
#: overlap varies with bucket size and model, so half is taken and said).
DP_OVERLAP = 0.5
#: Micro-batches per pipeline flush, per stage (m = 4 pp): the bubble's assumption.
PP_MICRO_PER_STAGE = 4
#: Devices one node holds: beyond it, data-parallel traffic crosses the network.
NODE_DEVICES = 8


@dataclass(frozen=True)
class TrainModel:
    """What the plans need of a model: its parameters and the activations it keeps.

    ``arch`` set: a decoder LLM, sized analytically from it (``seq_len`` matters). Otherwise a
    traced model: ``params``, ``act_bytes_per_sample`` (at float32, what forward + backward
    keeps per sample), ``flops_per_sample`` (forward + backward), ``linear_dims`` (in, out of
    each linear layer, for LoRA) and ``layers`` (for checkpointing and FSDP's gathered layer).
    """

    name: str
    params: int
    arch: LlmArch | None = None
    act_bytes_per_sample: float = 0.0
    flops_per_sample: float = 0.0
    linear_dims: tuple[tuple[int, int], ...] = ()
    layers: int = 1
    source: str = "estimated"

    @property
    def is_llm(self) -> bool:
        return self.arch is not None


def llm_model(arch: LlmArch) -> TrainModel:
    return TrainModel(arch.name, arch.params, arch=arch, layers=arch.layers,
                      source=arch.source or "config")


@dataclass(frozen=True)
class TrainSetup:
    """How the model is trained: method, optimizer, precision, micro-batch and length."""

    method: str = "full"
    optimizer: str = "adam"
    precision: str = "bf16"
    checkpointing: bool = False
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = LORA_TARGETS
    batch: int = 1  # micro-batch per data-parallel rank (sequences or samples)
    seq_len: int = 2048  # decoder LLMs only

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError("training method", self.method, METHODS)
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        for name in ("lora_rank", "batch", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{name.replace('_', '-')} must be a positive "
                                        f"integer, not {value!r}")
        bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if bad or not self.lora_targets:
            raise InvalidInputError(f"LoRA targets must be among {', '.join(LORA_TARGETS)}, "
                                    f"not {','.join(bad) or 'none'}")
        if self.method == "qlora" and self.precision == "fp32":
            raise InvalidInputError("QLoRA computes in 16 bit: use --precision bf16")

    @property
    def prec(self) -> Precision:
        return PRECISIONS[self.precision]


@dataclass(frozen=True)
class Parallel:
    """A parallel layout: a data-parallel strategy, tensor and pipeline degrees."""

    strategy: str = "ddp"
    tp: int = 1
    pp: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UnknownNameError("parallel strategy", self.strategy, STRATEGIES)
        for name in ("tp", "pp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                raise InvalidInputError(f"{name} must be an integer from 1 to 1024")

    @property
    def model_parallel(self) -> int:
        return self.tp * self.pp

    def label(self) -> str:
        parts = [self.strategy]
        parts += [f"tp={self.tp}"] if self.tp > 1 else []
        parts += [f"pp={self.pp}"] if self.pp > 1 else []
        return ",".join(parts)


def parse_parallel(text: str) -> Parallel:
    """``ddp``, ``fsdp``, ``zero1``..``zero3``, ``tp=2``, ``zero3,tp=2,pp=2`` ..."""
    if not isinstance(text, str) or not text.strip() or len(text) > 100:
        raise InvalidInputError("--parallel: say ddp, fsdp, zero1, zero2, zero3 and/or "
                                "tp=N,pp=N")
    strategy, tp, pp = "ddp", 1, 1
    for part in (p.strip().lower() for p in text.split(",")):
        if part in STRATEGIES:
            strategy = part
            continue
        key, sep, value = part.partition("=")
        if not sep or key not in ("tp", "pp") or not value.isdigit() or len(value) > 4:
            raise InvalidInputError(f"--parallel: cannot read {part[:40]!r} (say ddp, fsdp, "
                                    "zero1, zero2, zero3, tp=N or pp=N)")
        if key == "tp":
            tp = int(value)
        else:
            pp = int(value)
    return Parallel(strategy, tp, pp)


@dataclass(frozen=True)
class TrainDevice:
    """A device's figures for training plans (catalog figures, or assumptions, labelled)."""

    key: str
    name: str
    kind: str
    memory_bytes: float | None
    peaks: Mapping[str, float]  # precision -> peak FLOP/s (fp32, bf16, fp8)
    matmul_eff: float  # achievable fraction of peak on large matrix products (catalog)
    memory_bw: float  # achievable bytes/s
    link_bw: float | None  # device-to-device bytes/s per direction within a node
    network_bw: float | None = None  # per-device bytes/s across nodes
    tdp_w: float | None = None
    price_usd_hr: float | None = None
    overhead_bytes: float = 1.0e9  # runtime context, allocator (an assumption per kind)
    node_devices: int = NODE_DEVICES
    notes: tuple[str, ...] = ()

    def rate(self, precision: str) -> tuple[float, str]:
        """Peak FLOP/s at ``precision`` and the precision used (fp8 without fp8 units runs
        at bf16; bf16 without bf16 units at fp16/fp32, as the catalog lists them)."""
        chain = {"fp8": ("fp8", "bf16", "fp16", "fp32"), "bf16": ("bf16", "fp16", "fp32"),
                 "fp32": ("fp32", "tf32", "bf16")}[precision]
        for p in chain:
            if self.peaks.get(p):
                return float(self.peaks[p]), p
        return math.nan, precision


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device, by part; every part is ``estimated`` arithmetic."""

    weights: float
    gradients: float
    master: float
    optimizer: float
    activations: float
    overhead: float
    trainable_params: int
    frozen_params: int
    source: str = "estimated"

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.master + self.optimizer + self.activations
                + self.overhead)

    def to_dict(self) -> dict[str, float | int | str]:
        return {"weights": self.weights, "gradients": self.gradients, "master": self.master,
                "optimizer": self.optimizer, "activations": self.activations,
                "overhead": self.overhead, "total": self.total,
                "trainable_params": self.trainable_params, "frozen_params": self.frozen_params,
                "source": self.source}


def _lora_dims(arch: LlmArch, targets: Iterable[str]) -> list[tuple[int, int, int]]:
    """(in, out, copies per layer) of each targeted matrix of a decoder layer."""
    q, kv, h, i = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim, arch.hidden, \
        arch.intermediate
    shapes = {"q": (h, q, 1), "k": (h, kv, 1), "v": (h, kv, 1), "o": (q, h, 1),
              "gate": (h, i, arch.experts) if arch.gated_mlp else (0, 0, 0),
              "up": (h, i, arch.experts), "down": (i, h, arch.experts)}
    return [shapes[t] for t in targets]


def lora_params(model: TrainModel, setup: TrainSetup) -> int:
    """Trainable adapter parameters: ``rank * (in + out)`` per targeted matrix."""
    r = setup.lora_rank
    if model.arch is not None:
        per_layer = sum(r * (a + b) * n for a, b, n in _lora_dims(model.arch, setup.lora_targets))
        return per_layer * model.arch.layers
    return sum(r * (a + b) for a, b in model.linear_dims)


def _params(model: TrainModel, setup: TrainSetup) -> tuple[int, int, float]:
    """(trainable, frozen, frozen weight bytes) for the method."""
    if setup.method == "full":
        return model.params, 0, 0.0
    adapters = lora_params(model, setup)
    if setup.method == "lora":
        return adapters, model.params, model.params * setup.prec.weight
    linear = (model.arch.linear_params if model.arch is not None
              else sum(a * b for a, b in model.linear_dims))
    linear = min(linear, model.params)
    return adapters, model.params, linear * NF4_BYTES + (model.params - linear) * 2.0


def _llm_layer_split(arch: LlmArch, act: float) -> tuple[float, float]:
    """(replicated, tensor-parallel-split) activation bytes per token of one layer."""
    h, q = arch.hidden, arch.heads * arch.head_dim
    kv = arch.kv_heads * arch.head_dim
    inner = arch.intermediate * min(arch.experts_per_token, arch.experts)
    mlp = (4 if arch.gated_mlp else 2) * inner
    replicated = 2 * (act * h + 4.0 * h) + 2 * act * h
    split = act * (2 * (q + kv) + kv + q + mlp)
    return replicated, split


def logits_bytes_per_token(arch: LlmArch, act: float) -> float:
    """The logits (activation dtype), their fp32 copy and the loss's fp32 log-softmax."""
    return (act + 8.0) * arch.vocab


def activation_bytes(model: TrainModel, setup: TrainSetup, par: Parallel,
                     batch: int | None = None, seq_len: int | None = None) -> float:
    """Activation bytes one device keeps for a micro-batch."""
    b = setup.batch if batch is None else batch
    s = setup.seq_len if seq_len is None else seq_len
    act = setup.prec.act
    if model.arch is not None:
        arch = model.arch
        rep, split = _llm_layer_split(arch, act)
        layer = rep + split / par.tp
        # 1F1B: the first stage keeps pp micro-batches of its layers / pp layers: one
        # micro-batch's worth of the whole model (checkpointed: each layer's input)
        if setup.checkpointing:
            per_token = arch.layers * act * arch.hidden + layer
        else:
            per_token = arch.layers * layer
        per_token += act * arch.hidden + logits_bytes_per_token(arch, act) / par.tp
        return b * s * per_token
    scale = act / 4.0  # traced at float32
    per_sample = model.act_bytes_per_sample * scale
    if setup.checkpointing:
        per_sample *= min(1.0, 2.0 / math.sqrt(max(model.layers, 1)))
    return b * per_sample / par.tp


def memory_plan(model: TrainModel, setup: TrainSetup, par: Parallel = Parallel(),
                devices: int = 1, overhead_bytes: float = 0.0, *, batch: int | None = None,
                seq_len: int | None = None) -> MemoryPlan:
    """Per-device bytes of training ``model`` under ``setup`` on ``devices`` laid out as
    ``par`` (devices must be a multiple of tp * pp)."""
    _check_layout(par, devices, model)
    dp = devices // par.model_parallel
    mp = par.model_parallel
    prec = setup.prec
    trainable, frozen, frozen_bytes = _params(model, setup)
    weights = (trainable * prec.weight + frozen_bytes) / mp
    grads = trainable * prec.grad / mp
    master = trainable * prec.master / mp
    optim = trainable * OPTIMIZERS[setup.optimizer] / mp
    s = par.strategy
    if s in ("zero1", "zero2", "zero3", "fsdp"):
        master, optim = master / dp, optim / dp
    if s in ("zero2", "zero3", "fsdp"):
        grads /= dp
    if s in ("zero3", "fsdp"):
        gathered = 2 * weights / max(model.layers, 1)  # two layers gathered (prefetch)
        weights = weights / dp + (gathered if dp > 1 else 0.0)
    elif s == "ddp" and dp > 1:
        grads *= 2  # DDP's gradient buckets: a flat copy of the gradients
    acts = activation_bytes(model, setup, par, batch, seq_len)
    return MemoryPlan(weights, grads, master, optim, acts, overhead_bytes, trainable, frozen)


def _check_layout(par: Parallel, devices: int, model: TrainModel | None = None) -> None:
    if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
        raise InvalidInputError(f"devices must be a positive integer, not {devices!r}")
    if model is not None and model.arch is None and par.model_parallel > 1:
        raise InvalidInputError(f"tensor and pipeline parallel plans need a decoder LLM's "
                                f"layer shapes; {model.name} is planned with data parallelism "
                                "(ddp, zero1-3, fsdp)")
    if devices % par.model_parallel:
        raise InvalidInputError(f"{devices} devices cannot hold tp={par.tp} x pp={par.pp} "
                                f"(need a multiple of {par.model_parallel})")


def _largest(fits: object, limit: int) -> int:
    """The largest n >= 1 with ``fits(n)`` (0 if none), ``fits`` monotone."""
    lo, hi = 0, 1
    while hi <= limit and fits(hi):  # type: ignore[operator]
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)  # type: ignore[operator]
    return lo


def largest_batch(model: TrainModel, setup: TrainSetup, par: Parallel, devices: int,
                  memory: float, overhead: float = 0.0, limit: int = 1 << 16) -> int:
    """The largest micro-batch that fits ``memory`` (0: not even one)."""
    return _largest(lambda b: memory_plan(model, setup, par, devices, overhead,
                                          batch=b).total <= memory, limit)


def largest_seq(model: TrainModel, setup: TrainSetup, par: Parallel, devices: int,
                memory: float, overhead: float = 0.0, limit: int = 1 << 20) -> int:
    """The longest sequence (decoder LLMs) at the set-up's batch that fits (0: none)."""
    if model.arch is None:
        return 0
    return _largest(lambda s: memory_plan(model, setup, par, devices, overhead,
                                          seq_len=s).total <= memory, limit)


# ------------------------------------------------------------------------------- time


@dataclass(frozen=True)
class StepTime:
    """Seconds of one optimizer step on each device, by part (``estimated``)."""

    compute_s: float
    optimizer_s: float
    comm_s: float  # all communication, before overlap
    exposed_comm_s: float  # what the step waits for
    bubble_s: float
    model_flops: float  # per step, all devices: what MFU counts (no recomputation)
    executed_flops: float
    comm_bytes: float  # per device per step
    precision_used: str
    notes: tuple[str, ...] = ()

    @property
    def total_s(self) -> float:
        return self.compute_s + self.optimizer_s + self.exposed_comm_s + self.bubble_s


def llm_flops_per_token(arch: LlmArch, seq_len: int, method: str,
                        checkpointing: bool) -> tuple[float, float]:
    """(model FLOPs, executed FLOPs) per token: PaLM's ``6 N + 12 L h s`` for full training
    (attention at ``h = heads * head_dim``), ``4 N + ...`` when the base is frozen, plus a
    recomputed forward (``2 N + 4 L h s``) with checkpointing."""
    n = arch.active_params - arch.embedding_params + arch.vocab * arch.hidden
    attn = 12 * arch.layers * arch.heads * arch.head_dim * seq_len
    model = (6 * n + attn) if method == "full" else (4 * n + attn)
    executed = model + ((2 * n + attn / 3) if checkpointing else 0.0)
    return model, executed


def _ring(kind: str, nbytes: float, d: int) -> float:
    """Bytes one device sends in a ring collective over ``d`` devices."""
    if d <= 1:
        return 0.0
    return (2.0 if kind == "all-reduce" else 1.0) * (d - 1) / d * nbytes


def step_time(model: TrainModel, setup: TrainSetup, par: Parallel, devices: int,
              dev: TrainDevice, efficiency: float, *, traced_step_s: float | None = None,
              traced_batch: int = 0,
              traced_split: tuple[float, float] | None = None) -> StepTime:
    """One optimizer step on ``devices`` x ``dev``. ``efficiency`` scales the catalog's
    achievable matmul rate for training (fitted on published results). A traced model passes
    the predictor's seconds for one forward + backward at ``traced_batch`` on one device
    (``traced_step_s``), scaled to the micro-batch: with ``traced_split`` (the predictor's
    device seconds and host launch seconds at ``traced_batch``) the device time grows with
    the batch and the host's launches do not (they overlap the kernels: the step takes the
    longer of the two); without it, linearly."""
    _check_layout(par, devices, model)
    dp = devices // par.model_parallel
    prec = setup.prec
    peak, used = dev.rate(prec.compute)
    notes: list[str] = []
    if used != prec.compute:
        notes.append(f"{dev.key} has no {prec.compute} peak in the catalog: its {used} rate "
                     "is used")
    rate = peak * dev.matmul_eff * efficiency
    b, s = setup.batch, setup.seq_len
    trainable, frozen, _ = _params(model, setup)
    if model.arch is not None:
        mf, ef = llm_flops_per_token(model.arch, s, setup.method, setup.checkpointing)
        tokens = b * s  # per data-parallel rank
        model_flops, executed = mf * tokens * dp, ef * tokens * dp
        compute = ef * tokens / par.model_parallel / rate
    else:
        per_sample = model.flops_per_sample or 0.0
        factor = 1.0 if setup.method == "full" else 2.0 / 3.0
        model_flops = per_sample * b * dp * factor
        recompute = 4.0 / 3.0 if setup.checkpointing else 1.0
        executed = model_flops * recompute
        if traced_step_s is not None and traced_batch > 0:
            scale = b / traced_batch
            fwd_bwd = traced_step_s * scale
            if traced_split is not None:
                device_s, host_s = traced_split
                rest = max(traced_step_s - max(device_s, host_s), 0.0)
                fwd_bwd = max(device_s * scale, host_s) + rest * scale
            compute = fwd_bwd * factor * recompute / par.model_parallel
            notes.append("step time from the predictor's forward + backward of the traced "
                         f"model at batch {traced_batch}"
                         + (" (its device time scaled to the batch, its host launches once "
                            "per step)" if traced_split is not None else
                            ", scaled linearly to the batch"))
        else:
            compute = executed / dp / par.model_parallel / rate
    # optimizer update: read and write every trainable state once (bandwidth-bound)
    state = prec.weight + prec.grad + prec.master + 2 * OPTIMIZERS[setup.optimizer]
    shard = dp if par.strategy != "ddp" else 1
    optimizer = 2 * trainable * state / par.model_parallel / shard / dev.memory_bw
    if setup.method == "qlora":  # dequantise each 4-bit matrix per pass: read 4-bit, 16-bit
        linear = model.arch.linear_params if model.arch is not None else frozen
        passes = 3 if setup.checkpointing else 2
        optimizer += passes * linear * (NF4_BYTES + 4.0) / par.model_parallel / dev.memory_bw
    # communication
    grad_bytes = trainable * prec.grad / par.model_parallel
    weight_bytes = (trainable * prec.weight) / par.model_parallel
    if par.strategy in ("zero3", "fsdp"):
        dp_bytes = 2 * _ring("all-gather", weight_bytes, dp) + _ring("reduce-scatter",
                                                                     grad_bytes, dp)
        if setup.method != "full":  # the frozen base is sharded too: gathered twice
            _, _, frozen_b = _params(model, setup)
            dp_bytes += 2 * _ring("all-gather", frozen_b / par.model_parallel, dp)
    else:
        dp_bytes = _ring("all-reduce", grad_bytes, dp)
    dp_bw = _dp_bandwidth(dev, devices)
    tp_bytes = 0.0
    if par.tp > 1 and model.arch is not None:
        act = b * s * model.arch.hidden * prec.act
        tp_bytes = 4 * model.arch.layers / par.pp * _ring("all-reduce", act, par.tp)
    pp_bytes = 0.0
    if par.pp > 1 and model.arch is not None:
        pp_bytes = 2 * b * model.arch.hidden * s * prec.act
    link = dev.link_bw or dp_bw
    dp_s = dp_bytes / dp_bw if dp_bytes else 0.0
    mp_s = (tp_bytes + pp_bytes) / link if (tp_bytes or pp_bytes) else 0.0
    comm = dp_s + mp_s
    exposed = dp_s * (1 - DP_OVERLAP) + mp_s
    m = PP_MICRO_PER_STAGE * par.pp
    bubble = compute * (par.pp - 1) / (m + par.pp - 1) if par.pp > 1 else 0.0
    return StepTime(compute, optimizer, comm, exposed, bubble, model_flops, executed,
                    dp_bytes + tp_bytes + pp_bytes, used, tuple(notes))


def _dp_bandwidth(dev: TrainDevice, devices: int) -> float:
    """Per-device bandwidth of data-parallel traffic: the device link within a node, the
    network across nodes (the slower one bounds a ring spanning both)."""
    link = dev.link_bw
    if devices > dev.node_devices and dev.network_bw:
        link = min(link, dev.network_bw) if link else dev.network_bw
    return link or dev.network_bw or math.nan


# ------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class TrainPlan:
    """One row: a device type x count x layout x micro-batch, with memory, time and cost."""

    hardware: str
    hardware_name: str
    devices: int
    parallel: Parallel
    batch: int  # micro-batch per data-parallel rank
    seq_len: int
    memory: MemoryPlan
    capacity_bytes: float | None
    step: StepTime | None
    steps: int
    samples: float  # samples (or sequences) the run processes, epochs included
    tokens: float  # tokens the run processes (decoder LLMs), else 0
    band: float
    band_basis: str
    usd: float | None
    kwh: float | None
    mfu: float | None
    provenance: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    max_batch: int | None = None  # the largest micro-batch that fits this layout
    max_seq_len: int | None = None  # decoder LLMs: the longest sequence at this batch
    checkpointing: bool = False

    @property
    def layout(self) -> str:
        """The parallel layout, and ``ckpt`` where activations are recomputed."""
        return self.parallel.label() + (",ckpt" if self.checkpointing else "")

    @property
    def fits(self) -> bool | None:
        if self.capacity_bytes is None:
            return None
        return self.memory.total <= self.capacity_bytes

    @property
    def step_s(self) -> float | None:
        return None if self.step is None else self.step.total_s

    @property
    def total_s(self) -> float | None:
        return None if self.step is None else self.step.total_s * self.steps

    @property
    def global_batch(self) -> int:
        return self.batch * (self.devices // self.parallel.model_parallel)


def plan(model: TrainModel, setup: TrainSetup, par: Parallel, devices: int, dev: TrainDevice,
         *, samples: float, efficiency: float, band: float, band_basis: str,
         traced_step_s: float | None = None, traced_batch: int = 0,
         traced_split: tuple[float, float] | None = None) -> TrainPlan:
    """The plan for one layout: memory per device, step time, steps, $ and kWh."""
    mem = memory_plan(model, setup, par, devices, dev.overhead_bytes)
    step = step_time(model, setup, par, devices, dev, efficiency, traced_step_s=traced_step_s,
                     traced_batch=traced_batch, traced_split=traced_split)
    dp = devices // par.model_parallel
    per_step = setup.batch * dp
    steps = max(1, math.ceil(samples / per_step))
    total_h = step.total_s * steps / 3600
    usd = devices * dev.price_usd_hr * total_h if dev.price_usd_hr else None
    kwh = devices * dev.tdp_w * total_h / 1000 if dev.tdp_w else None
    peak, _ = dev.rate(setup.prec.compute)
    mfu = (step.model_flops / (step.total_s * devices * peak)
           if step.total_s > 0 and math.isfinite(peak) and model.arch is not None else None)
    tokens = samples * setup.seq_len if model.arch is not None else 0.0
    prov = {"memory": "estimated (analytic: chipfit.analysis.train_plan)",
            "step_s": ("predicted (FLOPs over catalog peak x efficiency)" if model.arch
                       else "predicted (chipfit.predictors on the traced step)"),
            "usd": "catalog price_usd_hr" if usd is not None else "no price in the catalog",
            "kwh": "catalog tdp_w (at TDP: an upper bound)" if kwh is not None
            else "no TDP in the catalog",
            "communication": f"ring collectives over the link; data-parallel overlap "
                             f"{DP_OVERLAP:.0%} (assumed)"}
    return TrainPlan(dev.key, dev.name, devices, par, setup.batch, setup.seq_len, mem,
                     dev.memory_bytes, step, steps, samples, tokens, band, band_basis, usd, kwh,
                     mfu, prov, tuple(dict.fromkeys((*dev.notes, *step.notes))),
                     checkpointing=setup.checkpointing)


def layouts(model: TrainModel, devices: int, strategies: Sequence[str] = STRATEGIES[:4]
            ) -> list[Parallel]:
    """Layouts worth trying on ``devices``: each strategy, times tp in 1..8 dividing a node
    and the heads, times pp in 1, 2, 4 dividing the layers."""
    out = []
    tps = [1, 2, 4, 8]
    if model.arch is not None:
        tps = [t for t in tps if model.arch.heads % t == 0]
    else:
        tps = [1]
    pps = [p for p in (1, 2, 4) if model.layers % p == 0] if model.arch is not None else [1]
    for s in strategies:
        for tp in tps:
            for pp in pps:
                if devices % (tp * pp) == 0:
                    out.append(Parallel(s, tp, pp))
    return out


def search(model: TrainModel, setup: TrainSetup, devs: Sequence[TrainDevice], *,
           samples: float, efficiency: float, bands: Mapping[str, tuple[float, str]],
           counts: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
           deadline_s: float | None = None, budget_usd: float | None = None,
           batches: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
           traced: Mapping[str, tuple[float, int, object, object]] | None = None,
           strategies: Sequence[str] = STRATEGIES[:4],
           device_efficiency: Mapping[str, float] | None = None,
           memory_margin: float = 0.0) -> list[TrainPlan]:
    """Every fitting plan over device type x count x layout x micro-batch, best first: the
    cheapest meeting ``deadline_s`` (else the fastest), or the fastest within ``budget_usd``.
    ``bands`` maps each :func:`stratum` to (band, basis); ``device_efficiency`` a device key
    to its own fitted efficiency (``efficiency`` for the others). ``memory_margin``: plans
    keep that fraction of their memory free (the memory band), so a plan the estimate's error
    could push over the capacity is not chosen."""
    found: list[TrainPlan] = []
    for dev in devs:
        if dev.memory_bytes is None:
            continue
        for n in counts:
            for par in layouts(model, n, strategies):
                if n > 1 and not (dev.link_bw or dev.network_bw):
                    continue
                cap = largest_batch(model, replace(setup, batch=1), par, n,
                                    dev.memory_bytes / (1 + memory_margin), dev.overhead_bytes,
                                    limit=max(batches))
                if cap == 0:
                    continue
                b = max(x for x in batches if x <= cap) if cap >= min(batches) else cap
                band, basis = bands[stratum(n)]
                t = (traced or {}).get(dev.key)
                eff = (device_efficiency or {}).get(dev.key, efficiency)
                p = plan(model, replace(setup, batch=b), par, n, dev, samples=samples,
                         efficiency=eff, band=band, band_basis=basis,
                         traced_step_s=t[0] if t else None, traced_batch=t[1] if t else 0,
                         traced_split=t[4] if t and len(t) > 4 else None)
                found.append(p)
    return rank_plans(found, deadline_s, budget_usd)


def stratum(devices: int, node_devices: int = NODE_DEVICES) -> str:
    """The evidence stratum of a plan: one device, one node (up to 8 devices, as the
    published rows' GPU nodes), or more (a TPU slice of more than 8 chips included)."""
    if devices <= 1:
        return "single"
    return "node" if devices <= node_devices else "multi"


def rank_plans(plans: Sequence[TrainPlan], deadline_s: float | None = None,
               budget_usd: float | None = None) -> list[TrainPlan]:
    """Fitting plans best first: meeting the deadline cheapest first (then fastest), within
    the budget fastest first; with neither, cheapest first (then fewest devices, fastest;
    a device without a price ranks after priced ones, by device-hours)."""
    ok = [p for p in plans if p.fits and p.total_s is not None and math.isfinite(p.total_s)]

    def cost(p: TrainPlan) -> float:
        return p.usd if p.usd is not None else math.inf

    if deadline_s is not None:
        meet = sorted((p for p in ok if p.total_s <= deadline_s),
                      key=lambda p: (cost(p), p.total_s))
        rest = sorted((p for p in ok if p.total_s > deadline_s), key=lambda p: p.total_s)
        return meet + rest
    if budget_usd is not None:
        meet = sorted((p for p in ok if p.usd is not None and p.usd <= budget_usd),
                      key=lambda p: (p.total_s, cost(p)))
        rest = sorted((p for p in ok if p not in meet), key=lambda p: (cost(p), p.total_s))
        return meet + rest
    # costs within 2% of each other tie, and the fewer devices win the tie
    return sorted(ok, key=lambda p: (_bucket(cost(p)), p.devices, p.total_s))


def _bucket(usd: float) -> float:
    return math.inf if not math.isfinite(usd) or usd <= 0 else round(math.log(usd) / 0.02)
