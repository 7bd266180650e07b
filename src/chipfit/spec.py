"""Inputs: what to measure, where, and how carefully.

Everything here is a frozen dataclass, cheap to build, picklable and free of framework
imports, so jobs can be sent to subprocesses or Ray workers unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from chipfit.errors import InvalidInputError

__all__ = ["DTYPES", "MAX_COUNT", "MODES", "DeviceRef", "Job", "TimingConfig", "default_stack",
           "parse_count", "parse_dtype"]

DTYPES = ("float32", "bfloat16", "float16")
MODES = ("inference", "train", "finetune")
_DTYPE_ALIASES = {
    "fp32": "float32", "f32": "float32", "float": "float32",
    "bf16": "bfloat16", "fp16": "float16", "f16": "float16", "half": "float16",
}

_MAX_THREADS = 4096
# "torch:cuda:0", "jax:tpu:3", "torch:cpu", "torch:cpu@1t" (the CPU pinned to 1 thread)
_REF = re.compile(r"^(?P<backend>[a-z_]+):(?P<platform>[a-z_]+)(?::(?P<index>\d+))?(?:@(?P<threads>\d+)t)?$")


def parse_dtype(text: str) -> str:
    """Return the canonical dtype name for ``text`` (``bf16`` -> ``bfloat16``)."""
    text = str(text)
    name = _DTYPE_ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in DTYPES:
        from chipfit.errors import UnknownNameError

        raise UnknownNameError("dtype", text, DTYPES + tuple(_DTYPE_ALIASES))
    return name


_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
_COUNT = re.compile(r"^(?:(?P<base>\d{1,20})\^(?P<exp>\d{1,3})|(?P<digits>\d{1,20})(?P<suffix>[kmg]i?)?)$")
#: Sizes and counts stop at 2^53: beyond it they are no longer exact as floats (costs, plots
#: and ladders compute in floats), and no workload or memory is that large.
MAX_COUNT = 2**53


def parse_count(text: str, what: str = "size") -> int:
    """Parse ``4096``, ``2^20``, ``64k``, ``16Mi`` into a positive int (at most 2^53)."""
    raw = str(text).strip().lower().replace("_", "")
    match = _COUNT.match(raw)
    if not match:
        raise InvalidInputError(f"malformed {what} {text!r}: use a positive integer such as "
                                "4096, 2^20, 64k or 16Mi")
    if match["base"] is not None:
        base, exp = int(match["base"]), int(match["exp"])
        # the power is only computed when it cannot be huge (10^999 would take a while)
        value = base**exp if base <= 1 or exp * math.log2(base) <= 64 else MAX_COUNT + 1
    else:
        value = int(match["digits"]) * _SUFFIX.get(match["suffix"] or "", 1)
    if value <= 0:
        raise InvalidInputError(f"{what} must be positive, got {text!r}")
    if value > MAX_COUNT:
        raise InvalidInputError(f"{what} {text!r} is too large (at most 2^53)")
    return value


@dataclass(frozen=True, order=True)
class DeviceRef:
    """A processor as a framework sees it, printed as ``backend:platform[:index][@Nt]``.

    ``threads`` pins a CPU's intra-op thread count (the seeds' serial-vs-parallel point);
    ``None`` means the framework's default (all physical cores).
    """

    backend: str
    platform: str
    index: int | None = None
    threads: int | None = None

    @classmethod
    def parse(cls, text: str) -> DeviceRef:
        match = _REF.match(str(text).strip().lower())
        if not match:
            raise InvalidInputError(
                f"malformed device {text!r}: expected backend:platform[:index], "
                "for example torch:cpu, torch:cuda:0, jax:tpu:0 or torch:cpu@1t"
            )
        index = match["index"]
        threads = match["threads"]
        if threads is not None and not 1 <= int(threads) <= _MAX_THREADS:
            raise InvalidInputError(f"device {text!r}: @Nt pins N threads, 1 to {_MAX_THREADS}")
        if index is not None and len(index) > 6:
            raise InvalidInputError(f"device {text!r}: index {index} is not a device index")
        return cls(
            match["backend"], match["platform"],
            int(index) if index is not None else None,
            int(threads) if threads is not None else None,
        )

    def __str__(self) -> str:
        text = f"{self.backend}:{self.platform}"
        if self.index is not None:
            text += f":{self.index}"
        if self.threads is not None:
            text += f"@{self.threads}t"
        return text

    @property
    def base(self) -> DeviceRef:
        """The same device without a thread pin."""
        return replace(self, threads=None)

    @property
    def is_cpu(self) -> bool:
        return self.platform == "cpu"


@dataclass(frozen=True)
class TimingConfig:
    """How long and how carefully to time one (workload, size, device) point.

    The timer stops at the first of: the 95% confidence interval of the median is within
    ``target_rel_ci`` of it (after ``min_samples``), ``budget_s`` of timing has elapsed, or
    ``max_samples`` blocks were taken.
    """

    warmup_s: float = 0.01
    warmup_min_calls: int = 1
    min_block_s: float = 0.001
    min_samples: int = 7
    max_samples: int = 500
    target_rel_ci: float = 0.02
    budget_s: float = 3.0
    noisy_rel_iqr: float = 0.10

    def __post_init__(self) -> None:
        import math

        if not all(math.isfinite(v) for v in (self.warmup_s, self.min_block_s,
                                               self.target_rel_ci, self.budget_s,
                                               self.noisy_rel_iqr)):
            raise InvalidInputError("timing settings must be finite numbers")
        if not 0 < self.target_rel_ci < 1:
            raise InvalidInputError("target_rel_ci must be between 0 and 1, e.g. 0.02 for +-2%")
        if self.min_samples < 3 or self.max_samples < self.min_samples:
            raise InvalidInputError("need 3 <= min_samples <= max_samples")
        if self.budget_s <= 0 or self.min_block_s <= 0:
            raise InvalidInputError("budget_s and min_block_s must be positive")

    @classmethod
    def quick(cls) -> TimingConfig:
        return cls(warmup_s=0.02, min_block_s=0.004, min_samples=5, target_rel_ci=0.05,
                   budget_s=0.8)


def default_stack(backend: str) -> str:
    """The software stack a backend runs unless told otherwise: torch eager, JAX and
    TensorFlow jit (XLA-compiled programs)."""
    return "jit" if backend in ("jax", "tensorflow") else "eager"


@dataclass(frozen=True)
class Job:
    """One point to measure: a workload at one size, dtype, mode and stack on one device.

    ``stack`` is the software stack (:mod:`chipfit.workloads.stacks`); empty means the
    backend's default (:func:`default_stack`).
    """

    workload: str
    size: str
    device: DeviceRef
    dtype: str = "float32"
    mode: str = "inference"
    timing: TimingConfig = field(default_factory=TimingConfig)
    #: A fleet job's place: the node type it measures (any node of it), or with ``node_id``
    #: that one node (``--every-node``). None: wherever the executor puts it.
    node_type: str | None = None
    node_id: str | None = None
    #: The software stack (:mod:`chipfit.workloads.stacks`); empty means the backend's
    #: default (:func:`default_stack`). Pass it by keyword.
    stack: str = ""

    def __post_init__(self) -> None:
        if not self.stack:
            object.__setattr__(self, "stack", default_stack(self.device.backend))

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies the job in a run: the stack only when it is not the default and
        the node only for fleet jobs, so keys of older runs still match."""
        base = (self.workload, self.size, str(self.device), self.dtype, self.mode)
        if self.stack != default_stack(self.device.backend):
            base += (self.stack,)
        if self.node_type is None:
            return base
        return base + (self.node_type, self.node_id or "")
