"""Multi-node data-parallel scaling: torch DDP across the nodes of a Ray cluster.

One rank per node, each a Ray task pinned to its node (``NodeAffinitySchedulingStrategy``,
``soft=False``); rank 0's node address and a port free there form the ``init_method``, so the
gradient all-reduce crosses the network as it would in training: ``gloo`` between CPU nodes,
``nccl`` between GPU nodes (one GPU per rank, the one Ray assigned). The ranks run
:func:`chipfit.pipelines.scale_torch._rank_main`, the same step, fences and slowest-rank step
times as ``chipfit scale --backend torch`` on one machine; the efficiency is throughput on N
nodes over N times that on one node (measured).

Nodes are taken from one node type (``node_type``, default: the type with the most nodes), so
the points differ only in how many nodes take part.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from chipfit.errors import ChipfitError, InvalidInputError, UnknownNameError
from chipfit.spec import parse_dtype

__all__ = ["scale_fleet"]


def _free_port_here() -> tuple[str, int]:
    """On rank 0's node: a free TCP port there (runs as a pinned Ray task)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return socket.gethostname(), sock.getsockname()[1]


def _rank_task(rank: int, world: int, spec: Any, omp_threads: str | None) -> dict[str, Any]:
    """Body of one rank's Ray task (Ray's OMP_NUM_THREADS undone, as for every fleet job)."""
    import os

    if omp_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp_threads
    from chipfit.pipelines.scale_torch import _rank_main

    return _rank_main(rank, world, spec)


def _pick_nodes(executor: Any, node_type: str | None) -> list[Any]:
    from chipfit.execute.fleet import types_of

    usable = [n for n in executor.nodes() if n.cpus >= 1 or n.accelerators]
    groups = types_of(usable)
    if not groups:
        raise InvalidInputError("the Ray cluster has no node that can run a rank (no CPU)")
    if node_type is None:
        node_type = max(groups, key=lambda t: (len(groups[t]), t))
    if node_type not in groups:
        raise UnknownNameError("node type", node_type, sorted(groups))
    return groups[node_type]


def scale_fleet(workload: str = "mlp", nodes: int | None = None, *, address: str | None = None,
                node_type: str | None = None, batch: int | None = None,
                scaling: str = "weak", mode: str = "train", dtype: str = "float32",
                threads_per_process: int = 1, warmup: int = 3, steps: int | None = None,
                budget_s: float = 2.0, executor: Any = None,
                on_point: Callable[[Any], None] | None = None) -> Any:
    """DDP ``mode`` steps of ``workload`` on 1, 2, 4 ... ``nodes`` nodes of one type.

    Returns a :class:`chipfit.analysis.scaling.ScalingResult` whose points are node counts.
    ``executor``: a fleet :class:`~chipfit.execute.ray.RayExecutor` already joined (default:
    one joining ``address``). A CPU rank uses ``threads_per_process`` threads.
    """
    import os

    from chipfit.analysis.scaling import ScalingPoint, ScalingResult, device_counts
    from chipfit.execute.ray import RayExecutor
    from chipfit.pipelines.scale_torch import _batches, checked_request

    net = checked_request(workload, mode, scaling, warmup, steps, budget_s)
    owned = executor is None
    executor = executor or RayExecutor(address, fleet=True)
    try:
        group = _pick_nodes(executor, node_type)
        if nodes is not None and not 1 <= nodes <= len(group):
            raise InvalidInputError(f"{nodes} nodes asked; node type {group[0].node_type} has "
                                    f"{len(group)}")
        counts = device_counts(nodes or len(group))
        gpu = bool(group[0].accelerators) and any(d.startswith("torch:cuda")
                                                  for d in group[0].devices)
        default = net.scale_batch * (counts[-1] if scaling == "strong" else 1)
        per_rank = _batches(counts, default if batch is None else batch, scaling)
        points = []
        for n, b in zip(counts, per_rank, strict=True):
            m = _run_point(executor, group[:n], net, scaling, b, dict(
                workload=workload, mode=mode, dtype=parse_dtype(dtype),
                device="cuda" if gpu else "cpu", threads=threads_per_process, warmup=warmup,
                steps=steps, budget_s=budget_s), os.environ.get("OMP_NUM_THREADS"))
            points.append(ScalingPoint(n, n * b, m))
            if on_point is not None:
                on_point(points[-1])
    finally:
        if owned:
            executor.close()
    return ScalingResult(workload, mode, parse_dtype(dtype), "cuda" if gpu else "cpu", scaling,
                         tuple(points))


def _run_point(executor: Any, nodes: list[Any], net: Any, scaling: str, batch: int,
               fields: dict[str, Any], omp: str | None) -> Any:
    """``len(nodes)`` ranks, rank i pinned to ``nodes[i]``; the step as a Measurement."""
    from dataclasses import replace

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from chipfit.pipelines.scale_torch import _Spec, step_measurement

    ray = executor._connect()
    n = len(nodes)

    def pinned(node: Any) -> NodeAffinitySchedulingStrategy:
        return NodeAffinitySchedulingStrategy(node.node_id, soft=False)

    port_task = ray.remote(num_cpus=0, max_retries=0)(_free_port_here)
    _, port = ray.get(port_task.options(scheduling_strategy=pinned(nodes[0])).remote())
    gpu = fields["device"] == "cuda"
    spec = _Spec(batch=batch, port=port, out="", host=nodes[0].address or "127.0.0.1",
                 gpu_per_process=gpu, **fields)
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    rank = ray.remote(max_calls=1, max_retries=0, **resources)(_rank_task)
    refs = [rank.options(scheduling_strategy=pinned(node)).remote(i, n, spec, omp)
            for i, node in enumerate(nodes)]
    try:
        reports = ray.get(refs)
    except Exception as exc:  # a rank failed or its node died: the whole step is lost
        for ref in refs:
            ray.cancel(ref, force=True)
        first = str(exc).strip().splitlines()
        raise ChipfitError(f"data-parallel {spec.mode} over {n} node(s) failed: "
                           f"{type(exc).__name__}: {first[-1] if first else ''}"[:400]) from None
    node_type = nodes[0].node_type
    label = (f"torch:cuda x{n} node(s)" if gpu else f"torch:cpu@{spec.threads}t x{n} node(s)")
    extra = (("nodes", str(n)), ("node_type", node_type),
             ("node_ids", ",".join(node.short_id for node in nodes)),
             ("master", f"{spec.host}:{port}"))
    m = step_measurement(spec, n, scaling, net, reports[0], label, extra)
    return replace(m, node_type=node_type, node_id=nodes[0].node_id)
