"""Does the input pipeline keep each device busy? Pure: rates in, findings out.

The seeds say a model fed by limited I/O belongs on a CPU (seed 000, section 5.2: "models
with limited I/O or limited network bandwidth of the system") and that the best set-up often
combines both, the CPU preparing data and the GPU computing (seed 001, conclusion). This
module puts numbers on both: the samples per second this machine's input pipeline supplies
(``measured``, per DataLoader worker count) against the samples per second each device
would consume (``measured`` here, ``predicted`` for catalog hardware, each with its band).

How a device and its feeder combine (both ``estimated``):

- an accelerator computes while the loader's workers prepare the next batches (two stages
  that overlap), so it delivers ``min(supply, consume)`` samples/s;
- a CPU both prepares and computes on the same cores, so one sample costs the preparation
  time plus the compute time: ``1 / (1/supply + 1/consume)``, with the supply of the
  in-process loader (0 workers), which prepares on the cores the model then uses.

A device is ``starved`` when the supply's band lies wholly below its consumption's band, ``fed``
when wholly above, and ``borderline`` when the two overlap (the difference is inside the
measurement and prediction uncertainty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CPU_ENOUGH", "Consumer", "FeedFinding", "FeedReport", "Supply", "compare_feed",
           "consumer_from_measurement", "consumer_from_prediction", "supply_from_times",
           "workers_needed"]

#: The CPU is "enough" when, with the pipeline bounding every accelerator, it delivers at
#: least this share of the best accelerator's rate: a 20% gap is within what a second
#: tuning pass (threads, batch) moves on a CPU, and the CPU saves the accelerator's cost and
#: the host-to-device copies. A judgement, named so it can be argued with.
CPU_ENOUGH = 0.8


@dataclass(frozen=True)
class Supply:
    """Samples per second the input pipeline delivered with ``workers`` DataLoader workers
    (``low``..``high``: the 95% interval from the median batch time's CI), measured here."""

    workers: int
    rate: float
    low: float
    high: float
    startup_s: float = math.nan  # from creating the loader's iterator to the first batch
    contended: bool | None = None
    source: str = "measured"


@dataclass(frozen=True)
class Consumer:
    """Samples per second a device would take at ``batch`` (inputs arriving from the host)."""

    device: str
    name: str
    kind: str  # cpu | gpu | tpu | ...
    rate: float
    low: float
    high: float
    source: str  # measured | predicted
    batch: int
    basis: str = ""
    local: bool = False


@dataclass(frozen=True)
class FeedFinding:
    """One device against the best supply: the status and what it delivers end to end."""

    consumer: Consumer
    supply: Supply
    status: str  # starved | fed | borderline
    delivered: float  # samples/s the pair delivers (estimated)
    busy_share: float  # share of its time the device computes (the rest it waits for data)
    workers_needed: int | None  # workers to feed it, from the per-worker rate (estimated)
    cores: int
    most_workers: int = 0  # the largest worker count measured (and trusted)


@dataclass(frozen=True)
class FeedReport:
    """Every finding and the verdict: ``io-bound-cpu`` (the pipeline bounds every accelerator
    and the CPU delivers nearly as much), ``io-bound`` (every accelerator starved, the CPU
    slower still), ``fed`` (at least one accelerator is kept busy), ``cpu-only`` (no
    accelerator to compare) or ``none`` (no supply or no consumer measured)."""

    supplies: tuple[Supply, ...]
    findings: tuple[FeedFinding, ...]
    verdict: str
    best: Supply | None
    cores: int
    from_contended: bool = False  # the best supply comes from contended points only


def consumer_from_measurement(device: str, name: str, kind: str, items: int,
                              median_s: float, ci_s: tuple[float, float],
                              batch: int) -> Consumer:
    """A device measured here: ``items`` samples per call of ``median_s`` (CI ``ci_s``)."""
    rate = _rate(items, median_s)
    low, high = _band(rate, _rate(items, ci_s[1]), _rate(items, ci_s[0]))
    return Consumer(device, name, kind, rate, low, high, "measured", batch, "measured here",
                    local=True)


def consumer_from_prediction(device: str, name: str, kind: str, items: int, seconds: float,
                             low_s: float, high_s: float, transfer_s: float, batch: int,
                             basis: str) -> Consumer:
    """A predicted device: the call plus its host-to-device copy (the batch comes from the
    host's pipeline); the band scales with the call's own band."""
    total = seconds + (transfer_s if math.isfinite(transfer_s) else 0.0)
    ratio = total / seconds if seconds > 0 else 1.0
    rate = _rate(items, total)
    low, high = _band(rate, _rate(items, high_s * ratio), _rate(items, low_s * ratio))
    return Consumer(device, name, kind, rate, low, high, "predicted", batch, basis)


def _rate(items: int, seconds: float) -> float:
    return items / seconds if seconds > 0 and math.isfinite(seconds) else math.nan


def _band(rate: float, low: float, high: float) -> tuple[float, float]:
    """The band around ``rate``; where it is unknown (too few samples for a CI), the rate
    itself on both sides (no uncertainty claimed, none invented)."""
    low = low if math.isfinite(low) else rate
    high = high if math.isfinite(high) else rate
    return min(low, rate), max(high, rate)


def supply_from_times(workers: int, items: int, median_s: float, ci_s: tuple[float, float],
                      startup_s: float = math.nan, contended: bool | None = None) -> Supply:
    """A measured supply point: ``items`` samples per batch of ``median_s`` (CI ``ci_s``)."""
    rate = _rate(items, median_s)
    low, high = _band(rate, _rate(items, ci_s[1]), _rate(items, ci_s[0]))
    return Supply(workers, rate, low, high, startup_s, contended)


def _usable(supplies: Sequence[Supply]) -> tuple[list[Supply], bool]:
    """The supplies to trust: the uncontended ones, else all (flagged)."""
    ok = [s for s in supplies if math.isfinite(s.rate) and s.rate > 0]
    quiet = [s for s in ok if not s.contended]
    return (quiet, False) if quiet else (ok, bool(ok))


def workers_needed(supplies: Sequence[Supply], rate: float) -> int | None:
    """Workers that would supply ``rate``, scaling the best measured per-worker rate
    linearly (an optimistic estimate: workers share cores and memory bandwidth). With only
    0 workers measured, the in-process rate stands for one worker's."""
    usable, _ = _usable(supplies)
    if not usable or not math.isfinite(rate):
        return None
    per_worker = max(s.rate / max(s.workers, 1) for s in usable)
    return max(1, math.ceil(rate / per_worker))


def _finding(consumer: Consumer, best: Supply, supplies: Sequence[Supply],
             cores: int) -> FeedFinding:
    if consumer.kind == "cpu" and consumer.local:
        inline = next((s for s in supplies if s.workers == 0), best)
        delivered = 1.0 / (1.0 / inline.rate + 1.0 / consumer.rate)
        busy = delivered / consumer.rate
        feeder = inline
    else:
        delivered = min(best.rate, consumer.rate)
        busy = delivered / consumer.rate
        feeder = best
    if feeder.high < consumer.low:
        status = "starved"
    elif feeder.low > consumer.high:
        status = "fed"
    else:
        status = "borderline"
    need = workers_needed(supplies, consumer.rate) if status != "fed" else None
    return FeedFinding(consumer, feeder, status, delivered, busy, need, cores,
                       max(s.workers for s in supplies))


def _verdict(findings: Sequence[FeedFinding]) -> str:
    accel = [f for f in findings if f.consumer.kind != "cpu"]
    cpus = [f for f in findings if f.consumer.kind == "cpu"]
    if not accel:
        return "cpu-only"
    if any(f.status != "starved" for f in accel):
        return "fed"
    best_accel = max(f.delivered for f in accel)
    if cpus and max(f.delivered for f in cpus) >= CPU_ENOUGH * best_accel:
        return "io-bound-cpu"
    return "io-bound"


def compare_feed(supplies: Sequence[Supply], consumers: Sequence[Consumer],
                 cores: int) -> FeedReport:
    """Each consumer against the best supply (the fastest uncontended worker count);
    ``cores`` is the number this machine may use (to say when workers cannot be added)."""
    usable, contended = _usable(supplies)
    live = [c for c in consumers if math.isfinite(c.rate) and c.rate > 0]
    if not usable or not live:
        return FeedReport(tuple(supplies), (), "none", None, cores, contended)
    best = max(usable, key=lambda s: s.rate)
    findings = tuple(_finding(c, best, usable, cores) for c in live)
    return FeedReport(tuple(supplies), findings, _verdict(findings), best, cores, contended)
