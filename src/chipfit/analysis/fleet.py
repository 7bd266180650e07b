"""Which node type of a fleet should run a model: measured speed per node type, and its price.

Pure: measurements tagged with their node type and prices per node type in; one row per
(series, node type) and a recommendation per series out. (Prices come from the user or the
shipped catalog, which is data, not a measurement.)

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

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chipfit.errors import InvalidInputError
from chipfit.results import Measurement, Run

__all__ = ["FleetChoice", "FleetReport", "FleetRow", "NodePrice", "fleet_nodes", "fleet_report",
           "fleet_rows", "node_prices", "recommend_node"]

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


# ---- a run's fleet: its nodes (as recorded), their prices, rows and choices -------------------
@dataclass(frozen=True)
class FleetReport:
    """A fleet run's rows and choices, with the nodes it recorded."""

    rows: tuple[FleetRow, ...]
    choices: tuple[FleetChoice, ...]
    nodes: tuple[Mapping[str, object], ...]


def fleet_nodes(run: Run) -> list[dict[str, object]]:
    """The nodes a fleet run recorded (its ``fleet_nodes`` setting); [] for other runs."""
    text = dict(run.settings).get("fleet_nodes")
    if not text:
        return []
    try:
        nodes = json.loads(text)
    except ValueError:
        return []
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def node_prices(nodes: Sequence[Mapping[str, object]], given: Mapping[str, float],
                catalog: Any) -> dict[str, NodePrice]:
    """Price per node type: the user's (``given``), else the catalog's accelerator price x count.

    ``catalog`` (a :class:`~chipfit.hardware.catalog.Catalog`, handed in: analysis reads no
    file) matches accelerator names. A CPU-only type has no catalog price (cloud CPU prices
    vary too much to guess).
    """
    out = {t: NodePrice(usd, "user") for t, usd in given.items()}
    for node in nodes:
        name = str(node.get("node_type"))
        if name in out:
            continue
        total, notes = 0.0, []
        for accel, count in node.get("accelerators") or []:  # type: ignore[attr-defined]
            spec = catalog.match(str(accel))
            price = spec.price_usd_hr if spec is not None else None
            if price is None:
                total = -1.0
                break
            total += price * int(count)
            notes.append(f"{count}x {spec.key}")  # type: ignore[union-attr]
        if total > 0:
            out[name] = NodePrice(total, "catalog", ", ".join(notes))
    return out


def fleet_report(run: Run, given_prices: Mapping[str, float] | None = None,
                 objective: str = "cost", *, catalog: Any) -> FleetReport | None:
    """Rows and recommendations for a fleet run; None when ``run`` has no node types."""
    if not any(m.node_type for m in run.measurements):
        return None
    nodes = fleet_nodes(run)
    known = {str(n.get("node_type")) for n in nodes} | {m.node_type for m in run.measurements
                                                          if m.node_type}
    unknown = sorted(set(given_prices or {}) - known)
    if unknown:
        raise InvalidInputError(f"--node-price names no node type of this run: "
                                f"{', '.join(unknown)} (types: {', '.join(sorted(known))})")
    rows = fleet_rows(run.measurements, node_prices(nodes, given_prices or {}, catalog))
    return FleetReport(tuple(rows), tuple(recommend_node(rows, objective)), tuple(nodes))
