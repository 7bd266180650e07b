"""Was the machine shared while a point was measured? Evidence, kept as numbers.

A measurement taken while other processes load the cores is not a property of the workload:
torch with two threads on two cores, one of them taken away, waits a scheduler quantum
(tens of ms) at every parallel region, and a 6 us matmul reads as 32 ms with a tight CI.
So every point is watched, cheaply, from just before its job starts to just after it ends:

==================  ===========================================================================
evidence            where it comes from
==================  ===========================================================================
``load1``           /proc/loadavg (runnable + uninterruptible tasks, 1-minute average), read
                    against ``cpus`` = ``os.cpu_count()``: the load is the whole machine's, so
                    it is read against all its CPUs, not only the ``cores`` we may use
                    (``len(os.sched_getaffinity(0))``: a cpuset or ``taskset`` of one core on
                    a machine whose other cores are busy is not shared)
``steal_share``     /proc/stat: jiffies the hypervisor gave to other guests over the window
``others_share``    /proc/stat lines of the CPUs we may use: busy jiffies (user, nice, system, irq,
                    softirq) minus our own CPU time (getrusage), over ``cores`` x the window:
                    the share of our cores that other processes used while we measured
``wait_share``      /proc/self/task/*/schedstat (2nd field: ns spent runnable but waiting for a
                    CPU), summed over our threads, over the window's wall time; it counts only
                    when others used our cores too (``others_share``; in a window too short
                    to read that, a load above the CPUs), because a framework with more
                    threads than cores (XLA's pool) waits for its own threads
``nivcsw_per_s``    getrusage(RUSAGE_SELF).ru_nivcsw: involuntary context switches (preemption)
``probe_ratio``     a fixed pure-Python loop timed after the point, over the same loop's time
                    when the process first measured (the quiet baseline)
``stall_s``         multi-threaded CPU points: the gap between the slow and fast blocks, when it
                    is quantum-sized (the stall signature in the raw block times)
==================  ===========================================================================

A point is *contended* when one direct signal fires (steal, other processes' CPU time,
run-queue wait beside them, probe drift, the stall signature), or, where the run-queue wait
cannot be read, when both indirect ones do (load above the cores, and preemption at a steady
rate); :data:`THRESHOLDS` holds the numbers and the reason for each. Where the wait is read,
it is what preemption cost: a machine whose other cores are busy (load) and whose timers wake
on ours (100 preemptions/s) while we waited 2% of the window measured correctly, and the pair
is then only named beside a direct signal that fired. Cost: two /proc reads (and one per
thread), two getrusage calls and a ~0.3 ms probe per point, well under 1% of a quick bench.

Evidence is only meaningful on Linux; elsewhere the missing sources read as ``nan`` and the
verdict rests on the rest (``contended`` is ``None`` when no source was readable at all).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chipfit.timing import stats

__all__ = ["OVERLOAD_FACTOR", "THRESHOLDS", "Evidence", "MachineLoad", "Snapshot",
           "baseline_probe_s", "evidence", "judge", "machine_load", "numbers_of", "overloaded",
           "probe_s", "snapshot", "stall_gap_s", "stall_vs_serial", "watch"]

#: Steal above this share of the window: the hypervisor ran another guest on our vCPUs.
#: A quiet cloud VM shows 0-1%; 5% is well past the noise of a 100 ms window's jiffies.
STEAL_SHARE = 0.05
#: Other processes used at least this share of our cores' time over the window (a busy loop
#: beside a 2-core run: 50%; a quiet machine's daemons and kernel threads: a few percent) ...
OTHERS_SHARE = 0.2
#: ... and at least this many CPU-seconds, so the 10 ms jiffies of a short window are not read
#: as a neighbour (two jiffies).
OTHERS_MIN_S = 0.02
#: Run-queue wait counts only when others used at least this share of our cores: our own
#: threads waiting for each other (a framework pool larger than the cores) is not sharing.
OTHERS_FOR_WAIT = 0.05
#: Runnable-but-waiting time above this share of the window (summed over our threads): a
#: ready thread of ours had no core. A quiet 2-core run waits well under 2% (kernel threads).
WAIT_SHARE = 0.10
#: ... and at least this much in absolute terms, so one 1 ms wakeup delay in a 5 ms window
#: does not count.
WAIT_MIN_S = 0.002
#: The reference probe this much slower than at the start of the process: the core we got
#: runs slower (an SMT sibling busy, cache thrashed, frequency dropped) or we were preempted.
PROBE_RATIO = 1.5
#: Load average above the machine's CPUs by this much: more runnable tasks than CPUs.
#: Our own measuring threads are at most ``cores``, so an excess of 1 is someone else's.
LOAD_EXCESS = 1.0
#: Involuntary switches per second at which a CPU-bound process is being time-shared (CFS
#: preempts every few ms when a core has several runnable tasks; a quiet core: a few per s) ...
NIVCSW_PER_S = 50.0
#: ... counted only when at least this many happened (a rate over a 10 ms window is noise).
NIVCSW_MIN = 5
#: Stall signature: on a multi-threaded CPU point, blocks slower than the fastest one by at
#: least this much per block (a scheduler quantum is 3-24 ms under CFS) ...
STALL_GAP_S = 0.003
#: ... and by at least this factor, in at least this share of the blocks (and two of them:
#: one slow block can be a single interrupt storm).
STALL_FACTOR = 2.0
STALL_SHARE = 0.1
#: A multi-threaded CPU point this many times slower than the same work at one thread, and at
#: least STALL_MIN_S per call, is the stall signature even when every block stalled alike.
STALL_VS_SERIAL = 8.0
STALL_MIN_S = 0.002

#: A machine whose 1-minute load is at least this many times its CPUs (and LOAD_EXCESS above
#: them) is overloaded: every runnable task gets at most half a CPU, so anything measured now
#: times the neighbours too, whether or not a point's own window caught them. This is the
#: busy-machine warning of every command that measures (bench, advise, predict, validate,
#: calibrate), read from the load now and from the load stored with each point.
OVERLOAD_FACTOR = 2.0

THRESHOLDS = {"steal_share": STEAL_SHARE, "others_share": OTHERS_SHARE,
              "others_min_s": OTHERS_MIN_S, "others_for_wait": OTHERS_FOR_WAIT,
              "wait_share": WAIT_SHARE, "wait_min_s": WAIT_MIN_S,
              "probe_ratio": PROBE_RATIO, "load_excess": LOAD_EXCESS,
              "nivcsw_per_s": NIVCSW_PER_S, "nivcsw_min": NIVCSW_MIN, "stall_gap_s": STALL_GAP_S,
              "stall_factor": STALL_FACTOR, "stall_share": STALL_SHARE,
              "stall_vs_serial": STALL_VS_SERIAL, "stall_min_s": STALL_MIN_S,
              "overload_factor": OVERLOAD_FACTOR}

_PROBE_LOOPS = 3000  # ~0.06 ms of pure Python per repetition on a current core
_PROBE_REPEATS = 5


# ---- sources --------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except OSError:
        return None


def _load1() -> float:
    """The 1-minute load average from /proc/loadavg (nan where unreadable or malformed)."""
    text = _read("/proc/loadavg")
    try:
        value = float(text.split()[0]) if text else math.nan
    except (ValueError, IndexError):
        return math.nan
    return value if math.isfinite(value) and value >= 0 else math.nan


def _cpu_jiffies(text: str | None) -> tuple[float, float]:
    """(steal, total) jiffies of all CPUs since boot from /proc/stat's ``text``; nan where it
    is unreadable."""
    if not text or not text.startswith("cpu "):
        return math.nan, math.nan
    values = [float(v) for v in text.splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user
    steal = values[7] if len(values) > 7 else 0.0
    return steal, sum(values[:8])


def _busy_s(text: str | None) -> float:
    """CPU-seconds the CPUs we may use have been busy since boot (user, nice, system, irq,
    softirq; not idle, iowait or steal), from /proc/stat's ``text``; nan where unreadable."""
    if not text:
        return math.nan
    try:
        allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        allowed = set()
    busy, seen = 0.0, False
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or (allowed and name not in allowed):
            continue
        v = [float(x) for x in rest.split()]
        if len(v) >= 7:  # user nice system idle iowait irq softirq
            busy += v[0] + v[1] + v[2] + v[5] + v[6]
            seen = True
    return busy / _clock_ticks() if seen else math.nan


def _clock_ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


def _own_cpu_s() -> float:
    """CPU-seconds this process (all its threads) has used."""
    try:
        import resource  # POSIX only
    except ImportError:
        return math.nan
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _wait_ns() -> float:
    """Nanoseconds our threads have spent runnable but not running (nan if not exposed)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return math.nan
    total, seen = 0.0, False
    for tid in tasks:
        text = _read(f"/proc/self/task/{tid}/schedstat")
        if text:
            total += float(text.split()[1])
            seen = True
    return total if seen else math.nan


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def probe_s() -> float:
    """Median time of a fixed pure-Python loop: the reference whose drift shows sharing."""
    times = []
    for _ in range(_PROBE_REPEATS):
        start = time.perf_counter()
        acc = 0
        for i in range(_PROBE_LOOPS):
            acc += i
        times.append(time.perf_counter() - start)
    return stats.median(times)


_BASELINE: list[float] = []


def baseline_probe_s() -> float:
    """The probe's time when this process first measured (the fastest of three probes)."""
    if not _BASELINE:
        _BASELINE.append(min(probe_s() for _ in range(3)))
    return _BASELINE[0]


@dataclass(frozen=True)
class Snapshot:
    """The counters at one instant."""

    wall: float
    load1: float
    steal: float
    total: float
    nivcsw: int
    wait_ns: float
    busy_s: float = math.nan  # CPU-seconds our cores were busy (all processes)
    own_s: float = math.nan  # CPU-seconds this process used


def _nivcsw() -> int:
    try:
        import resource  # POSIX only
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def snapshot() -> Snapshot:
    stat = _read("/proc/stat")  # once: steal and busy time come from the same read
    steal, total = _cpu_jiffies(stat)
    return Snapshot(time.perf_counter(), _load1(), steal, total, _nivcsw(), _wait_ns(),
                    _busy_s(stat), _own_cpu_s())


# ---- the verdict ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """The numbers behind one point's verdict; ``reasons`` names each signal that fired."""

    contended: bool | None
    numbers: tuple[tuple[str, float], ...]
    reasons: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        return "; ".join(self.reasons)


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 and math.isfinite(part) else math.nan


def stall_gap_s(block_s: Sequence[float]) -> float:
    """The stall signature in raw block times: how far the slow blocks sit above the fastest
    one, when at least STALL_SHARE of them (two or more) sit STALL_FACTOR x and STALL_GAP_S
    above it (else 0)."""
    if len(block_s) < 3:
        return 0.0
    fastest = min(block_s)
    slow = [t for t in block_s if t >= fastest * STALL_FACTOR and t - fastest >= STALL_GAP_S]
    if len(slow) < max(2, math.ceil(STALL_SHARE * len(block_s))):
        return 0.0
    return stats.median(slow) - fastest


def judge(numbers: Mapping[str, float]) -> Evidence:
    """The verdict from evidence ``numbers`` (any missing source reads as nan).

    Pure: tests hand it quiet or busy numbers without loading the machine.
    """
    get = lambda k: float(numbers.get(k, math.nan))  # noqa: E731
    reasons = []
    cores, load1 = get("cores"), get("load1")
    cpus = get("cpus") if math.isfinite(get("cpus")) else cores  # evidence stored before cpus
    if get("steal_share") >= STEAL_SHARE:
        reasons.append(f"CPU steal {get('steal_share'):.0%}")
    others = get("others_share")
    if others >= OTHERS_SHARE and get("others_s") >= OTHERS_MIN_S:
        reasons.append(f"other processes used {others:.0%} of our cores")
    busy = load1 - cpus >= LOAD_EXCESS
    # our threads also wait for each other (XLA's pool on one core: 60% of a window): the
    # wait counts beside others, read from their share of our cores, or where a window too
    # short for jiffies leaves that unread, from a load above the CPUs
    if math.isfinite(others):
        beside_others = others >= OTHERS_FOR_WAIT
    else:
        beside_others = busy or not math.isfinite(load1)
    if get("wait_share") >= WAIT_SHARE and get("wait_s") >= WAIT_MIN_S and beside_others:
        reasons.append(f"threads waited for a core {get('wait_share'):.0%} of the time")
    if get("probe_ratio") >= PROBE_RATIO:
        reasons.append(f"reference probe {get('probe_ratio'):.1f}x slower than at start")
    if get("stall_s") > 0:
        reasons.append(f"stall signature: blocks {get('stall_s') * 1e3:.1f} ms slow")
    if get("stall_vs_serial") >= STALL_VS_SERIAL:
        reasons.append(f"stall signature: {get('stall_vs_serial'):.0f}x the one-thread time")
    preempted = get("nivcsw_per_s") >= NIVCSW_PER_S and get("nivcsw") >= NIVCSW_MIN
    # the run-queue wait, where readable, says what the preemption cost: the pair decides
    # only without it, and is otherwise named beside a direct signal
    if busy and preempted and (reasons or not math.isfinite(get("wait_share"))):
        reasons.append(f"load {load1:.1f} on {cpus:.0f} CPUs, "
                       f"{get('nivcsw_per_s'):.0f} preemptions/s")
    readable = [k for k in ("steal_share", "others_share", "wait_share", "probe_ratio", "load1",
                            "nivcsw_per_s")
                if math.isfinite(get(k))]
    verdict = bool(reasons) if readable or reasons else None
    clean = tuple((k, round(float(v), 6)) for k, v in sorted(numbers.items())
                  if math.isfinite(float(v)))
    return Evidence(verdict, clean, tuple(reasons))


@dataclass(frozen=True)
class MachineLoad:
    """The machine's 1-minute load average against its CPUs (all of them: the load is the
    whole machine's, see the module docstring)."""

    load1: float
    cpus: int

    @property
    def overloaded(self) -> bool:
        return overloaded(self.load1, self.cpus)

    def __str__(self) -> str:
        return f"load {self.load1:.1f} on {self.cpus} CPUs"


def overloaded(load1: float, cpus: float) -> bool:
    """Whether a load of ``load1`` on ``cpus`` CPUs is far above them (OVERLOAD_FACTOR)."""
    if not (math.isfinite(load1) and math.isfinite(cpus)) or cpus < 1:
        return False
    return load1 >= OVERLOAD_FACTOR * cpus and load1 - cpus >= LOAD_EXCESS


def _cpus() -> int:
    """Every CPU of the machine (the load average is the whole machine's)."""
    return os.cpu_count() or _cores()


def machine_load() -> MachineLoad:
    """The load now (/proc/loadavg, through the same reader as every point's evidence: tests
    replace ``_read``, and ``_cpus``, to hand it a busy machine)."""
    return MachineLoad(_load1(), _cpus())


def _multithreaded_cpu(device: str) -> bool:
    base, _, threads = device.partition("@")
    return base.split(":")[1:2] == ["cpu"] and threads != "1t" and _cores() > 1


def evidence(before: Snapshot, after: Snapshot, probe_after_s: float, baseline_s: float,
             device: str = "", block_s: Sequence[float] = ()) -> Evidence:
    """The evidence of the window between ``before`` and ``after``."""
    wall = max(after.wall - before.wall, 1e-9)
    cores = _cores()
    wait_s = (after.wait_ns - before.wait_ns) / 1e9
    nivcsw = after.nivcsw - before.nivcsw
    # the jiffies are 10 ms: below ~5 of them per core the share is too coarse to read
    others_s = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    coarse = wall * _clock_ticks() < 5
    numbers = {
        "window_s": wall, "cores": float(cores), "cpus": float(_cpus()),
        "load1": max(before.load1, after.load1),
        "steal_share": _ratio(after.steal - before.steal, after.total - before.total),
        "wait_s": wait_s, "wait_share": _ratio(wait_s, wall),
        "others_s": math.nan if coarse else max(others_s, 0.0),
        "others_share": math.nan if coarse else _ratio(max(others_s, 0.0), cores * wall),
        "nivcsw": float(nivcsw), "nivcsw_per_s": nivcsw / wall,
        "probe_ratio": _ratio(probe_after_s, baseline_s),
        "stall_s": stall_gap_s(block_s) if _multithreaded_cpu(device) else 0.0,
    }
    return judge(numbers)


def watch(work: Callable[[], Any], device: str = "",
          blocks: Callable[[Any], Sequence[float]] = lambda r: ()) -> tuple[Any, Evidence]:
    """Run ``work()`` and return its result with the evidence of contention while it ran.

    ``blocks(result)`` gives the raw block times, for the stall signature.
    """
    baseline = baseline_probe_s()
    before = snapshot()
    result = work()
    after = snapshot()
    return result, evidence(before, after, probe_s(), baseline, device, blocks(result))


def stall_vs_serial(parallel_s: float, serial_s: float) -> float:
    """How many times slower a multi-threaded CPU point is than its one-thread sibling, when
    that is the stall signature (at least STALL_MIN_S per call); 0 otherwise."""
    if not (math.isfinite(parallel_s) and math.isfinite(serial_s)) or serial_s <= 0:
        return 0.0
    if parallel_s < STALL_MIN_S:
        return 0.0
    return parallel_s / serial_s


def numbers_of(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    return {k: float(v) for k, v in pairs}
