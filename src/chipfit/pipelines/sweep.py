"""Sweeps: one workload over a geometric ladder of sizes on several devices, OOM-aware.

A sweep measures every rung of the ladder on every (device, dtype) in increasing size. Once
a size does not fit on a device (status ``oom``), the larger sizes are not tried there: they
would not fit either, and trying can take minutes. The result is the :class:`Run` plus its
:class:`~chipfit.analysis.crossover.SweepAnalysis` (crossovers, largest fitting size, best
throughput).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chipfit.errors import InvalidInputError, OutOfMemoryError
from chipfit.results import Discovery, GuardLimit, Measurement, Run
from chipfit.spec import DeviceRef, Job, TimingConfig, parse_dtype
from chipfit.workloads.base import geometric_ladder

if TYPE_CHECKING:
    from chipfit.analysis.crossover import SweepAnalysis
    from chipfit.execute.base import Executor
    from chipfit.store.sqlite import Store

__all__ = ["AXES", "SweepResult", "analyze_run", "bisection_jobs", "geometric_ladder",
           "guard_limit", "guard_limits", "ladder_for", "plan_sweep", "sweep"]

#: Sweep axes a user can name, and the workload axes each covers.
AXES = {"n": ("n", "elements"), "elements": ("elements",), "batch": ("batch",)}

# Default ladders per workload axis: (full, quick). Chosen so that the small end is launch-
# and overhead-bound and the large end is compute- or bandwidth-bound on a CPU, while the
# quick ladder stays under two minutes on two cores. A workload may set ``sweep_range`` /
# ``quick_sweep_range`` to override.
_AXIS_RANGES = {
    "n": ((16, 2048), (16, 512)),
    "elements": ((2**10, 2**24), (2**10, 2**22)),
    "batch": ((1, 256), (1, 32)),
}
# A default ladder (no --to) stops below the size where one call would exceed this many FLOPs
# (full, quick): about 10-25 s (full) and 0.5-1 s (quick) per call on one CPU core at 20-50
# GFLOP/s, so that a quick sweep of even a large model stays within two minutes on two cores.
# It never cuts the ladder below two rungs.
_FLOP_CAP = (500e9, 20e9)
#: The most ladder points one sweep takes (``--points``): far past any crossover's need, and
#: a bound on the plan (10^9 points built a ladder for minutes).
MAX_POINTS = 256
_MAX_ESTIMATES = 48  # per limit search; a model's memory estimate can take a second or two
_REACH = 2**20  # no limit is stated beyond this multiple of the largest size measured


def _check_axis(workload: Any, axis: str | None) -> None:
    if axis is None:
        return
    if axis not in AXES:
        from chipfit.errors import UnknownNameError

        raise UnknownNameError("axis", axis, AXES)
    own = getattr(workload, "axis", "n")
    if own not in AXES[axis]:
        raise InvalidInputError(f"{getattr(workload, 'name', workload)} sweeps its {own} axis, "
                                f"not {axis}: drop --axis or use --axis {own}")


def _capped(workload: Any, lo: int, hi: int, cap: float, dtype: str, mode: str) -> int:
    """``hi`` halved until one call costs at most ``cap`` FLOPs (keeping two rungs or more)."""
    while hi >= 4 * lo and workload.cost(workload.parse_size(str(hi)), dtype, mode).flops > cap:
        hi //= 2
    return hi


def ladder_for(workload: Any, start: str | None = None, stop: str | None = None,
               points: int | None = None, quick: bool = False, axis: str | None = None, *,
               dtype: str = "float32", mode: str | None = None) -> list[str]:
    """Size labels of a sweep of ``workload``: the range given, else its default range.

    The default range comes from the workload (``sweep_range`` / ``quick_sweep_range``) or its
    axis, its top lowered while one call would cost more than the FLOP cap (see _FLOP_CAP).
    """
    from chipfit.workloads.base import parse_count

    if points is not None and points > MAX_POINTS:
        raise InvalidInputError(f"--points {points}: at most {MAX_POINTS} points per sweep")
    _check_axis(workload, axis)
    full, fast = _AXIS_RANGES.get(workload.axis, _AXIS_RANGES["n"])
    default = getattr(workload, "quick_sweep_range" if quick else "sweep_range", None)
    lo, hi = default or (fast if quick else full)
    lo = parse_count(start, "--from") if start is not None else lo
    if stop is not None:
        hi = parse_count(stop, "--to")
    else:
        hi = _capped(workload, lo, max(hi, lo), _FLOP_CAP[quick], dtype,
                     mode or workload.modes[0])
    return workload.ladder(lo, hi, points)


def plan_sweep(workload: str, sizes: Sequence[str], devices: Sequence[DeviceRef],
               dtypes: Sequence[str], mode: str, timing: TimingConfig,
               stacks: Sequence[str] = ("eager",)) -> list[Job]:
    """Jobs in run order: sizes ascending; per size every dtype and stack on every device
    that runs the stack (:func:`chipfit.workloads.stacks.device_stacks`)."""
    from chipfit.workloads.stacks import device_stacks

    pairs = device_stacks(devices, stacks)
    return [Job(workload, size, ref, dtype, mode, timing, stack=stack)
            for size in sizes for dtype in dtypes for ref, stack in pairs]


def _guess(a: tuple[int, float], b: tuple[int, float], budget: float, lo: int,
           hi: int | None, top: int, bisect: bool) -> int:
    """Next size to try: the secant through ``a`` and ``b`` towards ``budget`` bytes, kept in
    ``(lo, hi)``; the bracket's midpoint on ``bisect`` turns or when the secant leaves it."""
    (xa, ma), (xb, mb) = a, b
    x = xb + (budget - mb) * (xb - xa) / (mb - ma) if mb != ma else math.inf
    if hi is None:  # no size known not to fit yet: reach at most 1024x further per step
        reach = min(top, lo * 1024)
        x = reach if not math.isfinite(x) or x <= lo else min(x, reach)
        return max(lo + 1, int(x))
    if bisect or not lo < x < hi:
        x = (lo + hi) / 2
    return min(hi - 1, max(lo + 1, int(x)))


def _largest_fitting(fits: Callable[[int], bool], estimate: Callable[[int], float],
                     budget: float, lo: int, prev: int, top: int) -> int | None:
    """Largest integer size that ``fits``, given ``fits(lo)`` and another size ``prev``.

    Secant steps on ``estimate(x) = budget`` (exact in one step when memory is affine in
    size, as a model's is in its batch: weights plus per-sample activations), then, once a
    size that does not fit brackets the answer, false position alternating with bisection.
    Every answer is decided by ``fits`` (the memory guard itself). None if even ``top`` fits.
    """
    low, high = (prev, estimate(prev)), (lo, estimate(lo))
    hi: int | None = None
    for step in range(_MAX_ESTIMATES):
        if hi is not None and hi - lo <= 1:
            break
        x = _guess(low, high, budget, lo, hi, top, bisect=step % 2 == 1)
        if fits(x):
            if x >= top:
                return None
            lo, low = x, high
            high = (x, estimate(x))
        else:
            hi = x
            low, high = (lo, estimate(lo)), (x, estimate(x))
    return lo


def guard_limit(workload: str, dtype: str, mode: str, ref: DeviceRef, discovery: Discovery,
                near: Sequence[int] = ()) -> str | None:
    """Largest integer size the memory guard admits on ``ref`` (predicted from the workload's
    memory estimate; None when there is no estimate or no known device memory, or when sizes
    beyond 2^20 times the largest measured still fit).

    ``near`` are sizes known to fit (the sweep's), which seed the search: for a model, whose
    memory is affine in its batch, two estimates settle it.
    """
    from chipfit.execute.job import guard_memory, memory_limit
    from chipfit.workloads import get_workload

    wl = get_workload(workload)
    info = discovery.get(str(ref.base))

    def estimate(value: int) -> float:
        return float(wl.memory_estimate(wl.parse_size(str(value)), dtype, mode) or 0)

    def fits(value: int) -> bool:
        try:
            guard_memory(Job(workload, wl.parse_size(str(value)), ref, dtype, mode), discovery, wl)
        except OutOfMemoryError:
            return False
        return True

    if info is None or not info.memory_bytes or wl.memory_estimate("1", dtype, mode) is None:
        return None
    known = sorted({v for v in near if v >= 1} | {1})
    fitting = next((v for v in reversed(known) if fits(v)), None)
    if fitting is None:
        return None
    lower = [v for v in known if v < fitting]
    second = lower[-1] if lower else 2 * fitting  # any other point serves the first secant
    limit = memory_limit(info)[0] or 0.0
    found = _largest_fitting(fits, estimate, limit, fitting, second,
                             fitting * _REACH)
    return None if found is None else wl.parse_size(str(found))


def guard_limits(run: Run, compute: bool = True) -> dict[tuple[str, str, str, str], str | None]:
    """Per (workload, device, dtype, mode) of ``run``: the memory guard's limit (predicted).

    Limits recorded in the run's settings (a sweep records them) are used as they are; the
    others are searched for when ``compute`` (a model's estimate can take seconds each).
    """
    from chipfit.errors import ChipfitError

    limits = run.limits()
    if not compute:
        return limits
    memo: dict[tuple[str, str, str, int | None], str | None] = {}
    for key, sizes in _fitting_sizes(run).items():
        if key in limits:
            continue
        workload, device, dtype, mode = key
        try:
            ref = DeviceRef.parse(device)
            info = run.discovery.get(str(ref.base))
            memo_key = (workload, dtype, mode, info.memory_bytes if info else None)
            if memo_key not in memo:  # the estimate does not depend on the device
                memo[memo_key] = guard_limit(workload, dtype, mode, ref, run.discovery, sizes)
            limits[key] = memo[memo_key]
        except ChipfitError:  # a workload or device this build does not know
            limits[key] = None
    return limits


def _fitting_sizes(run: Run) -> dict[tuple[str, str, str, str], list[int]]:
    sizes: dict[tuple[str, str, str, str], list[int]] = {}
    for m in run.measurements:
        found = sizes.setdefault((m.workload, m.device, m.dtype, m.mode), [])
        if m.ok and m.size.isdigit():
            found.append(int(m.size))
    return sizes


def analyze_run(run: Run, *, level: float = 0.95, resamples: int = 2000, seed: int = 0,
                compute_limits: bool = True) -> SweepResult:
    """The analysis of any run (a sweep's, a bench's, or one loaded from a file), with the run
    carrying the memory guard's limits in its settings."""
    from chipfit.analysis.crossover import analyze
    from chipfit.workloads import size_position

    limits = guard_limits(run, compute_limits)
    known = run.limits()
    run = replace(run, guard_limits=run.guard_limits + tuple(
        GuardLimit(*key, size) for key, size in limits.items() if key not in known))
    # A fleet's node types are separate series: "torch:cpu on cpu-big" vs "... on cpu-small".
    measured = [m if m.node_type is None else replace(m, device=f"{m.device} on {m.node_type}")
                for m in run.measurements]
    analysis = analyze(measured, limits=limits, level=level, resamples=resamples, seed=seed,
                       position=size_position)
    return SweepResult(run, analysis)


@dataclass(frozen=True)
class SweepResult:
    """A sweep's run and what was found in it."""

    run: Run
    analysis: SweepAnalysis

    def __str__(self) -> str:
        """A short summary: the run's first line, then each crossover (where two series
        change places, with its interval; the words of ``chipfit sweep`` are in the report
        layer), and where the rest is."""
        from chipfit.timing.units import fmt_num

        lines = [str(self.run).splitlines()[0]]
        for c in self.analysis.crossovers:
            pair = f"{c.a.device} vs {c.b.device} ({c.a.dtype} {c.a.mode}, {c.view})"
            busy = ", from contended points" if c.from_contended else ""
            if not c.crossings:
                faster = c.faster.device if c.faster is not None else "neither"
                lines.append(f"  {c.workload} {pair}: no crossover; faster: {faster} "
                             f"({c.source}{busy})")
            for x in c.crossings:
                lines.append(f"  {c.workload} {pair}: crossover at ≈ {fmt_num(x.x)} "
                             f"({fmt_num(x.interval[0])} to {fmt_num(x.interval[1])}), "
                             f"{x.faster_below.device} faster below ({c.source}{busy})")
        lines.append("  .run.measurements has every point, .analysis every finding")
        return "\n".join(lines)


OnResult = Callable[[int, int, Job, Measurement, Run], None]


def _series_of(job: Job) -> tuple[str, str, str, str, str | None]:
    """A series of the ladder (each stack is one; a fleet's node types are separate series:
    different memory)."""
    return (str(job.device), job.dtype, job.mode, job.stack, job.node_type)


def _run_ladder(jobs: Sequence[Job], run: Run, on_result: OnResult | None,
                **where: Any) -> Run:
    """Run ``jobs`` rung by rung, skipping larger sizes on a series once one ran out of memory.

    ``where`` (executor, store) goes to :func:`chipfit.pipelines.bench.run_jobs` unchanged.
    The run is marked finished once, after the last rung (each rung's call leaves it open), so
    a sweep killed between rungs is stored unfinished and ``--resume`` continues it.
    """
    from chipfit.paths import utc_now
    from chipfit.pipelines.bench import run_jobs

    rungs = [[j for j in jobs if j.size == size] for size in dict.fromkeys(j.size for j in jobs)]
    out_of_memory: set[tuple[str, str, str, str, str | None]] = set()
    done = 0
    for r, rung in enumerate(rungs):
        todo = [j for j in rung if _series_of(j) not in out_of_memory]
        total = done + sum(_series_of(j) not in out_of_memory for later in rungs[r:] for j in later)

        def report(i: int, n: int, job: Job, m: Measurement, partial: Run,
                   offset: int = done, total: int = total) -> None:
            if on_result is not None:
                on_result(offset + i, total, job, m, partial)

        run = run_jobs(todo, run, report, finish=False, **where)
        done += len(todo)
        out_of_memory |= {(m.device, m.dtype, m.mode, m.stack, m.node_type)
                          for m in run.measurements
                          if m.status == "oom"}
        if run.interrupted:
            return run  # run_jobs recorded how it ended
    run = replace(run, finished_at=utc_now())
    if where.get("store") is not None:
        where["store"].finish_run(run)
    return run


def sweep(workload: str, devices: Iterable[str] | None = None, *, axis: str | None = None,
          start: str | None = None, stop: str | None = None, points: int | None = None,
          dtypes: Sequence[str] = ("float32",), mode: str | None = None, quick: bool = False,
          stacks: Sequence[str] = ("eager",),
          timing: TimingConfig | None = None, on_result: OnResult | None = None,
          discovery: Discovery | None = None, level: float = 0.95,
          executor: Executor | None = None, store: Store | None = None,
          resume: bool | str = False) -> SweepResult:
    """Measure ``workload`` over a ladder of sizes on ``devices`` and find the crossovers.

    Devices default to every device found plus torch's CPU pinned to one thread; the ladder
    defaults to the workload's range (``quick``: a shorter one, with short timing).
    ``executor`` says where jobs run (default: this process); ``store`` keeps each
    measurement as it arrives, and the finished run with its memory-guard limits.
    ``resume=True`` continues the newest unfinished sweep in ``store`` with the same settings,
    ``resume="RUN_ID"`` that sweep; either way only the missing points are measured.
    ``stacks`` (:mod:`chipfit.workloads.stacks`) add series per software stack; a stack on a
    device is labelled ``device+stack`` in the analysis, so stacks cross over like devices.
    """
    from chipfit.analysis.crossover import check_settings
    from chipfit.discovery import backends_named, discover, resolve_devices
    from chipfit.pipelines.bench import (
        default_devices,
        find_resumable_run,
        new_run,
        place,
        resume_run,
    )
    from chipfit.workloads import get_workload

    check_settings(level, 2000)  # refuse a bad level before minutes of measuring
    if resume and store is None:
        raise InvalidInputError("resuming needs the results database (--db, and no --no-save)")
    if isinstance(resume, str) and resume:
        run, todo = resume_run(store, resume)  # type: ignore[arg-type]
        if run.command != "sweep":
            raise InvalidInputError(f"run {run.run_id} is a {run.command} run: resume it with "
                                    f"chipfit {run.command} --resume")
        return _finish_sweep(todo, run, on_result, executor, store, level)
    wl = get_workload(workload)
    mode = mode or wl.modes[0]
    if mode not in wl.modes:
        raise InvalidInputError(f"{workload} has no mode {mode!r} (modes: {', '.join(wl.modes)})")
    dtypes = list(dict.fromkeys(parse_dtype(d) for d in dtypes))
    sizes = ladder_for(wl, start, stop, points, quick, axis, dtype=dtypes[0], mode=mode)
    devices = list(devices) if devices is not None else None
    named = backends_named(devices)  # only the named devices' frameworks are started
    discovery = discovery or (executor.discover(named) if executor else discover(named))
    refs = resolve_devices(devices, discovery) if devices else default_devices(discovery)
    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    settings = {"workload": workload, "axis": wl.axis, "from": sizes[0], "to": sizes[-1],
                "sizes": ",".join(sizes), "devices": ",".join(map(str, refs)),
                "dtypes": ",".join(dtypes), "mode": mode, "quick": str(quick)}
    from chipfit.workloads.stacks import parse_stacks

    stacks = parse_stacks(stacks) or ["eager"]
    if stacks != ["eager"]:
        settings["stacks"] = ",".join(stacks)
    jobs = place(plan_sweep(workload, sizes, refs, dtypes, mode, timing, stacks),
                 executor.placements() if executor else [])
    if resume:
        run, jobs = resume_run(store, find_resumable_run(store, "sweep", settings))  # type: ignore[arg-type]
        return _finish_sweep(jobs, run, on_result, executor, store, level)
    run = new_run("sweep", discovery, {**settings, **(executor.settings() if executor else {})})
    if store is not None:
        store.begin_run(run, jobs)
    return _finish_sweep(jobs, run, on_result, executor, store, level)


def _finish_sweep(jobs: Sequence[Job], run: Run, on_result: OnResult | None,
                  executor: Executor | None, store: Store | None, level: float) -> SweepResult:
    """Measure ``jobs`` rung by rung into ``run``, then analyse it and keep the limits.

    A crossing found in a gap of the ladder is bisected once: sizes inside its bracket are
    measured on both series before the (then narrower) interval is stated.
    """
    from chipfit.pipelines.bench import run_jobs

    run = _run_ladder(jobs, run, on_result, executor=executor, store=store)
    result = analyze_run(run, level=level)
    extra = bisection_jobs(result.analysis, jobs)
    if extra and not result.run.interrupted:
        run = run_jobs(extra, result.run, on_result, executor=executor, store=store)
        result = analyze_run(run, level=level)
    if store is not None:
        store.save_run(result.run)  # the same run, now carrying the memory guard's limits
    return result


def bisection_jobs(analysis: SweepAnalysis, jobs: Sequence[Job]) -> list[Job]:
    """Jobs measuring sizes inside every crossing's bracket that is a gap of the ladder
    (:func:`chipfit.analysis.crossover.bisection_sizes`), on both series of the crossing."""
    from chipfit.analysis.crossover import bisection_sizes
    from chipfit.workloads import get_workload

    if not jobs:
        return []
    timing, planned = jobs[0].timing, {j.key for j in jobs}
    out: dict[tuple[str, str, str, str, str], Job] = {}
    for c in analysis.crossovers:
        have = [r.x for r in c.ratios]
        for crossing in (x for x in c.crossings if x.gap):
            if not (crossing.lower.isdigit() and crossing.upper.isdigit()):
                continue  # a shape such as 70x30@30x70: no size lies between two of them
            wl = get_workload(c.workload)
            for value in bisection_sizes(crossing.lower_x, crossing.upper_x, have):
                for key in (c.a, c.b):
                    job = Job(c.workload, wl.parse_size(str(value)), DeviceRef.parse(key.device),
                              key.dtype, key.mode, timing)
                    if job.key not in planned:
                        out.setdefault(job.key, job)
    return list(out.values())
