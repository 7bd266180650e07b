"""Fenced timing of a fixed number of calls, for steps every process must take in lockstep.

The adaptive timer (:func:`chipfit.timing.timer.measure`) decides on its own when to stop,
which ranks of a data-parallel job cannot do: each collective needs every rank to take every
step. These helpers time exactly the calls asked for, with the same fences as the timer (the
session's ``wait`` on both edges of every block), so scaling measurements never bypass them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chipfit.timing.timer import Clock, Wait, _block

__all__ = ["fenced_block", "fenced_calls"]


def fenced_block(thunk: Callable[[], Any], wait: Wait, number: int = 1,
                 clock: Clock = time.perf_counter) -> float:
    """Seconds for ``number`` calls of ``thunk`` in one block, fenced on both edges."""
    if number < 1:
        return 0.0
    return _block(thunk, wait, number, clock, None)[0]


def fenced_calls(thunk: Callable[[], Any], wait: Wait, calls: int,
                 clock: Clock = time.perf_counter) -> tuple[float, ...]:
    """Seconds of each of ``calls`` calls, each its own fenced block."""
    return tuple(fenced_block(thunk, wait, 1, clock) for _ in range(calls))
