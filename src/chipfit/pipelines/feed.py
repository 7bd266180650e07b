"""``chipfit feed``: how fast this machine feeds a model, against how fast each device eats.

For a model, build its input pipeline (:mod:`chipfit.workloads.inputs`: generated JPEGs
decoded and normalised for image models, generated documents tokenised for token models),
time a torch ``DataLoader`` over it with each worker count (the batches as the consuming
process receives them; the start-up, from creating the loader's iterator to its first batch,
kept apart from the steady state, which the fenced adaptive timer measures after a warm-up
that drains the batches the workers prefetched), then get each device's consumption at the
same batch (measured for local devices, predicted for catalog ones) and compare
(:mod:`chipfit.analysis.feed`). Every supply point is a :class:`~chipfit.results.Measurement`
(``feed-images`` / ``feed-text``, stack ``loader-Nw``) stored like a bench point, watched for
contention like every point.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chipfit.analysis.feed import (
    Consumer,
    FeedReport,
    Supply,
    compare_feed,
    consumer_from_measurement,
    consumer_from_prediction,
    supply_from_times,
)
from chipfit.errors import InvalidInputError, UnsupportedError
from chipfit.results import Measurement, Run
from chipfit.spec import TimingConfig

__all__ = ["DEFAULT_HARDWARE", "Feed", "feed", "feed_spec", "measure_supply", "parse_source",
           "parse_workers", "split_hardware", "supply_of"]

DEFAULT_HARDWARE = ("local", "l4", "a100-sxm-80gb", "h100-sxm")
#: Batches prefetched per worker (torch's default prefetch_factor).
PREFETCH = 2
#: Limits that keep a typo from filling memory or forking a thousand processes.
MAX_BATCH = 1024
MAX_SAMPLES = 4096
MAX_SOURCE_SIDE = 4096
#: Steady-state timing per worker count: blocks of at least 50 ms (several batches of a
#: fast text pipeline, one of a slow image one), the median known to +-5% or 2 s spent.
SUPPLY_TIMING = TimingConfig(warmup_s=0.1, min_block_s=0.05, min_samples=7,
                             target_rel_ci=0.05, budget_s=2.0)


@dataclass(frozen=True)
class Feed:
    """A ``chipfit feed`` answer: the supply measured per worker count, each device's
    consumption, the comparison, and the run holding every measured point."""

    workload: str
    pipeline: str  # images | text
    describe: str  # what one sample's preparation is, in words
    batch: int
    run: Run
    report: FeedReport
    consumers: tuple[Consumer, ...]
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        """A short summary: the verdict code, the best supply, and each device's status
        (the sentences of ``chipfit feed`` are in the report layer)."""
        from chipfit.timing.units import fmt_num

        r = self.report
        best = (f"; best supply {fmt_num(r.best.rate)} samples/s with {r.best.workers} "
                f"worker(s) (measured{', contended' if r.from_contended else ''})"
                if r.best is not None else "")
        lines = [f"feed {self.workload} at batch {self.batch} ({self.pipeline}): "
                 f"{r.verdict}{best}"]
        for f in r.findings:
            lines.append(f"  {f.consumer.device}: {f.status}, consumes "
                         f"{fmt_num(f.consumer.rate)} samples/s ({f.consumer.source}), "
                         f"delivers {fmt_num(f.delivered)} (estimated)")
        return "\n".join(lines)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_workers(cores: int | None = None) -> int:
    """More worker processes than this only thrash (and each holds a copy of the data)."""
    return max(8, 4 * (cores or usable_cores()))


def parse_workers(text: str | Sequence[int] | None, cores: int | None = None) -> tuple[int, ...]:
    """``0,1,2`` as worker counts (sorted, deduplicated); None: 0, 1, 2, 4 ... up to the
    usable cores."""
    cores = cores or usable_cores()
    if text is None:
        counts, w = {0, cores}, 1
        while w < cores:
            counts.add(w)
            w *= 2
        return tuple(sorted(counts))
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    found = set()
    for part in parts:
        raw = str(part)
        if not (raw.isascii() and raw.isdigit()):
            raise InvalidInputError(f"malformed --workers entry {raw!r}: use worker counts such "
                                    "as 0,1,2 (0 prepares in the consuming process)")
        if len(raw) > 6 or int(raw) > max_workers(cores):
            raise InvalidInputError(f"--workers {raw} is too many for {cores} usable cores "
                                    f"(at most {max_workers(cores)})")
        found.add(int(raw))
    if not found:
        raise InvalidInputError("--workers needs at least one count, e.g. 0,1,2")
    return tuple(sorted(found))


def parse_source(text: str) -> tuple[int, int]:
    """``500x375`` as (width, height) of the generated JPEGs."""
    w, x, h = str(text).strip().lower().partition("x")
    if not (x and w.isascii() and h.isascii() and w.isdigit() and h.isdigit()
            and len(w) <= 5 and len(h) <= 5):
        raise InvalidInputError(f"malformed --source-size {text!r}: use WIDTHxHEIGHT, e.g. 500x375")
    width, height = int(w), int(h)
    if not (8 <= width <= MAX_SOURCE_SIDE and 8 <= height <= MAX_SOURCE_SIDE):
        raise InvalidInputError(f"--source-size {text!r}: each side 8 to {MAX_SOURCE_SIDE} pixels")
    return width, height


def _check_count(name: str, value: int, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidInputError(f"{name} must be an integer from 1 to {most}, got {value!r}")
    return value


def feed_spec(workload: str, *, samples: int | None = None, source: str | None = None,
              quality: int = 90, seed: int = 0) -> tuple[str, Any]:
    """The input pipeline ``workload`` is fed by: ``("images", ImageSpec)`` for image models
    (at their input side and channels), ``("text", TextSpec)`` for token models (at their
    sequence length); InvalidInputError for anything else."""
    from chipfit.workloads import get_workload
    from chipfit.workloads.inputs import ImageSpec, TextSpec

    wl = get_workload(workload)
    if samples is not None:
        _check_count("--samples", samples, MAX_SAMPLES)
    _check_count("--quality", quality, 95)  # Pillow: above 95 only grows the file
    side, seq, vocab = getattr(wl, "side", None), getattr(wl, "seq", None), getattr(wl, "vocab", 0)
    if isinstance(side, int):
        channels = getattr(wl, "channels", (3,))
        channels = channels[0] if isinstance(channels, tuple) else 3
        default = "500x375" if channels == 3 else f"{side}x{side}"
        width, height = parse_source(source or default)
        return "images", ImageSpec(side=side, channels=channels, width=width, height=height,
                                   quality=quality, count=samples or 64, seed=seed)
    if isinstance(seq, int) and vocab:
        if source is not None:
            raise InvalidInputError("--source-size is for image models; token models are fed "
                                    "generated documents")
        return "text", TextSpec(seq=seq, count=samples or 256, seed=seed)
    raise InvalidInputError(f"{wl.name} has no input pipeline here: chipfit feed knows image "
                            "models (resnet50, vit-base, cnn) and token models (bert-base, "
                            "gpt2-small, t5-small)")


# ---- supply -----------------------------------------------------------------------------------
def _own_workers(numbers: Sequence[tuple[str, float]], workers: int, cores: int) -> Any:
    """The contention verdict with our own worker processes taken out of the evidence: they
    raise the load average (by workers x (1 - e^(-t/60)) after t seconds: it is a 1-minute
    exponential average), and with as many workers as cores our consuming thread waits for a
    core they hold, which is part of what is measured, not someone else's load."""
    from chipfit.timing.contention import judge

    found = dict(numbers)
    window = found.get("window_s", 0.0)
    if "load1" in found:
        found["load1"] = max(0.0, found["load1"] - workers * (1 - math.exp(-window / 60.0)))
    if workers >= cores:
        found.pop("wait_share", None)
    return judge(found)


def _timed_loader(dataset: Any, batch: int, workers: int,
                  timing: TimingConfig) -> tuple[Any, float]:
    """The timer's result over ``next(batch)`` and the seconds ``iter()`` took."""
    from chipfit.timing.timer import measure
    from chipfit.workloads.inputs import cycle_loader

    loader = cycle_loader(dataset, batch, workers, PREFETCH)
    start = time.perf_counter()
    batches = iter(loader)
    iter_s = time.perf_counter() - start
    # The warm-up drains the batches the workers prepared while the first one was awaited.
    config = replace(timing, warmup_min_calls=max(timing.warmup_min_calls,
                                                  workers * PREFETCH + 1))
    try:
        result, _ = measure(lambda: next(batches), lambda out: None, config)
    finally:
        stop = getattr(batches, "_shutdown_workers", None)
        if stop is not None:  # workers end now, not whenever the iterator is collected
            stop()
    return result, iter_s


def measure_supply(dataset: Any, pipeline: str, batch: int, workers: int,
                   timing: TimingConfig | None = None,
                   metadata: Sequence[tuple[str, str]] = ()) -> Measurement:
    """Samples per second a DataLoader with ``workers`` workers delivers over ``dataset``,
    as a measured point (per call: one batch), watched for contention."""
    from chipfit.timing.contention import watch

    timing = timing or SUPPLY_TIMING
    try:
        (result, iter_s), evidence = watch(
            lambda: _timed_loader(dataset, batch, workers, timing), "", lambda r: ())
    except (RuntimeError, OSError, ValueError) as exc:  # a worker died, no memory to fork ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Measurement(workload=f"feed-{pipeline}", size=str(batch), device="torch:cpu",
                           dtype="float32" if pipeline == "images" else "int64",
                           stack=f"loader-{workers}w", status="error", note=first[:300],
                           items_per_call=batch, metadata=(("workers", str(workers)), *metadata))
    evidence = _own_workers(evidence.numbers, workers, usable_cores())
    startup = iter_s + result.first_call_s
    return Measurement(
        workload=f"feed-{pipeline}", size=str(batch), device="torch:cpu",
        dtype="float32" if pipeline == "images" else "int64", stack=f"loader-{workers}w",
        block_times_s=result.block_times_s, number_per_block=result.number_per_block,
        first_call_s=startup, warmup_calls=result.warmup_calls, stop_reason=result.stop_reason,
        items_per_call=batch, contended=evidence.contended, contention=evidence.numbers,
        contention_note=evidence.note,
        metadata=(("workers", str(workers)), ("prefetch_factor", str(PREFETCH)),
                  ("iter_s", f"{iter_s:.6f}"), ("first_batch_s", f"{result.first_call_s:.6f}"),
                  *metadata))


def supply_of(m: Measurement) -> Supply:
    """A measured supply point as the comparison's :class:`Supply`."""
    workers = int(m.meta.get("workers", "0"))
    if not m.ok:
        return Supply(workers, math.nan, math.nan, math.nan, source=m.source)
    startup = m.first_call_s if m.first_call_s is not None else math.nan
    return supply_from_times(workers, m.items_per_call, m.median_s, m.ci_s, startup,
                             m.contended)


def _dataset(pipeline: str, spec: Any) -> tuple[Any, tuple[tuple[str, str], ...]]:
    from chipfit.workloads.inputs import image_dataset, text_dataset

    if pipeline == "images":
        data = image_dataset(spec)
        mean = sum(len(j) for j in data.jpegs) / len(data.jpegs)
        return data, (("pipeline", spec.describe), ("jpeg_mean_bytes", f"{mean:.0f}"),
                      ("data", "in memory"))
    from tokenizers import Tokenizer

    data = text_dataset(spec)
    vocab = Tokenizer.from_str(data.tokenizer_json).get_vocab_size()
    return data, (("pipeline", spec.describe), ("vocab_size", str(vocab)), ("data", "in memory"))


# ---- consumers ----------------------------------------------------------------------------------
def _local_consumers(workload: str, batch: int, keys: Sequence[str], timing: TimingConfig,
                     found: Any, say: Callable[[str], None]
                     ) -> tuple[list[Consumer], list[Measurement]]:
    """Each named local device measured running ``workload`` at ``batch``."""
    from chipfit.discovery import resolve_devices
    from chipfit.execute._worker import run_here  # watched for contention
    from chipfit.spec import DeviceRef, Job

    if not keys:
        return [], []
    refs = ([DeviceRef.parse(d.ref) for d in found.devices] if "local" in keys
            else resolve_devices(keys, found))
    consumers, points = [], []
    for ref in refs:
        say(f"measuring {workload} at batch {batch} on {ref}")
        m = run_here(Job(workload, str(batch), ref, "float32", "inference", timing), found)
        points.append(m)
        info = found.get(str(ref.base))
        if m.ok:
            consumers.append(consumer_from_measurement(
                str(ref), info.name if info else str(ref), info.kind if info else "cpu",
                m.items_per_call, m.median_s, m.ci_s, batch))
    return consumers, points


def _catalog_consumers(workload: str, batch: int, keys: Sequence[str],
                       say: Callable[[str], None]) -> tuple[list[Consumer], list[str]]:
    """Each catalog device's predicted consumption (its model's call plus the copy)."""
    from chipfit.pipelines.predict import predict_workload

    consumers: list[Consumer] = []
    notes: list[str] = []
    try:  # one call: the model's operators are counted once for every device
        rows = predict_workload(workload, [str(batch)], list(keys), measure=False,
                                progress=say) if keys else []
    except UnsupportedError:  # some device lacks a figure: ask each alone, note who fails
        rows = []
        for key in keys:
            try:
                rows += predict_workload(workload, [str(batch)], [key], measure=False,
                                         progress=say)
            except UnsupportedError as exc:
                notes.append(f"{key}: not predicted ({exc})")
    for row in rows:
        p = row.prediction
        consumers.append(consumer_from_prediction(
            p.hardware, p.hardware_name, p.kind, p.items, p.seconds, p.low_s, p.high_s,
            p.transfer_s if p.transfer_known else 0.0, batch,
            f"{p.basis}; band: {p.band_basis}"))
        if not p.transfer_known:
            notes.append(f"{p.hardware}: host-to-device copy unknown, left out")
    return consumers, notes


def split_hardware(hardware: Sequence[str]) -> tuple[list[str], list[str]]:
    """Local names (``local``, device ids) apart from catalog keys, catalog keys checked."""
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    local, remote = [], []
    for text in (h.strip() for h in hardware if h.strip()):
        if text == "local" or ":" in text:
            local.append(text)
        else:
            catalog[text]  # UnknownNameError with a did-you-mean
            remote.append(text)
    return local, remote


# ---- the command's function -------------------------------------------------------------------
def feed(workload: str, batch: int = 32, workers: str | Sequence[int] | None = None,
         hardware: Sequence[str] = DEFAULT_HARDWARE, *, samples: int | None = None,
         source: str | None = None, quality: int = 90, timing: TimingConfig | None = None,
         model_timing: TimingConfig | None = None, store: Any = None,
         on_result: Callable[[Measurement, Run], None] | None = None,
         progress: Callable[[str], None] | None = None) -> Feed:
    """How fast this machine's input pipeline feeds ``workload`` at ``batch``, per DataLoader
    worker count, against each device of ``hardware`` (``local`` and device ids: measured
    here; catalog keys: predicted). ``store`` keeps every measured point as bench does;
    ``on_result(m, run)`` sees each one as it is made; ``progress(text)`` each stage."""
    from chipfit.discovery import discover
    from chipfit.pipelines.bench import new_run

    say = progress or (lambda text: None)
    batch = _check_count("--batch", batch, MAX_BATCH)
    counts = parse_workers(workers)
    pipeline, spec = feed_spec(workload, samples=samples, source=source, quality=quality)
    local, remote = split_hardware(hardware)
    settings = {"workload": workload, "batch": str(batch), "pipeline": spec.describe,
                "workers": ",".join(map(str, counts)), "hardware": ",".join(hardware)}
    found = discover(["torch"])
    run = new_run("feed", found, settings)
    if store is not None:
        store.begin_run(run)
    keep = lambda r, points: _add(r, points, store, on_result)  # noqa: E731
    try:
        run = _supplies(run, workload, pipeline, spec, batch, counts, timing, keep, say)
        supplies = [supply_of(m) for m in run.measurements]
        consumers, points = _local_consumers(workload, batch, local,
                                             model_timing or TimingConfig.quick(), found, say)
        run = keep(run, points)
    except KeyboardInterrupt:
        _finish(replace(run, interrupted=True), store)  # what was measured stays, marked
        raise
    predicted, notes = _catalog_consumers(workload, batch, remote, say)
    consumers += predicted
    notes = [f"{m.device}: {workload} at batch {batch} {m.status}: {m.note}" for m in points
             if not m.ok] + notes
    run = _finish(run, store)
    report = compare_feed(supplies, consumers, usable_cores())
    return Feed(workload, pipeline, spec.describe, batch, run, report, tuple(consumers),
                tuple(notes))


def _supplies(run: Run, workload: str, pipeline: str, spec: Any, batch: int,
              counts: Sequence[int], timing: TimingConfig | None,
              keep: Callable[[Run, Sequence[Measurement]], Run],
              say: Callable[[str], None]) -> Run:
    """The dataset generated once, then one supply point per worker count, each kept."""
    say(f"generating the {pipeline} dataset: {spec.describe}")
    dataset, meta = _dataset(pipeline, spec)
    meta += (("model", workload),)
    for w in counts:
        say(f"timing the {pipeline} loader with {w} worker{'s' if w != 1 else ''}")
        run = keep(run, (measure_supply(dataset, pipeline, batch, w, timing, meta),))
    return run


def _add(run: Run, points: Sequence[Measurement], store: Any,
         on_result: Callable[[Measurement, Run], None] | None) -> Run:
    for m in points:
        run = replace(run, measurements=run.measurements + (m,))
        if store is not None:
            store.add_measurement(run.run_id, m)
        if on_result is not None:
            on_result(m, run)
    return run


def _finish(run: Run, store: Any) -> Run:
    from chipfit.paths import utc_now

    run = replace(run, finished_at=utc_now())
    if store is not None:
        store.finish_run(run)
    return run
