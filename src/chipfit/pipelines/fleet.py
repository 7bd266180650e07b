"""A fleet's answer: per node type, the model's speed and price, and the type to use.

The measuring is :func:`chipfit.pipelines.bench.bench` (or sweep) with a fleet executor
(``RayExecutor(fleet=True)``), which plans every job once per node type; this module prices
the node types (``--node-price`` first, then the catalog's list price of the node's
accelerators) and hands rows and choices to :mod:`chipfit.analysis.fleet`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chipfit.analysis.fleet import FleetChoice, FleetRow, NodePrice, fleet_rows, recommend_node
from chipfit.errors import InvalidInputError
from chipfit.results import Run

__all__ = ["FleetReport", "fleet_measure", "fleet_nodes", "fleet_report", "node_prices",
           "parse_node_prices"]


@dataclass(frozen=True)
class FleetReport:
    rows: tuple[FleetRow, ...]
    choices: tuple[FleetChoice, ...]
    nodes: tuple[Mapping[str, object], ...]


def parse_node_prices(pairs: Sequence[str]) -> dict[str, float]:
    """``TYPE=USD/h`` pairs (``cpu-small=0.17``) as a mapping; a malformed pair is refused."""
    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        try:
            price = float(value.removesuffix("/h"))
        except ValueError:
            price = -1.0
        if not eq or not name.strip() or not price >= 0:
            raise InvalidInputError(f"malformed --node-price {pair!r}: use TYPE=USD_PER_HOUR, "
                                    "for example cpu-small=0.17")
        out[name.strip()] = price
    return out


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


def node_prices(nodes: Sequence[Mapping[str, object]], given: Mapping[str, float]) -> dict[str, NodePrice]:
    """Price per node type: the user's (``given``), else the catalog's accelerator price x count.

    A CPU-only type has no catalog price (cloud CPU prices vary too much to guess).
    """
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
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
                 objective: str = "cost") -> FleetReport | None:
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
    rows = fleet_rows(run.measurements, node_prices(nodes, given_prices or {}))
    return FleetReport(tuple(rows), tuple(recommend_node(rows, objective)), tuple(nodes))


def fleet_measure(workload: str, batch: int, *, mode: str = "inference",
                  dtype: str = "float32", executor: Any, store: Any = None,
                  timing: Any = None, on_result: Any = None) -> Run:
    """``advise --ray-address``: the model at ``batch`` on every node type's torch devices.

    Built-in workloads only: a model from a file or a factory is registered in this process,
    and the fleet's workers cannot rebuild it.
    """
    from chipfit.pipelines.bench import bench
    from chipfit.spec import TimingConfig
    from chipfit.workloads import all_workloads

    if workload not in {w.name for w in all_workloads()}:
        raise InvalidInputError(f"advise --ray-address measures built-in workloads (resnet50, "
                                f"bert-base ...); {workload!r} is only known to this process")
    discovery = executor.discover(["torch"])
    devices = [d.ref for d in discovery.devices if d.backend == "torch"]
    return bench([workload], devices, sizes=[str(batch)], dtypes=[dtype], modes=[mode],
                 timing=timing or TimingConfig.quick(), on_result=on_result,
                 discovery=discovery, command="advise-fleet", executor=executor, store=store)
