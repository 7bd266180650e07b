"""The fleet section: per node type, the model's speed and price, then the type to use.

Readable at 80 columns: one table per series (workload, size, dtype, mode) with the node type,
its node count, the device that was fastest there, measured latency and throughput, the price
per hour (catalog or user) and the estimated dollars per 1M items; the recommendation and its
reason follow in words.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from chipfit.analysis.fleet import FleetChoice, FleetRow
from chipfit.report.fmt import fmt_num, fmt_seconds

__all__ = ["fleet_renderable", "fleet_table", "fleet_text"]


def _money(value: float | None) -> str:
    return "-" if value is None else f"${fmt_num(value)}"


def fleet_table(rows: Sequence[FleetRow], chosen: str | None = None) -> Table:
    """One series' rows (latency: measured; $/1M items: estimated)."""
    first = rows[0]
    table = Table(title=Text(f"fleet: {first.workload} {first.size} {first.dtype} {first.mode}"),
                  title_justify="left", pad_edge=False)
    table.add_column("node type", overflow="fold", max_width=22)
    table.add_column("n", justify="right")
    table.add_column("device", overflow="fold", max_width=12)
    table.add_column("latency", justify="right")
    table.add_column("items/s", justify="right")
    table.add_column("$/h", justify="right")
    table.add_column("$/1M", justify="right")
    for r in rows:
        name = ("* " if r.node_type == chosen else "") + r.node_type
        if r.latency_s is None:
            table.add_row(Text(name), str(r.nodes), Text(r.device),
                          Text(r.status, style="red"), "-", _money(r.price and r.price.usd_per_h),
                          "-")
            continue
        price = "-" if r.price is None else f"{_money(r.price.usd_per_h)}{r.price.source[0]}"
        table.add_row(Text(name), str(r.nodes), Text(r.device), fmt_seconds(r.latency_s),
                      fmt_num(r.throughput), price, _money(r.usd_per_m_items))
    table.caption = ("latency, items/s: measured; $/h: c catalog, u --node-price; "
                     "$/1M items: estimated")
    return table


def _notes(rows: Sequence[FleetRow]) -> list[str]:
    return [f"{r.node_type}: {r.note}" for r in rows if r.latency_s is None and r.note]


def fleet_renderable(rows: Sequence[FleetRow], choices: Sequence[FleetChoice]) -> Group:
    """Every series' table, each followed by its recommendation and any lost node types."""
    parts: list[object] = []
    for series in dict.fromkeys(r.series for r in rows):
        group = [r for r in rows if r.series == series]
        choice = next((c for c in choices if c.series == series), None)
        parts.append(fleet_table(group, choice.node_type if choice else None))
        if choice is not None:
            parts.append(Text(f"use {choice.node_type}: {choice.reason}"))
        else:
            parts.append(Text("no node type measured this series", style="red"))
        parts += [Text(note, style="yellow") for note in _notes(group)]
    return Group(*parts)  # type: ignore[arg-type]


def fleet_text(rows: Sequence[FleetRow], choices: Sequence[FleetChoice], width: int = 80) -> str:
    """The section as plain text (for tests and logs)."""
    import io

    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(fleet_renderable(rows, choices))
    return console.export_text()
