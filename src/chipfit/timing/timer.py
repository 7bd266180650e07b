"""The fenced, adaptive timer.

The timer never learns what device it is timing. The backend hands it ``wait(out)``, which
returns only when the work that produced ``out`` has finished (torch: the device's
synchronize; JAX: ``block_until_ready``; CPU: nothing). Both edges of every timed block are
fenced: ``wait`` on the previous output before the clock starts, so queued work does not leak
in, and ``wait`` on the last output before it stops, so asynchronous launches are not mistaken
for finished work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chipfit.spec import TimingConfig
from chipfit.timing import stats

__all__ = ["DeviceTimer", "TimerResult", "measure"]

Clock = Callable[[], float]
Wait = Callable[[Any], None]
# Even when the budget is spent, keep this many samples so spread is defined.
_MIN_KEPT_SAMPLES = 3


class DeviceTimer(Protocol):
    """An extra clock on the device itself (CUDA/XPU events), recorded beside the wall clock."""

    def start(self) -> Any: ...

    def stop(self, token: Any) -> float: ...


@dataclass(frozen=True)
class TimerResult:
    block_times_s: tuple[float, ...]
    number_per_block: int
    first_call_s: float
    warmup_calls: int
    stop_reason: str  # ci_target | budget | max_samples
    device_block_times_s: tuple[float, ...] = ()


def _block(thunk: Callable[[], Any], wait: Wait, number: int, clock: Clock, prev: Any,
           device_timer: DeviceTimer | None = None) -> tuple[float, Any, float | None]:
    wait(prev)  # leading fence: nothing queued earlier may run inside this block
    token = device_timer.start() if device_timer is not None else None
    start = clock()
    out = prev
    for _ in range(number):
        out = thunk()
    wait(out)  # trailing fence: the block ends when the device is done, not when it returns
    elapsed = clock() - start
    device_s = device_timer.stop(token) if device_timer is not None else None
    return elapsed, out, device_s


def _warmup(thunk: Callable[[], Any], wait: Wait, config: TimingConfig, clock: Clock,
            out: Any, first_s: float) -> tuple[float, int, Any]:
    """Run warm-up blocks of growing size; return the per-call estimate and calls made."""
    number, calls, spent, per_call = 1, 0, 0.0, first_s
    while spent < config.warmup_s or calls < config.warmup_min_calls:
        elapsed, out, _ = _block(thunk, wait, number, clock, out)
        spent += elapsed
        calls += number
        per_call = elapsed / number
        if per_call * 3 >= config.budget_s:  # a long call: one warm-up call is all we afford
            break
        if elapsed < config.warmup_s / 8:
            number *= 2
    return per_call, calls, out


def _should_stop(samples: list[float], number: int, spent: float,
                 config: TimingConfig) -> str | None:
    n = len(samples)
    if n >= config.min_samples:
        per_call = [s / number for s in samples]
        if stats.rel_ci_halfwidth(per_call) <= config.target_rel_ci:
            return "ci_target"
    if n >= config.max_samples:
        return "max_samples"
    if spent >= config.budget_s and n >= _MIN_KEPT_SAMPLES:
        return "budget"
    return None


def measure(thunk: Callable[[], Any], wait: Wait, config: TimingConfig | None = None,
            clock: Clock = time.perf_counter,
            device_timer: DeviceTimer | None = None) -> tuple[TimerResult, Any]:
    """Time ``thunk`` until the median is known to ``config.target_rel_ci`` or time runs out.

    Returns the timing and the last output (for a device->host copy measurement).
    """
    config = config or TimingConfig()
    first_s, out, _ = _block(thunk, wait, 1, clock, None)
    per_call, warm_calls, out = _warmup(thunk, wait, config, clock, out, first_s)
    number = max(1, math.ceil(config.min_block_s / max(per_call, 1e-9)))
    samples: list[float] = []
    device_samples: list[float] = []
    spent = 0.0
    while True:
        elapsed, out, device_s = _block(thunk, wait, number, clock, out, device_timer)
        samples.append(elapsed)
        if device_s is not None:
            device_samples.append(device_s)
        spent += elapsed
        reason = _should_stop(samples, number, spent, config)
        if reason:
            break
    result = TimerResult(tuple(samples), number, first_s, warm_calls, reason,
                         tuple(device_samples))
    return result, out
