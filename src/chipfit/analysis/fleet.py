"""Which node type of a fleet should run a model: measured speed per node type, and its price.

Pure: measurements tagged with their node type and prices per node type in; one row per
(series, node type) and a recommendation per series out.

- latency is the measured median per call (``source: measured``) of the best device of that
  node type (a GPU node's GPU, usually; its CPU when that was faster);
- throughput is items per second at that latency;
- dollars per 1M items = price per hour / 3600 / throughput x 1e6 (``source: estimated``:
  a measured speed times a catalog or user price, assuming the node is kept busy).

The recommendation: the cheapest node type per 1M items when every measured type has a
price; otherwise (or with ``objective="latency"``) the fastest. A type whose jobs were all
lost or failed is listed with the reason, never recommended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chipfit.results import Measurement

__all__ = ["FleetChoice", "FleetRow", "NodePrice", "fleet_rows", "recommend_node"]

OBJECTIVES = ("cost", "latency")


@dataclass(frozen=True)
class NodePrice:
    """Dollars per hour of one node of a type, and where the figure came from."""

    usd_per_h: float
    source: str  # "catalog" (accelerator list price x count) or "user" (--node-price)
    note: str = ""


@dataclass(frozen=True)
class FleetRow:
    """One series on one node type."""

    workload: str
    size: str
    dtype: str
    mode: str
    node_type: str
    nodes: int  # how many nodes of the type measured it
    device: str = ""
    latency_s: float | None = None  # measured
    throughput: float | None = None  # items/s, measured
    price: NodePrice | None = None
    status: str = "ok"
    note: str = ""

    @property
    def series(self) -> tuple[str, str, str, str]:
        return (self.workload, self.size, self.dtype, self.mode)

    @property
    def usd_per_m_items(self) -> float | None:
        """Estimated: the price per hour spread over an hour of measured throughput."""
        if self.price is None or not self.throughput:
            return None
        return self.price.usd_per_h / 3600.0 / self.throughput * 1e6


@dataclass(frozen=True)
class FleetChoice:
    """The node type to use for one series, and why."""

    series: tuple[str, str, str, str]
    node_type: str
    objective: str
    reason: str


def _best(ms: Sequence[Measurement]) -> Measurement | None:
    ok = [m for m in ms if m.ok]
    return min(ok, key=lambda m: m.median_s) if ok else None


def fleet_rows(measurements: Iterable[Measurement],
               prices: Mapping[str, NodePrice] | None = None) -> list[FleetRow]:
    """Rows per (series, node type), in series order then by latency (failed types last)."""
    prices = prices or {}
    groups: dict[tuple[str, str, str, str, str], list[Measurement]] = {}
    for m in measurements:
        if m.node_type is not None:
            groups.setdefault((m.workload, m.size, m.dtype, m.mode, m.node_type), []).append(m)
    rows = []
    for (workload, size, dtype, mode, node_type), ms in groups.items():
        nodes = len({m.node_id for m in ms if m.ok}) or len({m.node_id for m in ms})
        best = _best(ms)
        if best is None:
            last = ms[-1]
            rows.append(FleetRow(workload, size, dtype, mode, node_type, nodes, last.device,
                                 price=prices.get(node_type), status=last.status, note=last.note))
            continue
        rows.append(FleetRow(workload, size, dtype, mode, node_type, nodes, best.device,
                             best.median_s, best.throughput, prices.get(node_type)))
    order = {s: i for i, s in enumerate(dict.fromkeys(r.series for r in rows))}
    return sorted(rows, key=lambda r: (order[r.series], r.latency_s is None,
                                       r.latency_s or math.inf, r.node_type))


def recommend_node(rows: Sequence[FleetRow], objective: str = "cost") -> list[FleetChoice]:
    """Per series: the node type to use (see the module docstring for the rule)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}")
    series = dict.fromkeys(r.series for r in rows)
    return [c for s in series if (c := _choose([r for r in rows if r.series == s], objective))]


def _latency(row: FleetRow) -> float:
    return row.latency_s if row.latency_s is not None else math.inf


def _cost(row: FleetRow) -> float:
    value = row.usd_per_m_items
    return value if value is not None else math.inf


def _choose(rows: Sequence[FleetRow], objective: str) -> FleetChoice | None:
    measured = [r for r in rows if r.latency_s is not None]
    if not measured:
        return None
    lost = sorted(r.node_type for r in rows if r.latency_s is None)
    tail = f"; not measured: {', '.join(lost)}" if lost else ""
    priced = [r for r in measured if r.usd_per_m_items is not None and r.price is not None]
    if objective == "cost" and priced and len(priced) == len(measured):
        cheap = min(priced, key=_cost)
        return FleetChoice(cheap.series, cheap.node_type, "cost",
                           _cost_reason(cheap, priced, min(measured, key=_latency)) + tail)
    fastest = min(measured, key=_latency)
    reason = f"lowest measured latency, {_latency(fastest) * 1e3:.3g} ms per call"
    others = [r for r in measured if r is not fastest]
    if others:
        second = min(others, key=_latency)
        reason += f", {_latency(second) / _latency(fastest):.2g}x faster than {second.node_type}"
    if objective == "cost":
        unpriced = sorted(r.node_type for r in measured if r.usd_per_m_items is None)
        reason += (f" (no price for {', '.join(unpriced)}: give --node-price TYPE=USD/h to "
                   "rank by cost)")
    return FleetChoice(fastest.series, fastest.node_type, objective, reason + tail)


def _cost_reason(cheap: FleetRow, priced: Sequence[FleetRow], fastest: FleetRow) -> str:
    price = cheap.price
    assert price is not None
    reason = (f"cheapest per 1M items: ${_cost(cheap):.3g} (estimated: measured throughput x "
              f"{price.source} price ${price.usd_per_h:.3g}/h)")
    others = [r for r in priced if r is not cheap]
    if others:
        runner_up = min(others, key=_cost)
        reason += f", {_cost(runner_up) / _cost(cheap):.2g}x less than {runner_up.node_type}"
    if cheap is not fastest:
        slower = _latency(cheap) / _latency(fastest)
        reason += f"; {fastest.node_type} is {slower:.2g}x faster but costs more per item"
    return reason
