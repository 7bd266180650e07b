"""``chipfit feed`` in words and tables: the verdict first, then the supply per worker count
(measured), then each device's consumption (measured or predicted, with its band) and what
the pair delivers (estimated). Readable at 80 columns (:mod:`chipfit.report.layout`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.text import Text

from chipfit.analysis.feed import CPU_ENOUGH, FeedFinding, FeedReport, Supply
from chipfit.report.fmt import fmt_seconds

__all__ = ["feed_dict", "feed_lines", "feed_renderable", "finding_line", "verdict_line"]


def _n(value: float) -> str:
    """Samples per second, readable: 2,900 / 42.5 / 0.31."""
    if not math.isfinite(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _workers(s: Supply) -> str:
    return "in the consuming process (0 workers)" if s.workers == 0 else (
        f"with {s.workers} worker{'s' if s.workers != 1 else ''}")


def _remedy(pipeline: str, accelerator: str) -> str:
    """What moves the preparation off this CPU (GPU JPEG decoding exists for GPUs only)."""
    if pipeline != "images":
        return "tokenise the dataset once ahead of training and load the token ids"
    if accelerator == "GPU":
        return ("decode and resize on the GPU (e.g. NVIDIA DALI / nvJPEG) or store the images "
                "pre-decoded at model size")
    return "store the images pre-decoded at model size, or feed it from a host with more cores"


def finding_line(f: FeedFinding, pipeline: str) -> str:
    """One device against the pipeline, in a sentence with every number's source."""
    c, s = f.consumer, f.supply
    who = f"{c.device} ({c.name})" if c.name and c.name != c.device else c.device
    band = (f", {_n(c.low)}-{_n(c.high)}" if c.high > c.low else "")
    eats = f"consumes {_n(c.rate)} samples/s ({c.source}{band})"
    if c.kind == "cpu" and c.local:
        prep = 1 - f.busy_share
        return (f"{who} {eats} and also prepares them on the same cores: "
                f"~{_n(f.delivered)} samples/s end to end (estimated; preparation "
                f"{prep:.0%} of each sample's time, {_n(s.rate)}/s {_workers(s)}, measured)")
    supply = f"the pipeline supplies {_n(s.rate)}/s {_workers(s)} (measured)"
    if f.status == "fed":
        return f"{who} {eats}; {supply}: kept busy ({s.rate / c.rate:.1f}x headroom)"
    if f.status == "borderline":
        return (f"{who} {eats}; {supply}: about even (within the bands): it may wait for "
                "data at times")
    need = f.workers_needed
    accel = c.kind.upper() if c.kind in ("gpu", "tpu") else c.kind
    if need is not None and need <= f.most_workers:
        fix = (f"{f.most_workers} workers were measured and do not reach it (workers share "
               f"{f.cores} cores): {_remedy(pipeline, accel)}")
    elif need is not None and need <= f.cores:
        fix = f"~{need} workers would feed it (estimated): add workers"
    else:
        more = f"~{need} workers (estimated)" if need is not None else "more workers"
        fix = (f"it would need {more} but this machine has {f.cores} cores: "
               f"{_remedy(pipeline, accel)}")
    return (f"{who} {eats}; {supply}: starved, busy ~{f.busy_share:.0%} of the time "
            f"(estimated); {fix}")


def verdict_line(report: FeedReport, pipeline: str) -> str:
    """The answer in one sentence."""
    best = report.best
    if best is None or not report.findings:
        return "Nothing to compare: no supply or no device consumption was measured."
    supply = f"{_n(best.rate)} samples/s {_workers(best)} (measured)"
    accel = [f for f in report.findings if f.consumer.kind != "cpu"]
    cpus = [f for f in report.findings if f.consumer.kind == "cpu"]
    if report.verdict == "io-bound-cpu":
        cpu = max(cpus, key=lambda f: f.delivered)
        return (f"Stay on the CPU: the input pipeline bounds every accelerator at {supply}, "
                f"and this CPU delivers ~{_n(cpu.delivered)}/s end to end (estimated), at "
                f"least {CPU_ENOUGH:.0%} of any of them (seed: models with limited I/O belong "
                "on a CPU).")
    if report.verdict == "io-bound":
        slowest = min(accel, key=lambda f: f.consumer.rate)
        return (f"Feed first: every accelerator would wait for data; the pipeline supplies "
                f"{supply}, the slowest of them consumes {_n(slowest.consumer.rate)}/s: "
                f"{_remedy(pipeline, 'GPU')}, or use more CPU cores.")
    if report.verdict == "fed":
        kept = [f for f in accel if f.status == "fed"]
        return (f"Prepare on the CPU, compute on the accelerator (the seeds' combination): "
                f"the input pipeline keeps {len(kept)} of {len(accel)} accelerators busy; it "
                f"supplies {supply}.")
    cpu = cpus[0]
    return (f"This CPU prepares and computes: ~{_n(cpu.delivered)} samples/s end to end "
            f"(estimated); the pipeline alone supplies {supply}.")


def _supply_table(report: FeedReport, wide: bool) -> Any:
    from chipfit.report.layout import Col, Fitted

    cols = [Col("workers", "right"), Col("samples/s", "right"), Col("95% CI", "right", 2),
            Col("start-up", "right", 1), Col("note", drop=3)]
    rows = []
    for s in report.supplies:
        best = report.best is not None and s.workers == report.best.workers
        style = "bold" if best else ""
        note = "busy" if s.contended else ""
        rows.append([Text(str(s.workers), style), Text(_n(s.rate), style),
                     f"{_n(s.low)}-{_n(s.high)}", fmt_seconds(s.startup_s), note])
    return Fitted(cols, rows, wide=wide, title="Input pipeline on this CPU (measured)",
                  caption="samples/s as delivered to the consuming process; start-up: loader "
                  "created to first batch (worker processes included); busy: measured while "
                  "the machine was shared.")


def _device_table(report: FeedReport, wide: bool) -> Any:
    from chipfit.report.layout import Col, Fitted

    cols = [Col("device"), Col("source"), Col("consumes/s", "right"), Col("band", "right", 3),
            Col("status"), Col("delivers/s", "right", 2), Col("busy", "right", 1)]
    rows = []
    for f in report.findings:
        c = f.consumer
        status = "cpu: both" if c.kind == "cpu" and c.local else f.status
        rows.append([c.device, c.source, _n(c.rate), f"{_n(c.low)}-{_n(c.high)}", status,
                     _n(f.delivered), f"{f.busy_share:.0%}"])
    batch = report.findings[0].consumer.batch if report.findings else None
    return Fitted(cols, rows, wide=wide, title=f"Devices at batch {batch}",
                  caption="consumes/s: the model's samples/s with inputs from the host "
                  "(measured here or predicted, band: 95% CI or prediction band); delivers/s "
                  "and busy: with this pipeline (estimated).")


def feed_lines(report: FeedReport, pipeline: str) -> list[str]:
    """The verdict, then one sentence per device."""
    lines = [verdict_line(report, pipeline)]
    lines += [finding_line(f, pipeline) for f in report.findings]
    if report.from_contended:
        lines.append("note: every supply point was measured while the machine was shared; "
                     "rerun when it is quiet")
    return lines


def feed_renderable(report: FeedReport, pipeline: str, title: str, notes: Sequence[str] = (),
                    wide: bool = False) -> Group:
    lines = feed_lines(report, pipeline)
    parts: list[Any] = [Text(title, style="bold"), Text(lines[0], style="bold"),
                        _supply_table(report, wide)]
    if report.findings:
        parts.append(_device_table(report, wide))
    parts += [Text(f"- {line}") for line in lines[1:]]
    parts += [Text(f"note: {n}", style="dim") for n in notes]
    return Group(*parts)


def feed_dict(report: FeedReport, pipeline: str) -> dict[str, Any]:
    """The comparison as JSON-ready data (numbers with their sources, and the words)."""
    def num(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return {
        "verdict": report.verdict, "summary": verdict_line(report, pipeline),
        "cores": report.cores, "from_contended": report.from_contended,
        "best_workers": report.best.workers if report.best else None,
        "supply": [{"workers": s.workers, "samples_per_s": num(s.rate), "low": num(s.low),
                    "high": num(s.high), "startup_s": num(s.startup_s),
                    "contended": s.contended, "source": s.source} for s in report.supplies],
        "devices": [{"device": f.consumer.device, "name": f.consumer.name,
                     "kind": f.consumer.kind, "batch": f.consumer.batch,
                     "consumes_per_s": num(f.consumer.rate), "low": num(f.consumer.low),
                     "high": num(f.consumer.high), "source": f.consumer.source,
                     "basis": f.consumer.basis, "status": f.status,
                     "delivers_per_s": num(f.delivered), "busy_share": num(f.busy_share),
                     "workers_needed": f.workers_needed,
                     "sources": {"consumes_per_s": f.consumer.source, "delivers_per_s":
                                 "estimated", "busy_share": "estimated",
                                 "workers_needed": "estimated"},
                     "line": finding_line(f, pipeline)}
                    for f in report.findings]}
