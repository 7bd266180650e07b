"""A fleet's answer: per node type, the model's speed and price, and the type to use.

The pricing and the rows live in :mod:`chipfit.analysis.fleet` (re-exported here). The
measuring is :func:`chipfit.pipelines.bench.bench` (or sweep) with a fleet executor
(``RayExecutor(fleet=True)``), which plans every job once per node type. Prices: the user's
(``--node-price``) first, then the catalog's list price of the node's accelerators.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chipfit.analysis import fleet as _fleet
from chipfit.analysis.fleet import FleetReport, NodePrice, fleet_nodes
from chipfit.errors import InvalidInputError
from chipfit.results import Run

__all__ = ["FleetReport", "fleet_measure", "fleet_nodes", "fleet_report", "node_prices",
           "parse_node_prices"]


def node_prices(nodes: Sequence[Any], given: Any) -> dict[str, NodePrice]:
    """:func:`chipfit.analysis.fleet.node_prices` against the shipped catalog."""
    from chipfit.hardware.catalog import load_catalog

    return _fleet.node_prices(nodes, given, load_catalog())


def fleet_report(run: Run, given_prices: Any = None, objective: str = "cost"
                 ) -> FleetReport | None:
    """:func:`chipfit.analysis.fleet.fleet_report` priced from the shipped catalog."""
    from chipfit.hardware.catalog import load_catalog

    return _fleet.fleet_report(run, given_prices, objective, catalog=load_catalog())


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
