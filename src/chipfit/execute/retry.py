"""Re-measure contended points after a back-off, within a bounded budget.

A point measured while the machine was shared (see :mod:`chipfit.timing.contention`) is run
again once the first pass is over, after a pause that gives the neighbours time to finish:
at most :data:`MAX_ROUNDS` rounds, the first after :data:`BACKOFF_S`, each pause doubling,
and all of it within a budget of :data:`BUDGET_SHARE` of the first pass's wall time (at
least :data:`BUDGET_MIN_S`, at most :data:`BUDGET_MAX_S`): no round starts, and no point
of a round is begun, once the budget is spent. A re-measured point replaces the
first one and counts its ``attempts``; one still contended after the last round stays
marked, and analysis leaves it out or labels what it draws from it
(:mod:`chipfit.analysis.trust`).

Before each round, multi-threaded CPU points are checked against their one-thread sibling in
the same run: the stall signature (a parallel op waiting a scheduler quantum for a taken
core) can make every block equally slow, so the block times alone do not show it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from chipfit.results import Measurement, Run
from chipfit.spec import DeviceRef, Job
from chipfit.timing.contention import STALL_VS_SERIAL, judge, numbers_of, stall_vs_serial

if TYPE_CHECKING:
    from chipfit.execute.base import Executor

__all__ = ["BACKOFF_S", "MAX_ROUNDS", "mark_stalls", "remeasure_contended", "retry_budget_s"]

MAX_ROUNDS = 2
#: The first pause: long enough for a test run or a compile beside us to move on, short
#: enough that a quick bench stays quick. Doubles each round.
BACKOFF_S = 1.0
BUDGET_SHARE = 0.3
BUDGET_MIN_S = 4.0
BUDGET_MAX_S = 60.0

Key = tuple[str, ...]


def _key(m: Measurement) -> Key:
    return m.key  # the job's key: a stack other than the default is part of it


def _serial_sibling(m: Measurement) -> Key | None:
    """The key of the same point on the same CPU pinned to one thread (None: not a parallel
    CPU point)."""
    try:
        ref = DeviceRef.parse(m.device)
    except Exception:  # a device name from another build: no sibling to compare
        return None
    if not ref.is_cpu or ref.threads == 1:
        return None
    return (m.workload, m.size, str(replace(ref, threads=1)), m.dtype, m.mode, *m.key[5:])


def mark_stalls(measurements: Sequence[Measurement]) -> list[Measurement]:
    """``measurements`` with each parallel CPU point that is STALL_VS_SERIAL x slower than
    its one-thread sibling marked contended (the stall signature)."""
    by_key = {_key(m): m for m in measurements}
    out = []
    for m in measurements:
        sibling = by_key.get(_serial_sibling(m)) if m.ok else None  # type: ignore[arg-type]
        ratio = stall_vs_serial(m.median_s, sibling.median_s) if sibling and sibling.ok else 0.0
        if ratio >= STALL_VS_SERIAL:
            verdict = judge({**numbers_of(m.contention), "stall_vs_serial": ratio})
            m = replace(m, contended=True, contention=verdict.numbers,
                        contention_note=verdict.note)
        out.append(m)
    return out


def retry_budget_s(first_pass_s: float) -> float:
    return min(BUDGET_MAX_S, max(BUDGET_MIN_S, BUDGET_SHARE * first_pass_s))


def remeasure_contended(jobs: Sequence[Job], done: list[Measurement], run: Run,
                        executor: Executor, first_pass_s: float, *,
                        keep: Callable[[Measurement], None] | None = None,
                        sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> tuple[Run, bool]:
    """Re-measure the contended points of ``jobs`` in ``done`` (see the module docstring);
    ``keep`` is handed each re-measured point at once (the store's ``replace_measurement``).

    Returns the run with the final measurements, and whether any point was re-measured.
    """
    planned = {job.key: job for job in jobs}
    budget, start, pause, changed = retry_budget_s(first_pass_s), clock(), BACKOFF_S, False
    done[:] = mark_stalls(done)
    for _ in range(MAX_ROUNDS):
        todo = [planned[_key(m)] for m in done if m.ok and m.contended and _key(m) in planned]
        if not todo or clock() - start + pause >= budget:
            break
        sleep(pause)
        pause *= 2
        _round(todo, done, run, executor, keep, lambda: clock() - start >= budget)
        done[:] = mark_stalls(done)
        changed = True
    return replace(run, measurements=tuple(done)), changed


def _round(todo: Sequence[Job], done: list[Measurement], run: Run, executor: Executor,
           keep: Callable[[Measurement], None] | None, spent: Callable[[], bool]) -> None:
    """Re-measure ``todo``, each result replacing its point in ``done`` (and handed to
    ``keep`` at once); progress callbacks are not called again: every job counts once."""
    where = {_key(m): i for i, m in enumerate(done)}
    with contextlib.closing(executor.run(todo, run.discovery)) as outcomes:
        for job, m in outcomes:
            slot = where[job.key]
            # a re-measurement that failed (a crash, a timeout) does not erase a timing
            kept = _with_launches(m, done[slot]) if m.ok else done[slot]
            done[slot] = replace(kept, attempts=done[slot].attempts + 1)
            if keep is not None:
                keep(done[slot])
            if spent():
                break  # closing the executor's iterator stops the points not yet begun


def _with_launches(new: Measurement, old: Measurement) -> Measurement:
    """``new`` keeping what only the first measurement knew: the executor's launch count
    (metadata ``attempts``: workers that died before a result, then the one that gave it)
    summed over both, and the first one's other metadata that the re-measurement does not
    set (``moved_from``: the job left a lost node), so a re-measured point keeps its history."""
    meta = new.meta
    kept = tuple((k, v) for k, v in old.metadata if k not in meta)
    a, b = old.meta.get("attempts", ""), meta.get("attempts", "")
    if not (a.isdigit() and b.isdigit()):
        return replace(new, metadata=new.metadata + kept)
    rest = tuple(p for p in new.metadata if p[0] != "attempts")
    return replace(new, metadata=rest + kept + (("attempts", str(int(a) + int(b))),))
