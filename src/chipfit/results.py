"""Outputs: frozen values that every stage passes on and every exporter reads.

Raw samples are the truth: a :class:`Measurement` stores the measured block times, and its
median, IQR and confidence interval are derived from them on demand. Every value says where
its numbers came from in ``source`` (``measured``, ``predicted``, ``catalog``, ``estimated``).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from chipfit.timing import stats

__all__ = [
    "SOURCES",
    "STATUSES",
    "ContentionSummary",
    "Cost",
    "DeviceInfo",
    "Discovery",
    "GuardLimit",
    "Measurement",
    "Problem",
    "summarize_contention",
]

SOURCES = ("measured", "predicted", "catalog", "estimated")
STATUSES = ("ok", "unsupported", "oom", "error", "timeout", "lost")  # lost: its fleet node died


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def from_plain(cls: type, data: Mapping[str, Any]) -> Any:
    """Build dataclass ``cls`` from a JSON-like mapping, ignoring unknown keys."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: _tupled(v) for k, v in data.items() if k in names})


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON-decoded (and tupled) ``value`` fits the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args))
    return isinstance(value, hint) if isinstance(hint, type) else True


def checked_from_plain(cls: type, data: Any, where: str) -> Any:
    """Like :func:`from_plain`, for data read from a file or a database: every field must
    have its annotated type and required fields must be there, else an InvalidInputError
    naming ``where`` and the field (never a TypeError deep inside an analysis)."""
    from chipfit.errors import InvalidInputError

    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{where} is damaged: expected an object, found "
                                f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise InvalidInputError(f"{where} is damaged: {f.name!r} is missing")
            continue
        value = _tupled(data[f.name])
        if not _conforms(value, hints[f.name]):
            raise InvalidInputError(f"{where} is damaged: {f.name!r} is "
                                    f"{type(data[f.name]).__name__}, not {_words(hints[f.name])}")
        values[f.name] = value
    return cls(**values)


def _words(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


@dataclass(frozen=True)
class Problem:
    """Why a backend or a device is missing or degraded: kept, never swallowed."""

    scope: str  # "torch", "torch:cuda", "jax:tpu", "cpu:isa", ...
    reason: str


@dataclass(frozen=True)
class DeviceInfo:
    """One processor as discovered on this machine (all figures are ``measured``/probed)."""

    ref: str
    backend: str
    platform: str
    kind: str  # cpu | gpu | tpu | other
    name: str
    memory_bytes: int | None = None
    cores: int | None = None  # CPU physical cores
    threads: int | None = None  # CPU logical threads
    compute_units: int | None = None  # GPU multiprocessors / TPU cores
    isa: tuple[str, ...] = ()
    versions: tuple[tuple[str, str], ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    source: str = "measured"


@dataclass(frozen=True)
class Discovery:
    """Every usable device plus the reasons anything else is not usable."""

    devices: tuple[DeviceInfo, ...]
    problems: tuple[Problem, ...] = ()

    def get(self, ref: str) -> DeviceInfo | None:
        return next((d for d in self.devices if d.ref == ref), None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Discovery:
        return cls(
            tuple(from_plain(DeviceInfo, d) for d in data.get("devices", ())),
            tuple(from_plain(Problem, p) for p in data.get("problems", ())),
        )

    @classmethod
    def checked(cls, data: Any, where: str) -> Discovery:
        """A discovery read from a file or database, type-checked (InvalidInputError)."""
        from chipfit.errors import InvalidInputError

        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{where} is damaged: 'discovery' is not an object")
        parts = {}
        for key, kind in (("devices", DeviceInfo), ("problems", Problem)):
            items = data.get(key, ())
            if not isinstance(items, (list, tuple)):
                raise InvalidInputError(f"{where} is damaged: 'discovery.{key}' is not a list")
            parts[key] = tuple(checked_from_plain(kind, d, f"{where} (discovery.{key})")
                               for d in items)
        return cls(parts["devices"], parts["problems"])


@dataclass(frozen=True)
class Cost:
    """Analytic work of one call: floating-point operations, bytes moved, copies, launches.

    Composes with ``+`` (a model is the sum of its operators) and ``*`` (n calls).
    """

    flops: float = 0.0
    bytes_moved: float = 0.0
    transfer_bytes: float = 0.0
    kernels: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes_moved + other.bytes_moved,
                    self.transfer_bytes + other.transfer_bytes, self.kernels + other.kernels)

    def __mul__(self, times: float) -> Cost:
        return Cost(self.flops * times, self.bytes_moved * times, self.transfer_bytes * times,
                    int(round(self.kernels * times)))

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP per byte moved (roofline x axis)."""
        return self.flops / self.bytes_moved if self.bytes_moved else math.inf


@dataclass(frozen=True)
class Measurement:
    """One measured point. Statistics are properties over ``block_times_s``.

    ``block_times_s[i]`` is the fenced wall time of block ``i``, each block running the
    workload ``number_per_block`` times; per-call times are block time / number.
    ``transfer_*`` are separate host<->device copy times per call (0.0 on a CPU, where data
    never moves). ``status`` other than ``ok`` means no timing (``note`` says why).
    ``stack`` is the software stack (``eager``, ``compile``, ``onnxruntime``, ``int8`` ...;
    JAX: ``jit``); for stacks other than the default, ``compile_s`` is the time to build it
    (export, compile, first call; not part of the steady-state samples) and
    ``max_abs_diff``/``max_rel_diff`` compare its output with eager's on the same inputs.
    """

    workload: str
    size: str
    device: str
    dtype: str = "float32"
    mode: str = "inference"
    status: str = "ok"
    note: str = ""
    block_times_s: tuple[float, ...] = ()
    number_per_block: int = 1
    first_call_s: float | None = None
    warmup_calls: int = 0
    stop_reason: str = ""
    transfer_h2d_s: float = 0.0
    transfer_d2h_s: float = 0.0
    transfer_h2d_bytes: int = 0
    transfer_d2h_bytes: int = 0
    peak_memory_bytes: int | None = None
    memory_method: str = ""
    flops: float = 0.0
    bytes_moved: float = 0.0
    items_per_call: int = 1
    device_block_times_s: tuple[float, ...] = ()
    energy_j: float | None = None
    energy_source: str = ""
    clock: str = "perf_counter"
    metadata: tuple[tuple[str, str], ...] = ()
    source: str = "measured"
    # Was the machine shared while this point ran (chipfit.timing.contention)? None: unknown
    # (a file from before chipfit watched for it, or no evidence readable here).
    contended: bool | None = None
    contention: tuple[tuple[str, float], ...] = ()  # the evidence, as numbers
    contention_note: str = ""  # the signals that fired, in words
    attempts: int = 1  # 2+: re-measured after a back-off because it was contended
    #: Where a fleet job ran: the Ray node's id and the node type it belongs to (None when
    #: the run was not a fleet run; older files read as None).
    node_id: str | None = None
    node_type: str | None = None
    stack: str = "eager"
    compile_s: float | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None

    # ---- statistics over the raw samples -------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.block_times_s)

    @property
    def times_s(self) -> tuple[float, ...]:
        """Per-call times, one per block."""
        return tuple(t / self.number_per_block for t in self.block_times_s)

    @property
    def median_s(self) -> float:
        return stats.median(self.times_s) if self.ok else math.nan

    @property
    def iqr_s(self) -> float:
        times = self.times_s
        return stats.quantile(times, 0.75) - stats.quantile(times, 0.25) if self.ok else math.nan

    @property
    def ci_s(self) -> tuple[float, float]:
        return stats.median_ci(self.times_s) if self.ok else (math.nan, math.nan)

    @property
    def rel_ci(self) -> float:
        """Half-width of the 95% CI of the median over the median (0.02 = +-2%)."""
        return stats.rel_ci_halfwidth(self.times_s) if self.ok else math.nan

    @property
    def rel_iqr(self) -> float:
        return stats.rel_iqr(self.times_s) if self.ok else math.nan

    @property
    def noisy(self) -> bool:
        """IQR above 10% of the median, or the CI target was not reached."""
        return self.ok and (self.rel_iqr > 0.10 or self.stop_reason != "ci_target")

    @property
    def end_to_end_s(self) -> float:
        """Median compute time plus the host->device and device->host copies."""
        return self.median_s + self.transfer_h2d_s + self.transfer_d2h_s

    def seconds(self, view: str = "resident") -> float:
        """Time per call for ``view`` ``resident`` (data already on device) or ``end_to_end``."""
        return self.end_to_end_s if view == "end_to_end" else self.median_s

    @property
    def gflops(self) -> float:
        return self.flops / self.median_s / 1e9 if self.ok and self.flops else math.nan

    @property
    def gbps(self) -> float:
        return self.bytes_moved / self.median_s / 1e9 if self.ok and self.bytes_moved else math.nan

    @property
    def throughput(self) -> float:
        """Items (samples) per second, resident."""
        return self.items_per_call / self.median_s if self.ok else math.nan

    @property
    def series_device(self) -> str:
        """The device as a series of points is labelled: plus the stack when it is not the
        backend's default (``torch:cpu+onnxruntime``), so stacks on one device are series of
        their own (and cross over like devices do)."""
        return self.device if self.stack in ("eager", "jit") else f"{self.device}+{self.stack}"

    @property
    def key(self) -> tuple[str, ...]:
        """The :attr:`~chipfit.spec.Job.key` of the job that measured this point: the stack
        only when it is not the backend's default; a fleet job's node type, and with
        ``--every-node`` the node it was planned on."""
        from chipfit.spec import default_stack

        base: tuple[str, ...] = (self.workload, self.size, self.device, self.dtype, self.mode)
        if self.stack != default_stack(self.device.split(":")[0]):
            base += (self.stack,)
        if self.node_type is None:
            return base
        return base + (self.node_type, self.meta.get("planned_node", ""))

    @property
    def meta(self) -> dict[str, str]:
        return dict(self.metadata)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["block_times_s"] = list(self.block_times_s)
        out["device_block_times_s"] = list(self.device_block_times_s)
        out["metadata"] = [list(p) for p in self.metadata]
        out["contention"] = dict(self.contention)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        return from_plain(cls, cls._stored(data))

    @staticmethod
    def _stored(data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Stored form to field form: the contention evidence is kept as an object; a
        measurement stored before stacks existed gets its backend's default stack (torch:
        ``eager``, JAX: ``jit``)."""
        evidence = data.get("contention")
        if isinstance(evidence, Mapping):
            data = {**data, "contention": tuple((str(k), float(v)) for k, v in evidence.items()
                                                if isinstance(v, (int, float)))}
        if not data.get("stack"):
            from chipfit.spec import default_stack

            data = {**data, "stack": default_stack(str(data.get("device", "")).split(":")[0])}
        return data

    @classmethod
    def checked(cls, data: Any, where: str) -> Measurement:
        """A measurement read from a file or database, every field type-checked and the
        block size positive (statistics divide by it); InvalidInputError otherwise."""
        from chipfit.errors import InvalidInputError

        m = checked_from_plain(cls, cls._stored(data) if isinstance(data, Mapping) else data,
                               where)
        if m.number_per_block < 1 or any(not math.isfinite(t) or t < 0 for t in m.block_times_s):
            raise InvalidInputError(f"{where} is damaged: block times must be finite and "
                                    "non-negative, number_per_block at least 1")
        return m


@dataclass(frozen=True)
class GuardLimit:
    """The largest size the memory guard admits for one series of a run (``predicted`` from
    the workload's memory estimate; ``size`` None when it cannot be said)."""

    workload: str
    device: str
    dtype: str
    mode: str
    size: str | None = None
    source: str = "predicted"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.workload, self.device, self.dtype, self.mode)


#: Results schema 1 kept guard limits in the run settings, one key per series.
LEGACY_LIMIT_PREFIX = "guard_limit|"


def split_legacy_limits(settings: Iterable[tuple[str, str]]
                        ) -> tuple[tuple[tuple[str, str], ...], tuple[GuardLimit, ...]]:
    """Settings without the schema-1 ``guard_limit|workload|device|dtype|mode`` keys, and those
    keys as :class:`GuardLimit` values (how old files and databases are read)."""
    kept: list[tuple[str, str]] = []
    limits: list[GuardLimit] = []
    for key, value in settings:
        if key.startswith(LEGACY_LIMIT_PREFIX):
            workload, device, dtype, mode = key[len(LEGACY_LIMIT_PREFIX):].rsplit("|", 3)
            limits.append(GuardLimit(workload, device, dtype, mode, value or None))
        else:
            kept.append((key, value))
    return tuple(kept), tuple(limits)


@dataclass(frozen=True)
class Run:
    """One invocation of bench or sweep: devices seen, measurements made, and context."""

    run_id: str
    command: str
    started_at: str
    finished_at: str = ""
    machine: tuple[tuple[str, str], ...] = ()
    discovery: Discovery = field(default_factory=lambda: Discovery(()))
    measurements: tuple[Measurement, ...] = ()
    interrupted: bool = False
    chipfit_version: str = ""
    settings: tuple[tuple[str, str], ...] = ()
    #: The memory guard's limits per series (a sweep records them; see :class:`GuardLimit`).
    guard_limits: tuple[GuardLimit, ...] = ()

    def limits(self) -> dict[tuple[str, str, str, str], str | None]:
        """(workload, device, dtype, mode) -> the guard's limit, for every recorded series."""
        return {g.key: g.size for g in self.guard_limits}


@dataclass(frozen=True)
class ContentionSummary:
    """A run's contention, from its points' evidence."""

    points: int  # successful points
    contended: int
    unknown: int  # points with no evidence (older files)
    retried: int  # points re-measured after a back-off
    still_contended: int  # retried and contended on every attempt
    max_load: float
    cores: int
    causes: tuple[str, ...]  # the signals that fired, most frequent first

    def to_dict(self) -> dict[str, object]:
        return {"points": self.points, "contended": self.contended, "unknown": self.unknown,
                "retried": self.retried, "still_contended": self.still_contended,
                "max_load": self.max_load, "cores": self.cores, "causes": list(self.causes)}


_CAUSES = (("CPU steal", "CPU steal"), ("other processes", "other processes' CPU time"),
           ("threads waited", "run-queue wait"),
           ("reference probe", "probe drift"), ("stall", "stall signature"),
           ("load", "load and preemption"))


def _cause(reason: str) -> str:
    return next((name for prefix, name in _CAUSES if reason.startswith(prefix)), reason)


def summarize_contention(measurements: Sequence[Measurement]) -> ContentionSummary:
    """How many of ``measurements`` were contended, re-measured, or unknown, and why."""
    ok = [m for m in measurements if m.ok]
    bad = [m for m in ok if m.contended]
    counts: dict[str, int] = {}
    for m in bad:
        for reason in m.contention_note.split("; "):
            if reason:
                counts[_cause(reason)] = counts.get(_cause(reason), 0) + 1
    loads = [dict(m.contention).get("load1", 0.0) for m in ok]
    cores = [int(dict(m.contention).get("cores", 0)) for m in ok]
    return ContentionSummary(
        len(ok), len(bad), sum(m.contended is None for m in ok), sum(m.attempts > 1 for m in ok),
        sum(m.attempts > 1 and bool(m.contended) for m in ok), max(loads, default=0.0),
        max(cores, default=0), tuple(sorted(counts, key=lambda k: -counts[k])))
