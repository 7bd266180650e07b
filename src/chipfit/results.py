"""Outputs: frozen values that every stage passes on and every exporter reads.

Raw samples are the truth: a :class:`Measurement` stores the measured block times, and its
median, IQR and confidence interval are derived from them on demand. Every value says where
its numbers came from in ``source`` (``measured``, ``predicted``, ``catalog``, ``estimated``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import types
import typing
import uuid
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
    "RunSummary",
    "check_run_id",
    "check_settings",
    "new_run_id",
    "summarize_contention",
]

SOURCES = ("measured", "predicted", "catalog", "estimated")
STATUSES = ("ok", "unsupported", "oom", "error", "timeout", "lost")  # lost: its fleet node died

#: Every run id chipfit makes (:func:`new_run_id`): a UTC stamp and six hex digits. An id names
#: a file (``runs/<id>.json``) and database rows, so one read back from a file, a database or
#: the command line must match it exactly; anything else (``../x``, ``/abs``, control
#: characters) is refused before it can name a path.
_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}", re.ASCII)


def new_run_id() -> str:
    """A new run id: when it started (UTC, to the second), then 24 random bits."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def check_run_id(value: Any, where: str) -> str:
    """``value`` if it is a run id as chipfit generates it, else an InvalidInputError naming
    ``where`` (a stored id is data: it must never become a path)."""
    from chipfit.errors import InvalidInputError

    if isinstance(value, str) and _RUN_ID.fullmatch(value):
        return value
    raise InvalidInputError(f"{where}: {_shown(value)} is not a chipfit run id (like "
                            "20260101T120000Z-1a2b3c)")


def _shown(value: Any, limit: int = 40) -> str:
    """A stored value in a one-line message: repr (control characters escaped), cut short."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a {int(abs(value).bit_length() * math.log10(2)) + 1}-digit number"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args, strict=True))
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
        try:
            value = _tupled(data[f.name])
            fits = _conforms(value, hints[f.name])
        except RecursionError:  # lists in lists, deeper than Python's stack
            raise InvalidInputError(f"{where} is damaged: {f.name!r} is nested too "
                                    "deeply") from None
        if not fits:
            raise InvalidInputError(f"{where} is damaged: {f.name!r} is "
                                    f"{type(data[f.name]).__name__}, not {_words(hints[f.name])}")
        values[f.name] = value
    try:
        return cls(**values)
    except OverflowError:  # a __post_init__ check meeting a 400-digit integer
        raise InvalidInputError(f"{where} is damaged: a number in it is too large") from None


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

    def __str__(self) -> str:
        """A short summary: the usable devices, one a line, and how many are missing."""
        lines = [f"{len(self.devices)} device(s) usable here (probed):"]
        for d in self.devices:
            units = f", {d.cores} cores" if d.cores else (
                f", {d.compute_units} compute units" if d.compute_units else "")
            lines.append(f"  {d.ref} ({d.kind}, {d.name}{units})")
        if self.problems:
            lines.append(f"  {len(self.problems)} backend(s)/device type(s) unavailable: "
                         ".problems says why")
        return "\n".join(lines)

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
        for d in parts["devices"]:
            for name, high in (("memory_bytes", 2**63), ("cores", 10**7), ("threads", 10**7),
                               ("compute_units", 10**7)):
                value = getattr(d, name)
                if value is not None and not _within(value, 0, high):
                    raise InvalidInputError(f"{where} is damaged: device {_shown(d.ref)} "
                                            f"{name!r} is {_shown(value)}, not a count from "
                                            f"0 to {high:.0e}")
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

    def __str__(self) -> str:
        """One line: what ran where, and its median with the 95% CI (``.to_dict()`` and the
        fields hold every figure)."""
        from chipfit.timing.units import fmt_seconds

        what = f"{self.workload} {self.size} on {self.series_device} ({self.dtype} {self.mode})"
        if not self.ok:
            return f"{what}: {self.status}" + (f" ({self.note})" if self.note else "")
        rel = self.rel_ci
        spread = f" ±{rel * 100:.1f}%" if math.isfinite(rel) else ""
        busy = ", while the machine was busy" if self.contended else ""
        return f"{what}: {fmt_seconds(self.median_s)} per call{spread} ({self.source}{busy})"

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
        if isinstance(evidence, Mapping):  # a value that is no number fails the type check
            data = {**data, "contention": tuple((str(k), _float_or_same(v))
                                                for k, v in evidence.items())}
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
        problem = _implausible(m)
        if problem:
            raise InvalidInputError(f"{where} is damaged: {problem}")
        return m


# ---- what a stored measurement may hold -------------------------------------------------------
# A measurement read from a file or a database is shown as measured, so its numbers must be
# possible: finite, of the right sign, and within what any hardware can do. The limits are
# generous (far beyond the fastest hardware there is), so a real measurement never meets them;
# a number outside them is damage or a crafted file, refused with the field named.
MAX_SECONDS = 1e6  #: a block, a first call, a copy, a build: under 12 days
MIN_CALL_S = 1e-9  #: one call of any workload takes a nanosecond (a few clock cycles) at least
MAX_FLOP_RATE = 1e18  #: FLOP/s: 100x beyond the fastest accelerator
MAX_BYTE_RATE = 1e16  #: B/s: 1000x beyond the fastest memory
MAX_WORK = 1e24  #: FLOPs or bytes of one call
MAX_BYTES = 2**63  #: bytes held or copied
MAX_CALLS = 10**15

# field: (lowest, highest, in words); None passes wherever the field's type allows it
_RANGES: dict[str, tuple[float, float, str]] = {
    "number_per_block": (1, 1e12, "a count of calls from 1 to 1e12"),
    "warmup_calls": (0, MAX_CALLS, "a count of calls from 0 to 1e15"),
    "first_call_s": (0, MAX_SECONDS, "seconds from 0 to 1e6"),
    "transfer_h2d_s": (0, MAX_SECONDS, "seconds from 0 to 1e6"),
    "transfer_d2h_s": (0, MAX_SECONDS, "seconds from 0 to 1e6"),
    "compile_s": (0, MAX_SECONDS, "seconds from 0 to 1e6"),
    "transfer_h2d_bytes": (0, MAX_BYTES, "bytes from 0 to 2^63"),
    "transfer_d2h_bytes": (0, MAX_BYTES, "bytes from 0 to 2^63"),
    "peak_memory_bytes": (0, MAX_BYTES, "bytes from 0 to 2^63"),
    "flops": (0, MAX_WORK, "FLOPs per call from 0 to 1e24"),
    "bytes_moved": (0, MAX_WORK, "bytes per call from 0 to 1e24"),
    "items_per_call": (1, 1e12, "a count of items from 1 to 1e12"),
    "energy_j": (0, 1e12, "joules from 0 to 1e12"),
    "attempts": (1, 1000, "a count of attempts from 1 to 1000"),
}


def _float_or_same(value: Any) -> Any:
    """``value`` as a float where it is a number that is one; otherwise as it was."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # a 400-digit integer
            return value
    return value


def _within(value: Any, low: float, high: float) -> bool:
    """Whether ``value`` is a number (not a bool) that is finite and in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and low <= number <= high


def _implausible(m: Measurement) -> str:
    """What is impossible about ``m``'s numbers, in words naming the field; "" if nothing."""
    if m.status not in STATUSES:
        return f"'status' is {_shown(m.status)}, not one of {', '.join(STATUSES)}"
    if m.source not in SOURCES:
        return f"'source' is {_shown(m.source)}, not one of {', '.join(SOURCES)}"
    for name, (low, high, words) in _RANGES.items():
        value = getattr(m, name)
        if value is not None and not _within(value, low, high):
            return f"{name!r} is {_shown(value)}, not {words}"
    for name in ("max_abs_diff", "max_rel_diff"):  # inf: outputs that disagree everywhere
        value = getattr(m, name)
        if value is not None and not (_within(value, 0, math.inf) or value == math.inf or (
                isinstance(value, float) and math.isnan(value))):
            return f"{name!r} is {_shown(value)}, not a difference of 0 or more"
    for t in m.block_times_s:  # what every statistic and rate is derived from
        if not _within(t, 0, MAX_SECONDS) or t <= 0 or t / m.number_per_block < MIN_CALL_S:
            return (f"'block_times_s' holds {_shown(t)}: a block takes more than 0 and at most "
                    f"1e6 s, and at least 1 ns per call ({m.number_per_block} per block)")
    for t in m.device_block_times_s:  # an event clock's: an idle device may read 0
        if not _within(t, 0, MAX_SECONDS):
            return f"'device_block_times_s' holds {_shown(t)}, not seconds from 0 to 1e6"
    for key, value in m.contention:
        if not _within(value, -1e15, 1e15):
            return f"'contention' {key!r} is {_shown(value)}, not a finite number"
    if m.ok:
        seconds = m.median_s
        for name, limit, unit in (("flops", MAX_FLOP_RATE, "FLOP/s"),
                                  ("bytes_moved", MAX_BYTE_RATE, "B/s")):
            rate = getattr(m, name) / seconds
            if rate > limit:
                return (f"{name!r} is {getattr(m, name):.3g} per call of {seconds:.3g} s: "
                        f"{rate:.3g} {unit}, beyond any hardware (at most {limit:.0e})")
    return ""


# ---- settings that hold JSON ------------------------------------------------------------------
# Two settings carry data as JSON text, parsed again where a run is shown: ``advice`` (what
# ``chipfit advise`` recommended: the HTML report renders it) and ``fleet_nodes`` (a fleet
# run's nodes: prices are looked up by their accelerators). Their shape is checked where a run
# is read, so a damaged one is one line naming the file and the setting, not a KeyError (or a
# RecursionError) in a renderer. A shape: a type, ("opt", shape) for None too, [shape] for a
# list of them, {key: shape} for an object with those keys (others are free).
_NUMBER, _TEXT, _INT, _FLAG = "number", "text", "int", "flag"
_VALUE = {"value": _NUMBER, "source": _TEXT}
_ADVICE = {
    "objective": _TEXT,
    "verdict": ("opt", {"text": ("opt", _TEXT)}),
    "reasons": [{"text": _TEXT, "supports_verdict": ("opt", _FLAG)}],
    "ranked": [{"device": _TEXT, "kind": _TEXT, "batch": _INT, "bound": ("opt", _TEXT),
                "latency_s": _VALUE, "throughput_per_s": _VALUE,
                "usd_per_million": {"value": ("opt", _NUMBER)},
                "joules_per_sample": {"value": ("opt", _NUMBER), "source": _TEXT}}],
    "excluded": [{"device": _TEXT, "why": _TEXT}],
    "choice": ("opt", _TEXT), "workload": ("opt", _TEXT), "batch": ("opt", _INT),
}
_FLEET_NODES = [{"node_type": _TEXT, "accelerators": ("opt", [[_TEXT, _INT]])}]
_JSON_SETTINGS = {"advice": _ADVICE, "fleet_nodes": _FLEET_NODES}


def _misfit(value: Any, shape: Any, at: str) -> str:
    """Where ``value`` departs from ``shape`` ("" where it fits), e.g. "ranked[0].batch"."""
    if isinstance(shape, tuple):  # ("opt", shape)
        return "" if value is None else _misfit(value, shape[1], at)
    if isinstance(shape, list):
        if not isinstance(value, list) or (len(shape) > 1 and len(value) != len(shape)):
            return f"{at or 'it'} is not a list" + (f" of {len(shape)}" if len(shape) > 1 else "")
        items = zip(value, shape, strict=True) if len(shape) > 1 else ((v, shape[0]) for v in value)
        return next((bad for i, (v, s) in enumerate(items) if (bad := _misfit(v, s, f"{at}[{i}]"))),
                    "")
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{at or 'it'} is not an object"
        for key, inner in shape.items():
            where = f"{at}.{key}" if at else key
            if key not in value:
                if isinstance(inner, (tuple, list)):  # optional, or an empty list
                    continue
                return f"{where} is missing"
            bad = _misfit(value[key], inner, where)
            if bad:
                return bad
        return ""
    fits = {_TEXT: isinstance(value, str), _FLAG: isinstance(value, bool),
            _INT: _within(value, -(2**63), 2**63) and isinstance(value, int),
            _NUMBER: isinstance(value, float) or _within(value, -1e300, 1e300)}[shape]
    return "" if fits else f"{at} is {_shown(value, 24)}, not {'a number' if shape == _NUMBER else shape}"


def check_settings(settings: Iterable[tuple[str, str]], where: str) -> None:
    """Refuse settings whose JSON values (``advice``, ``fleet_nodes``) are damaged."""
    from chipfit.errors import InvalidInputError

    for key, text in settings:
        shape = _JSON_SETTINGS.get(key)
        if shape is None:
            continue
        try:
            value = json.loads(text)
        except RecursionError:
            raise InvalidInputError(f"{where} is damaged: setting {key!r} is nested too "
                                    "deeply") from None
        except ValueError as exc:
            raise InvalidInputError(f"{where} is damaged: setting {key!r} is not JSON "
                                    f"({str(exc)[:60]})") from None
        problem = _misfit(value, shape, "")
        if problem:
            raise InvalidInputError(f"{where} is damaged: setting {key!r}: {problem}")


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

    def __str__(self) -> str:
        """A short summary: the run, how many points succeeded, the first few points (one a
        line, :meth:`Measurement.__str__`) and where the rest are."""
        ok = sum(m.ok for m in self.measurements)
        busy = sum(bool(m.contended) for m in self.measurements)
        devices = ", ".join(dict.fromkeys(m.series_device for m in self.measurements))
        head = (f"{self.command or 'bench'} run {self.run_id}: {ok} of "
                f"{len(self.measurements)} point(s) ok" + (f" on {devices}" if devices else "")
                + (f"; {busy} measured while the machine was busy" if busy else "")
                + ("; interrupted" if self.interrupted else ""))
        shown = [f"  {m}" for m in self.measurements[:_SHOWN]]
        more = len(self.measurements) - _SHOWN
        tail = [f"  ... {more} more in .measurements"] if more > 0 else []
        return "\n".join([head, *shown, *tail])


#: How many measurements ``str(run)`` lists before pointing at ``.measurements``.
_SHOWN = 8


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


@dataclass(frozen=True)
class RunSummary:
    """One line of ``chipfit runs``: who measured what, when, and how far it got."""

    run_id: str
    command: str
    started_at: str
    finished_at: str
    interrupted: bool
    chipfit_version: str
    fingerprint: str
    hostname: str
    devices: tuple[str, ...]
    versions: tuple[tuple[str, str], ...]
    planned: int
    measured: int
    ok: int
    workloads: tuple[str, ...] = ()  # what the run measured, from its settings

    @property
    def state(self) -> str:
        """``complete``, ``interrupted`` (Ctrl-C) or ``unfinished`` (killed, or still running)."""
        if self.interrupted:
            return "interrupted"
        return "complete" if self.finished_at else "unfinished"
