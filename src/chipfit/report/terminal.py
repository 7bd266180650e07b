"""Rich renderables for the terminal. Results never print themselves; these views do."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any

from rich.table import Table
from rich.text import Text

from chipfit.report.fmt import fmt_bytes, fmt_rate, fmt_seconds
from chipfit.results import Discovery, Measurement, Run

__all__ = ["bench_table", "devices_table", "problems_table", "reference_device", "workloads_table"]


def devices_table(discovery: Discovery) -> Table:
    """One block per device: a field per line, values wrapped at spaces, never inside a word
    (an ISA list such as ``avx512_vnni`` stays whole at any width)."""
    table = Table(title="Devices found (probed on this machine)", title_justify="left",
                  show_header=False, show_lines=True)
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("details", overflow="fold")
    for d in discovery.devices:
        units = []
        if d.cores is not None:
            units.append(f"{d.cores} cores / {d.threads} threads")
        if d.compute_units is not None:
            units.append(f"{d.compute_units} compute units")
        extra = " ".join(d.isa) or ", ".join(f"{k}={v}" for k, v in d.details)
        lines = [("kind", d.kind), ("name", d.name), ("memory", fmt_bytes(d.memory_bytes)),
                 ("parallel units", "; ".join(units) or "-"),
                 ("ISA / details" if d.isa else "details", extra or "-"),
                 ("versions", ", ".join(f"{k} {v}" for k, v in d.versions) or "-")]
        body = Table.grid(padding=(0, 1))
        body.add_column(no_wrap=True, style="dim")
        body.add_column()
        for key, value in lines:
            body.add_row(key, Text(value))
        table.add_row(Text(d.ref), body)
    return table


def problems_table(discovery: Discovery) -> Table:
    table = Table(title="Not available, and why", title_justify="left")
    table.add_column("backend / device")
    table.add_column("reason", overflow="fold")
    for p in discovery.problems:
        table.add_row(Text(p.scope), Text(p.reason))
    return table


def reference_device(devices: list[str]) -> str:
    """The column speed-ups are relative to: torch's CPU at its default threads if present."""
    for candidate in ("torch:cpu", "jax:cpu:0"):
        if candidate in devices:
            return candidate
    return devices[0]


def _cell(m: Measurement | None, ref: Measurement | None) -> Text:
    if m is None:
        return Text("-")
    if not m.ok:
        return Text(f"{m.status}\n{m.note[:60]}", style="yellow")
    text = Text(fmt_seconds(m.median_s))
    rel = m.rel_ci
    text.append(f" ±{rel * 100:.1f}%" if math.isfinite(rel) else " ±?", style="dim")
    if m.noisy:
        text.append(" !", style="bold red")
    if m.contended:
        text.append(" busy", style="bold magenta")
    text.append(f"\n{_rate(m)}")
    if m.transfer_h2d_s or m.transfer_d2h_s:
        text.append(f"\ne2e {fmt_seconds(m.end_to_end_s)}", style="cyan")
    if ref is not None and ref.ok and ref is not m and not (m.contended or ref.contended):
        speedup = ref.median_s / m.median_s
        text.append(f"\n×{speedup:.2f}", style="green" if speedup > 1 else "red")
    return text


def _stack_row(m: Measurement) -> str:
    """The stack a row is labelled with: none for a backend's default (eager, jit), so torch
    eager and JAX jit stay side by side."""
    from chipfit.spec import default_stack

    return "" if m.stack == default_stack(m.device.split(":")[0]) else m.stack


def bench_table(run: Run, wide: bool = False) -> Any:
    """Devices side by side where the width allows (:func:`bench_grid`), otherwise one line
    per measurement (:func:`bench_lines`, its optional columns stepping aside at a narrow
    width). ``wide`` (``--wide``): always the grid, every figure of every point (shown as
    records where even that cannot fit)."""
    from chipfit.report.layout import Responsive

    if wide:
        return bench_grid(run)
    return Responsive(lambda: bench_grid(run), lambda width: bench_lines(run, width))


def _caption(ref_name: str, e2e: bool = True) -> str:
    return ("median per call ±95% CI of the median; FLOP/s (or B/s when memory-bound) "
            f"achieved; ×: speed-up vs {ref_name}; "
            + ("e2e: with host<->device copies; " if e2e else "")
            + "! noisy (IQR >10% or CI target not met); busy: measured while the machine was "
            "shared (no speed-up stated). All figures measured.")


def _rate(m: Measurement) -> str:
    """The roof that binds: FLOP/s for arithmetic-heavy work, GB/s for streaming work."""
    if m.bytes_moved and m.flops / m.bytes_moved < 1:
        return fmt_rate(m.bytes_moved / m.median_s, "B/s")
    return fmt_rate(m.flops / m.median_s, "FLOP/s") if m.flops else "-"


def _variant(m: Measurement) -> str:
    stack = _stack_row(m)
    return f"{m.dtype} {m.mode}" + (f" {stack}" if stack else "")


def bench_lines(run: Run, width: int = 80) -> Any:
    """One line per measurement: for narrow terminals, where devices side by side wrap.
    Columns that do not fit ``width`` step aside (the speed-up first, then the rate) and the
    caption names them; keys, devices and numbers are never cut."""
    from chipfit.report.layout import Col, fitted_table

    devices = list(OrderedDict.fromkeys(m.device for m in run.measurements))
    ref_name = reference_device(devices) if devices else ""
    refs = {(m.workload, m.size, m.dtype, m.mode, m.stack): m for m in run.measurements
            if m.device == ref_name}
    variants = list(OrderedDict.fromkeys(_variant(m) for m in run.measurements))
    caption = (_caption(ref_name, e2e=False) + (f" All rows: {variants[0]}."
                                                if len(variants) == 1 else ""))
    cols = [Col("workload"), Col("size")]
    if len(variants) > 1:
        cols.append(Col("dtype mode stack"))
    cols += [Col("device"), Col("median", "right"), Col("rate", "right", 1),
             Col("×", "right", 2)]
    rows = []
    last = None
    for m in run.measurements:
        ref = refs.get((m.workload, m.size, m.dtype, m.mode, m.stack))
        if m.ok:
            rel = m.rel_ci
            time = Text(fmt_seconds(m.median_s) + (f" ±{rel * 100:.1f}%" if math.isfinite(rel)
                                                   else " ±?"))
            if m.noisy:
                time.append(" !", style="bold red")
            if m.contended:
                time.append(" busy", style="bold magenta")
            speed = (f"×{ref.median_s / m.median_s:.2f}" if ref is not None and ref.ok
                     and ref is not m and not (m.contended or ref.contended) else "")
            rate = _rate(m)
        else:
            time, rate, speed = Text(m.status, style="yellow"), "-", ""
        label = [m.workload if last is None or m.workload != last[0] else "",
                 m.size if (m.workload, m.size) != last else ""]
        last = (m.workload, m.size)
        if len(variants) > 1:
            label.append(_variant(m))
        rows.append([*label, m.series_device, time, rate, speed])
    table = fitted_table(cols, rows, width, caption=caption, box=None, padding=(0, 1),
                         title=f"chipfit {run.command or 'bench'} — measured on this machine "
                               f"(run {run.run_id})")
    if len(table.columns) < len(cols):
        table.caption = str(table.caption).replace("(--wide shows them)",
                                                   "(--wide shows them, devices side by side)")
    return table


def bench_grid(run: Run) -> Table:
    """Rows workload x size (x dtype, mode); columns devices."""
    devices = list(OrderedDict.fromkeys(m.device for m in run.measurements))
    rows: OrderedDict[tuple[str, str, str, str, str], dict[str, Measurement]] = OrderedDict()
    for m in run.measurements:
        rows.setdefault((m.workload, m.size, m.dtype, m.mode, _stack_row(m)), {})[m.device] = m
    ref_name = reference_device(devices) if devices else ""
    table = Table(title=Text(f"chipfit {run.command or 'bench'} — measured on this machine "
                             f"(run {run.run_id})"),
                  title_justify="left", show_lines=True,
                  caption=_caption(ref_name, e2e=any(m.transfer_h2d_s or m.transfer_d2h_s
                                                     for m in run.measurements)),
                  caption_justify="left")
    table.add_column("workload", no_wrap=True)
    table.add_column("size", no_wrap=True)
    table.add_column("dtype / mode / stack", no_wrap=True)
    for d in devices:
        table.add_column(Text(d + (" (ref)" if d == ref_name else "")), justify="right",
                         no_wrap=True)
    for (workload, size, dtype, mode, stack), cells in rows.items():
        ref = cells.get(ref_name)
        label = f"{dtype}\n{mode}" + (f"\n{stack}" if stack else "")
        table.add_row(Text(workload), Text(size), Text(label),
                      *(_cell(cells.get(d), ref) for d in devices))
    return table


def workloads_table(workloads: list) -> Table:
    """One line per workload: name, what its size means, whether it trains, what it is."""
    table = Table(title="Built-in workloads", title_justify="left", box=None,
                  caption="size: what the size argument means (n: square matrix side or "
                  "MxK@KxN; batch: samples per call); train: also has train and finetune "
                  "modes; --json gives the full descriptions", caption_justify="left")
    longest = max((len(w.name) for w in workloads), default=4)
    # Fixed widths for the short columns; the description takes what is left, on one line.
    table.expand = True
    table.add_column("name", no_wrap=True, style="bold", width=longest)
    table.add_column("size", no_wrap=True, width=8)
    table.add_column("train", no_wrap=True, width=5)
    table.add_column("what it is", no_wrap=True, overflow="ellipsis", ratio=1)
    for w in workloads:
        summary = re.sub(r";\s*size = batch$", "", w.description.strip())
        table.add_row(w.name, w.axis, "yes" if "train" in w.modes else "-", WordClip(summary))
    return table


class WordClip:
    """One line of prose cut at the last whole word that fits the width it is rendered at,
    then `` …``: a description loses its tail, never half a word or half a number
    (``784-1024-1…``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Any, options: Any) -> Any:
        width = options.max_width
        text = self.text
        if len(text) > width:
            head = text[:max(width - 2, 0)]
            if text[len(head)] != " " and " " in head:
                head = head.rsplit(" ", 1)[0]
            text = head.rstrip(" ,;:(") + " …"
        yield Text(text, no_wrap=True, overflow="crop")

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement as Width

        return Width(min(8, len(self.text)), len(self.text))
