"""Rich views of ``chipfit llm --endpoint``: the measured server beside the prediction.

Numbers say where they come from: the measured table's title says ``measured``, the
prediction table's ``predicted`` with each row's band. Both fit 80 columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from chipfit.report.fmt import fmt_seconds

__all__ = ["endpoint_headline", "measured_table", "predicted_table"]


def _rate(value: float | None, unit: str) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g} {unit}"


def endpoint_headline(stats: Any, where: str, arrivals: str) -> str:
    """Two lines: what was sent and what came back; the latencies people quote."""
    failed = f", {stats.failed} failed" if stats.failed else ""
    head = (f"Measured {where}: {stats.ok} of {stats.requests} requests ok{failed} "
            f"({arrivals})")
    if not stats.ok:
        return head + ": no request succeeded"
    head += "\n"
    parts = [f"TTFT p90 {fmt_seconds(stats.ttft.p90)}",
             f"TPOT p90 {fmt_seconds(stats.tpot.p90)}",
             f"{_rate(stats.output_tokens_per_s, 'output tok/s')}"]
    if stats.good is not None:
        parts.append(f"goodput {_rate(stats.goodput, 'req/s')} ({stats.good} of "
                     f"{stats.requests} within the SLO)")
    return head + ", ".join(parts)


def measured_table(stats: Any) -> Group:
    """Percentiles (measured, seconds) of one run, then its rates, one line each."""
    table = Table(title=Text("measured (this client's view, network included)"),
                  title_justify="left")
    for name in ("", "p50", "p90", "p99", "n"):
        table.add_column(name, justify="left" if not name else "right", no_wrap=True)
    for label, p in (("time to first token", stats.ttft),
                     ("time per output token", stats.tpot),
                     ("inter-token latency", stats.itl), ("end to end", stats.e2e)):
        table.add_row(label, fmt_seconds(p.p50), fmt_seconds(p.p90), fmt_seconds(p.p99),
                      str(p.n))
    rates = [("output tokens/s", _rate(stats.output_tokens_per_s, "tok/s")
              + f" (counted from: {stats.tokens_source})"),
             ("total tokens/s", _rate(stats.total_tokens_per_s, "tok/s")
              + f" (prompt: {stats.prompt_tokens_source} count)"),
             ("requests/s achieved", _rate(stats.request_rate, "req/s")
              + (f" (offered {stats.offered_rate:g})" if stats.offered_rate else ""))]
    if stats.good is not None:
        slo = " and ".join(f"{name} <= {fmt_seconds(v)}" for name, v in
                           (("TTFT", stats.slo_ttft_s), ("TPOT", stats.slo_tpot_s))
                           if v is not None)
        rates.append(("goodput", f"{_rate(stats.goodput, 'req/s')}, {stats.good} of "
                                 f"{stats.requests} with {slo}"))
    return Group(table, *(Text(f"{k}: {v}") for k, v in rates))


def predicted_table(predictions: Sequence[Any]) -> Table:
    """chipfit's prediction for the measured configuration, per hardware, with its band."""
    table = Table(title=Text("predicted (chipfit llm, same workload)"), title_justify="left")
    for name in ("hardware", "TTFT", "TPOT", "e2e", "out tok/s", "band"):
        table.add_column(name, justify="left" if name == "hardware" else "right",
                         no_wrap=name != "hardware")
    missing = []
    for p in predictions:
        if p.ttft_s is None:
            table.add_row(Text(p.hardware), "-", "-", "-", "-", "none")
            missing.append(f"{p.hardware}: {p.why}")
            continue
        table.add_row(Text(p.hardware), fmt_seconds(p.ttft_s), fmt_seconds(p.tpot_s),
                      fmt_seconds(p.e2e_s), _rate(p.output_tokens_per_s, ""),
                      f"+-{p.band:.0%}" if p.band is not None else "-")
    if missing:
        table.caption = Text("no prediction: " + "; ".join(missing))
        table.caption_justify = "left"
    return table
