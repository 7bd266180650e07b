"""The stack view: the same model on each software stack, latency beside eager's.

Only rendering: the comparison itself (which stack measured what, speed-up over eager,
agreement) comes from :mod:`chipfit.analysis.stack_compare`.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from chipfit.analysis.stack_compare import StackRow, stack_rows
from chipfit.report.fmt import fmt_seconds
from chipfit.results import Run

__all__ = ["stacks_table"]


def _pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:.2g}%" if x < 0.01 else f"{x * 100:.1f}%"


def _row(r: StackRow) -> tuple[Text | str, ...]:
    m = r.measurement
    if not m.ok:
        return (r.workload, r.size, r.device, r.stack, Text(f"{m.status}: {m.note[:70]}",
                                                            style="yellow"), "-", "-", "-")
    speed = "-" if not math.isfinite(r.speedup) else f"×{r.speedup:.2f}"
    style = "green" if math.isfinite(r.speedup) and r.speedup > 1 else ""
    return (r.workload, r.size, r.device, r.stack, fmt_seconds(m.median_s),
            Text(speed, style=style),
            "-" if m.compile_s is None else f"{m.compile_s:.1f} s", _pct(m.max_rel_diff))


def stacks_table(run: Run) -> Table:
    """Rows workload x size x device x stack: latency, speed-up over eager, build time and
    agreement with eager's outputs."""
    table = Table(title=f"Software stacks — measured on this machine (run {run.run_id})",
                  title_justify="left", caption="median per call (measured); ×: eager's median "
                  "/ this stack's, same device and dtype; build: export/compile/quantise and "
                  "the first call, kept out of the median; agreement: max |stack - eager| / "
                  "max |eager| on the same inputs.", caption_justify="left")
    for col in ("workload", "size", "device", "stack", "median", "× vs eager", "build",
                "agreement"):
        table.add_column(col, justify="right" if col in ("median", "× vs eager", "build",
                                                         "agreement") else "left")
    for r in stack_rows(run.measurements):
        table.add_row(*_row(r))
    return table
