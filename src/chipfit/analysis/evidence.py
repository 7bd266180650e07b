"""What the advisor reasons over: frozen, source-tagged facts about one model and its options.

An :class:`Option` is one processor (present and measured, or from the catalog and predicted)
with every number tagged by where it came from. :class:`Evidence` gathers the options with
facts about the model (operator mix, recurrence, memory) and the user's plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Evidence", "ModelFacts", "Option", "Reason", "Recommendation"]


@dataclass(frozen=True)
class Option:
    """One processor at one batch size, with provenance for each figure."""

    device: str  # "torch:cpu" or a catalog key such as "h100-sxm"
    kind: str  # cpu | gpu | tpu
    name: str
    present: bool
    batch: int
    latency_s: float  # per batch
    latency_source: str  # measured | predicted
    bound: str = ""  # compute | memory | launch | transfer (predictions)
    memory_need_bytes: int | None = None
    memory_have_bytes: int | None = None
    price_usd_hr: float | None = None  # catalog
    power_w: float | None = None  # TDP from the catalog
    joules_per_item: float | None = None
    energy_source: str = ""  # measured | estimated
    train_step_s: float | None = None  # per batch, train mode
    train_source: str = ""
    fallback_ops: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    band: float = 0.0  # relative uncertainty of latency_s: x/÷(1 + band) (0: measured)
    price_source: str = ""  # catalog (with its basis), given (--local-price) or estimated
    # The software stack (chipfit.workloads.stacks: eager, compile, onnxruntime, int8 ...;
    # predicted engines: tensorrt, engine) and the precision it computes in.
    stack: str = "eager"
    precision: str = "float32"
    eager_latency_s: float | None = None  # eager's latency, same device and batch
    max_rel_diff: float | None = None  # max |stack - eager| / max |eager| (measured)
    # Which predictor priced a catalog option (chipfit.predictors): gpu-kernel-model |
    # roofline (catalog peaks only: a weaker route, said so wherever it is shown)
    route: str = ""
    # The catalog peak its precision needs and lacks (Prediction.missing_peak): its latency
    # is priced at a stand-in peak, so it takes no part in the ranking
    missing_peak: str = ""

    @property
    def processor(self) -> str:
        """``device`` without a CPU thread pin: ``torch:cpu`` for ``torch:cpu@1t`` (a catalog
        key or an unpinned device as it is). ``device`` keeps the pin, as ``--devices``
        takes it, so the option can be measured again."""
        base, at, pin = self.device.rpartition("@")
        return base if at and pin[:-1].isdigit() and pin.endswith("t") else self.device

    @property
    def threads(self) -> int | None:
        """The intra-op threads a pinned CPU option ran at (``torch:cpu@1t`` -> 1); None for
        the framework's default (every core) and for catalog devices."""
        base, at, pin = self.device.rpartition("@")
        return int(pin[:-1]) if at and pin[:-1].isdigit() and pin.endswith("t") else None

    @property
    def label(self) -> str:
        """``device`` plus the stack when it is not eager (``torch:cpu int8``)."""
        return self.device if self.stack in ("eager", "jit") else f"{self.device} {self.stack}"

    @property
    def speedup_vs_eager(self) -> float | None:
        """Eager's latency over this option's (same device and batch), where both exist."""
        if self.eager_latency_s is None or not self.latency_s > 0 or self.stack == "eager":
            return None
        return self.eager_latency_s / self.latency_s

    @property
    def throughput(self) -> float:
        """Samples per second at this batch."""
        return self.batch / self.latency_s if self.latency_s > 0 else math.nan

    @property
    def usd_per_million(self) -> float | None:
        """Dollars per 1M inferences at this throughput and the catalog's hourly price."""
        if self.price_usd_hr is None or not self.latency_s > 0:
            return None
        return self.price_usd_hr / 3600 * (1e6 / self.throughput)

    @property
    def fits(self) -> bool:
        if self.memory_need_bytes is None or self.memory_have_bytes is None:
            return True
        return self.memory_need_bytes <= self.memory_have_bytes

    def train_time_s(self, samples: int, epochs: float) -> float | None:
        if self.train_step_s is None:
            return None
        return samples * epochs / self.batch * self.train_step_s


@dataclass(frozen=True)
class ModelFacts:
    name: str
    params: int
    flops_per_item: float  # forward FLOPs per sample
    op_mix: tuple[tuple[str, float], ...] = ()  # FLOP share per operator class
    kernels_per_call: int = 0
    recurrent: bool = False
    small_op_share: float = 0.0  # share of kernels that are small non-matmul ops

    def share(self, *classes: str) -> float:
        mix = dict(self.op_mix)
        return sum(mix.get(c, 0.0) for c in classes)


@dataclass(frozen=True)
class Evidence:
    model: ModelFacts
    batch: int
    mode: str
    options: tuple[Option, ...]
    host_memory_bytes: int | None = None
    crossover_batch: tuple[tuple[str, str, float | None], ...] = ()  # (cpu, accel, batch)
    train_samples: int | None = None
    epochs: float = 1.0


@dataclass(frozen=True)
class Reason:
    """A rule that fired: data, turned into words only by the report layer."""

    code: str
    favours: str  # cpu | gpu | tpu | multi-device
    evidence: tuple[tuple[str, str], ...]
    source: str  # measured | predicted | catalog | rule
    cite: str  # where the rule comes from


@dataclass(frozen=True)
class Recommendation:
    choice: Option | None
    objective: str
    ranked: tuple[Option, ...]
    reasons: tuple[Reason, ...]
    excluded: tuple[tuple[str, str], ...] = field(default=())  # (device, why)
    # Groups of devices whose figures lie within each other's uncertainty, in rank order,
    # and how each group was ordered (a stated secondary objective, never the name)
    ties: tuple[tuple[str, ...], ...] = field(default=())
    tie_break: str = ""
