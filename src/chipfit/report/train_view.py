"""Rich views of ``chipfit train``: one row per plan (device type x count x layout).

Column headers say where numbers come from: memory is estimated, times predicted (with the
band in the caption), $ and kWh from the catalog's price and TDP.
"""

from __future__ import annotations

import math
from typing import Any

from chipfit.report.fmt import fmt_seconds

__all__ = ["measured_lines", "train_table"]


def _gib(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value / 2**30:.1f}"


def _num(value: float | None, spec: str = ",.2f") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{spec}}"


def _time(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value < 60:
        return fmt_seconds(value)
    if value < 3600:
        return f"{value / 60:.1f} min"
    if value < 2 * 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def train_table(report: Any, wide: bool = False) -> Any:
    """Plans best first, fitted to 80 columns (the least needed columns drop first)."""
    from chipfit.report.layout import Col, Fitted

    s = report.setup
    what = (f"{s.method}" + (f" r={s.lora_rank}" if s.method != "full" else "")
            + f", {s.optimizer}, {s.precision}" + (", checkpointing" if s.checkpointing else ""))
    amount = (f"{report.tokens:.3g} tokens" if report.tokens else f"{report.samples:.3g} samples")
    title = f"chipfit train {report.model}: {report.params / 1e9:.3g}B params, {what}, {amount}"
    bands = sorted({f"{r.band:.0%}" for r in report.rows})
    mband = report.extra.get("memory_band")
    caption = ("GiB/dev: estimated memory per device"
               + (f" (band +-{mband:.0%})" if mband else "") + ", capacity after /; step, total: "
               f"predicted (band +-{'/'.join(bands) or '-'}); $ from the catalog's price, kWh "
               "at TDP; MFU: model FLOPs / (time x devices x peak); tight: fits, but within "
               "the memory band of the capacity; ckpt: activation checkpointing (searched unless "
               "--checkpointing asks for it).")
    cols = [Col("hardware"), Col("n", "right"), Col("parallel", drop=2), Col("B", "right", 4),
            Col("GiB/dev", "right"), Col("fits", "right"), Col("step", "right", 3),
            Col("total", "right"), Col("$", "right"), Col("kWh", "right", 5),
            Col("MFU", "right", 1)]
    rows = []
    for p in report.rows:
        fits = "?" if p.fits is None else ("yes" if p.fits else "NO")
        if p.fits and mband and p.memory.total * (1 + mband) > p.capacity_bytes:
            fits = "tight"  # within the memory band of the capacity
        rows.append([p.hardware, str(p.devices), p.layout, str(p.batch),
                     f"{_gib(p.memory.total)}/{_gib(p.capacity_bytes)}", fits,
                     _time(p.step_s), _time(p.total_s) if p.fits else "-",
                     _num(p.usd) if p.fits else "-", _num(p.kwh, ",.0f") if p.fits else "-",
                     "-" if p.mfu is None else f"{p.mfu:.0%}"])
    return Fitted(cols, rows, wide=wide, title=title, caption=caption)


def memory_lines(report: Any) -> list[str]:
    """The best row's memory breakdown, one line."""
    if not report.rows:
        return []
    p = report.rows[0]
    m = p.memory
    parts = [("weights", m.weights), ("grads", m.gradients), ("master", m.master),
             ("optimizer", m.optimizer), ("activations", m.activations),
             ("runtime", m.overhead)]
    text = ", ".join(f"{k} {_gib(v)}" for k, v in parts if v)
    limits = (f"; fits up to batch {p.max_batch}" if p.max_batch is not None else "") + (
        f", up to {p.max_seq_len} tokens at batch {p.batch}" if p.max_seq_len else "")
    return [f"memory per device on {p.devices}x {p.hardware} ({p.layout}, batch "
            f"{p.batch}): {text} GiB (estimated){limits}"]


def measured_lines(report: Any) -> list[str]:
    """The measured training steps here beside the plan for this CPU."""
    m = report.measured
    if m is None:
        return []
    if not m.ok:
        return [f"measured here: not run: {m.why}"]
    return [f"measured here (torch CPU, {m.steps} steps, batch {m.batch}"
            + (f", seq {m.seq_len}" if m.seq_len else "") + f", {m.precision}): "
            f"step {fmt_seconds(m.step_s)} (median), peak memory {_gib(m.peak_bytes)} GiB "
            f"(malloc in use, mallinfo2, sampled per operator; the resident set grew "
            f"{_gib(m.rss_peak_bytes)} GiB); planned {_gib(m.planned_bytes)} GiB "
            f"({(m.planned_bytes - m.peak_bytes) / m.peak_bytes:+.0%})"]
