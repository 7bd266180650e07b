"""How much of the machine other processes took while a block of a test ran.

A test that compares two real runs cannot fail because another process shared the machine:
chipfit watches its own cores, between its timing windows, and a neighbour that came and went
at the wrong moment can slip past it. The test then needs its own, independent reading, and
one that a short neighbour cannot hide in: :class:`NeighbourWatch` samples, every
:data:`PERIOD_S` in a background thread, the machine's busy CPU time (``/proc/stat``: user,
nice, system, irq, softirq and steal - steal is a neighbour on the hypervisor) less the CPU
time of this process and its descendants (``/proc/PID/stat``, the children found through
``/proc/PID/task/TID/children``, reaped ones through this process's ``cutime``), and keeps the
busiest :data:`WINDOW_S` of others' share of every CPU as well as the average over the block.
An average over a whole run dilutes a neighbour of one second in eight seconds of start-up
below any sensible bar; the busiest half second does not.

Linux only (``/proc``); elsewhere the watch reads nothing and :attr:`NeighbourWatch.busy` is
False, with :attr:`NeighbourWatch.readable` False to say why.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from pathlib import Path

#: How often the machine is read.
PERIOD_S = 0.1
#: The stretch over which a short neighbour counts: 5 samples, so the ±1-tick misalignment
#: of the machine's and the processes' counters is a few percent of it on 2 CPUs.
WINDOW_S = 0.5
#: Others' share of every CPU, in any window, that says a neighbour was there (a quiet
#: machine's daemons take well under it; one other busy thread on 2 cores is 0.5).
PEAK_SHARE = 0.20
#: Others' share of every CPU over the whole block that says so as well.
MEAN_SHARE = 0.10

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        v = [float(x) for x in fh.readline().split()[1:9]]
    v += [0.0] * (8 - len(v))
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / _TICK


def _proc_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (0.0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state is field 3
    return sum(float(f) for f in fields[11:15]) / _TICK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in
                          Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def own_cpu_s(root: int | None = None) -> float:
    """CPU time of ``root`` (this process) and every live descendant, reaped ones included."""
    total, todo, seen = 0.0, [root or os.getpid()], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _proc_cpu_s(pid)
        todo += _children(pid)
    return total


class NeighbourWatch:
    """``with NeighbourWatch() as watch: ...`` then :attr:`busy` and :meth:`describe`.

    One watch may be entered several times (the blocks of one comparison); the readings
    accumulate: :attr:`peak_share` is the busiest window of any block, :attr:`others_s` and
    :attr:`wall_s` add up.
    """

    def __init__(self, period_s: float = PERIOD_S, window_s: float = WINDOW_S) -> None:
        self.period_s, self.window_s = period_s, window_s
        self.readable = os.path.exists("/proc/stat") and os.path.exists("/proc/self/task")
        self.cpus = os.cpu_count() or 1
        self.peak_share = 0.0
        self.others_s = 0.0
        self.own_s = 0.0
        self.wall_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: deque[tuple[float, float, float]] = deque()
        self._first: tuple[float, float, float] | None = None

    # -- sampling ------------------------------------------------------------------------
    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), _machine_busy_s(), own_cpu_s()

    def _add(self, sample: tuple[float, float, float]) -> None:
        self._samples.append(sample)
        now = sample[0]
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        start = self._samples[0]
        wall = now - start[0]
        if wall >= self.window_s * 0.8:  # a full window (a sample may come a little early)
            others = max(0.0, (sample[1] - start[1]) - (sample[2] - start[2]))
            # (the two counters are read a moment apart: a tick or two over 100% is that)
            self.peak_share = max(self.peak_share, min(1.0, others / (wall * self.cpus)))

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._add(self._sample())

    def __enter__(self) -> NeighbourWatch:
        if self.readable:
            self._first = self._sample()
            self._samples = deque([self._first])
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="neighbour-watch",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.readable or self._thread is None or self._first is None:
            return
        self._stop.set()
        self._thread.join()
        last = self._sample()
        self._add(last)
        first = self._first
        own = last[2] - first[2]
        self.own_s += own
        self.others_s += max(0.0, (last[1] - first[1]) - own)
        self.wall_s += last[0] - first[0]
        self._thread = self._first = None

    # -- verdict ---------------------------------------------------------------------------
    @property
    def mean_share(self) -> float:
        return min(1.0, self.others_s / (self.wall_s * self.cpus)) if self.wall_s > 0 else 0.0

    @property
    def busy(self) -> bool:
        """Other processes took a share of the machine that can move a timing."""
        return self.peak_share >= PEAK_SHARE or self.mean_share >= MEAN_SHARE

    def describe(self) -> str:
        if not self.readable:
            return "no /proc here: other processes' use of the CPUs could not be read"
        return (f"other processes took {self.others_s:.1f} CPU-s in {self.wall_s:.1f} s "
                f"({self.mean_share:.0%} of {self.cpus} CPUs on average, "
                f"{self.peak_share:.0%} in the busiest {self.window_s:g} s)")
