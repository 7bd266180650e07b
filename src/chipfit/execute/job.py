"""Run one job in this process: build, copy, time, copy back, and classify failures.

Failures are values: an unsupported dtype, an out-of-memory error or a crash in a kernel
becomes a :class:`Measurement` with that status, so a suite goes on. Only Ctrl-C
(KeyboardInterrupt) propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chipfit.backends import Session, get_backend
from chipfit.errors import OutOfMemoryError, UnsupportedError, UsageError
from chipfit.hardware.energy import MeterUnavailable
from chipfit.results import Discovery, Measurement
from chipfit.spec import Job
from chipfit.timing import stats
from chipfit.timing.timer import TimerResult, measure
from chipfit.workloads import Workload, get_workload

__all__ = ["run_job"]

_COPY_REPEATS = 5
_UNSUPPORTED_HINTS = ("not implemented for", "unsupported", "does not support", "not supported")


def _time_copy(session: Session, copy: Callable[[Any], Any], value: Any) -> tuple[float, Any]:
    """Median time of a fenced copy of ``value``, and the copied value."""
    times, out = [], value
    for _ in range(_COPY_REPEATS):
        session.wait(None)
        start = time.perf_counter()
        out = copy(value)
        session.wait(out)
        times.append(time.perf_counter() - start)
    return stats.median(times), out


def _nbytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if hasattr(value, "element_size"):
        return int(value.element_size() * value.nelement())
    return 0


def _classify(exc: BaseException, session: Session | None) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    if isinstance(exc, UnsupportedError):
        return "unsupported", str(exc)
    if isinstance(exc, OutOfMemoryError):
        return "oom", str(exc)
    if session is not None and session.is_oom(exc):
        return "oom", f"does not fit: {text}"
    if isinstance(exc, (RuntimeError, TypeError, NotImplementedError)) and any(
            h in str(exc).lower() for h in _UNSUPPORTED_HINTS):
        return "unsupported", text
    return "error", text


MEMORY_LIMIT_ENV = "CHIPFIT_MEMORY_LIMIT_BYTES"
#: Share of a device's memory a job may plan to use: the rest is headroom for the framework
#: and the OS.
MEMORY_HEADROOM = 0.9


def memory_limit(info: Any) -> tuple[float | None, float, str]:
    """Bytes a job may use, the capacity to name in the message, and where the limit came
    from: 90% of the device's memory (headroom for the framework and the OS), or
    ``$CHIPFIT_MEMORY_LIMIT_BYTES`` (e.g. ``2Gi``) when that is lower."""
    import os

    from chipfit.workloads.base import parse_count

    total = info.memory_bytes if info is not None and info.memory_bytes else None
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if text:
        chosen = parse_count(text, MEMORY_LIMIT_ENV)
        if total is None or chosen < total * MEMORY_HEADROOM:
            return float(chosen), float(chosen), f"; limit set by {MEMORY_LIMIT_ENV}"
    return (total * MEMORY_HEADROOM, float(total), "") if total else (None, 0.0, "")


def guard_memory(job: Job, discovery: Discovery, workload: Workload | None = None) -> None:
    """Raise OutOfMemoryError when the workload's estimate exceeds the device's limit
    (``workload``: the job's, when the caller has it already)."""
    workload = workload or get_workload(job.workload)
    limit, capacity, why = memory_limit(discovery.get(str(job.device.base)))
    if limit is None:
        return
    need = workload.memory_estimate(job.size, job.dtype, job.mode)
    if need is not None and need > limit:
        raise OutOfMemoryError(f"does not fit in {capacity / 2**30:.1f} GiB "
                               f"(estimated {need / 2**30:.1f} GiB{why})")


def _energy_per_call(meter: Any, start_j: float | None, timing: TimerResult) -> tuple[float | None, str]:
    """Joules per call over the whole timed window (first call, warm-up and blocks)."""
    if start_j is None:
        return None, f"unavailable: {meter.reason}"
    calls = 1 + timing.warmup_calls + timing.number_per_block * len(timing.block_times_s)
    return (meter.read_j() - start_j) / calls, f"measured: {meter.name} (device-wide counter)"


def run_job(job: Job, discovery: Discovery | None = None) -> Measurement:
    """Measure ``job`` here and now; never raises for a failing workload (Ctrl-C excepted).
    Whatever the workload prints (a user's model may) goes to stderr, never into stdout's
    JSON."""
    from chipfit.workloads.user import user_output_to_stderr

    with user_output_to_stderr():
        return _run_job(job, discovery)


def _run_job(job: Job, discovery: Discovery | None) -> Measurement:
    workload = get_workload(job.workload)
    size = workload.parse_size(job.size)
    base: dict[str, Any] = dict(workload=job.workload, size=size, device=str(job.device),
                                dtype=job.dtype, mode=job.mode, stack=job.stack)
    try:  # counting FLOPs runs the user's model too: its failure is this job's result
        cost = workload.cost(size, job.dtype, job.mode)
    except (KeyboardInterrupt, UsageError):
        raise
    except Exception as exc:
        return Measurement(status="error", note=f"counting the FLOPs failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}"[:300], **base)
    base.update(flops=cost.flops, bytes_moved=cost.bytes_moved)
    backend = get_backend(job.device.backend)
    discovery = discovery or backend.discover()
    with backend.session(job.device, discovery) as session:
        try:
            guard_memory(job, discovery, workload)
            return _measure(job, workload, session, base)
        except (KeyboardInterrupt, UsageError):
            raise
        except Exception as exc:  # a failing kernel is a result, not a crash
            status, note = _classify(exc, session)
            return Measurement(status=status, note=note, **base)


def _measure(job: Job, workload: Workload, session: Session, base: dict[str, Any]) -> Measurement:
    session.memory_reset()
    from chipfit.workloads.stacks import build_stack

    prepared = build_stack(workload, job.device.backend, job.stack, base["size"], job.dtype,
                           job.mode, session)
    if session.copies:
        h2d_s, dev_args = _time_copy(session, session.to_device, prepared.host_args)
    else:
        h2d_s, dev_args = 0.0, session.to_device(prepared.host_args)
    fn = prepared.fn
    meter = session.energy_meter()
    start_j = meter.read_j() if not isinstance(meter, MeterUnavailable) else None
    timing, out = measure(lambda: fn(*dev_args), session.wait, job.timing,
                          device_timer=session.device_timer())
    energy_j, energy_source = _energy_per_call(meter, start_j, timing)
    d2h_s = _time_copy(session, session.to_host, out)[0] if session.copies else 0.0
    peak, method = session.memory_peak()
    return Measurement(
        **base, block_times_s=timing.block_times_s, number_per_block=timing.number_per_block,
        first_call_s=timing.first_call_s, warmup_calls=timing.warmup_calls,
        stop_reason=timing.stop_reason, transfer_h2d_s=h2d_s, transfer_d2h_s=d2h_s,
        transfer_h2d_bytes=_nbytes(prepared.host_args) if session.copies else 0,
        transfer_d2h_bytes=_nbytes(out) if session.copies else 0,
        peak_memory_bytes=peak, memory_method=method, items_per_call=prepared.items,
        device_block_times_s=timing.device_block_times_s,
        energy_j=energy_j, energy_source=energy_source, compile_s=prepared.compile_s,
        max_abs_diff=prepared.max_abs_diff, max_rel_diff=prepared.max_rel_diff,
        metadata=prepared.details + (("copies", "measured" if session.copies else
                                      "none: host memory"),),
    )


