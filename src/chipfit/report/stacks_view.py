"""The stack view: the same model on each software stack, latency beside eager's.

Only rendering: the comparison itself (which stack measured what, speed-up over eager,
agreement) comes from :mod:`chipfit.analysis.stack_compare`.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from chipfit.analysis.stack_compare import StackRow, stack_rows
from chipfit.report.fmt import fmt_num, fmt_seconds
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
    if r.contended and math.isfinite(r.speedup):
        speed, style = speed + " (machine shared)", "yellow"
    return (r.workload, r.size, r.device, r.stack, fmt_seconds(m.median_s),
            Text(speed, style=style),
            "-" if m.compile_s is None else f"{m.compile_s:.1f} s", _pct(m.max_rel_diff))


def stacks_table(run: Run) -> Table:
    """Rows workload x size x device x stack: latency, speed-up over eager, build time and
    agreement with eager's outputs."""
    table = Table(title=f"Software stacks — measured on this machine (run {run.run_id})",
                  title_justify="left", caption="median per call (measured); ×: eager's median "
                  "/ this stack's, same device and dtype (machine shared: a side ran while "
                  "other work loaded the cores, so the ratio is not a finding); build: "
                  "export/compile/quantise and the first call, kept out of the median; "
                  "agreement: max |stack - eager| / max |eager| on the same inputs.",
                  caption_justify="left")
    for col in ("workload", "size", "device", "stack", "median", "× vs eager", "build",
                "agreement"):
        table.add_column(col, justify="right" if col in ("median", "× vs eager", "build",
                                                         "agreement") else "left")
    for r in stack_rows(run.measurements):
        table.add_row(*_row(r))
    return table


def engine_loo_table(loo: dict) -> Table:  # type: ignore[type-arg]
    """The fused-engine stack against each published MLPerf row, fitted without that row."""
    fit = loo["fit"]
    summary = loo["summary"]
    effs = ", ".join(f"{k} {v:.2f}" for k, v in fit["efficiency"].items())
    table = Table(title="Fused-engine stack vs published MLPerf rows (leave-one-out)",
                  title_justify="left", caption=(
                      f"predicted: each row with the engine parameters fitted on the other rows. "
                      f"Fit on all rows: efficiency {effs} of the int8 peak, "
                      f"{fit['kernel_s'] * 1e6:.1f} us per fused kernel, BERT token share "
                      f"{fit['token_fraction']:.2f} of 384. Median |error|: all "
                      f"{_pct(summary['all'])}, offline {_pct(summary['offline'])}."),
                  caption_justify="left")
    for col in ("id", "metric", "published", "predicted (loo)", "error (loo)", "error (fit)"):
        table.add_column(col, justify="left" if col in ("id", "metric") else "right")
    for r in loo["rows"]:
        latency = r["metric"] == "latency"
        fmt = (lambda x: f"{fmt_num(x * 1e3)} ms") if latency else (lambda x: f"{fmt_num(x, 4)} /s")
        table.add_row(r["id"], r["metric"], fmt(r["published"]), fmt(r["loo_predicted"]),
                      f"{r['loo_error'] * 100:+.1f}%", f"{r['fit_error'] * 100:+.1f}%")
    return table
