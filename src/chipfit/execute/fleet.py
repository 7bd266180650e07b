"""The nodes of a Ray cluster, and the node types they group into.

Every alive node is probed by a task pinned to it (``NodeAffinitySchedulingStrategy``,
``soft=False``): the probe reports the node's own hardware facts (CPU model, cores, memory, the
accelerators its frameworks see). Ray adds what it schedules by: the node's ``CPU`` and
``GPU`` resources, its ``accelerator_type:*`` resources and its labels.

A node type is the set of facts that make two nodes interchangeable for a measurement:
CPU model, Ray CPUs, memory (GiB), accelerators (name x count), plus an explicit name when the
cluster gives one (a ``node_type:NAME`` custom resource, or a ``chipfit.io/node-type`` /
``ray.io/node-group`` label, as KubeRay sets per worker group). On one machine, nodes started
with different ``num_cpus`` or custom resources are different types although they share the
same physical CPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from chipfit.results import Discovery

__all__ = ["Node", "group_nodes", "identity", "node_facts", "node_from_probe", "types_of"]

#: Labels that name a node's type explicitly (first found wins).
TYPE_LABELS = ("chipfit.io/node-type", "ray.io/node-group")
TYPE_RESOURCE_PREFIX = "node_type:"
_GIB = 1024**3


@dataclass(frozen=True)
class Node:
    """One Ray node as probed: hardware facts and what Ray schedules on it."""

    node_id: str
    hostname: str
    address: str
    cpu_model: str
    cores: int | None
    cpus: float  # Ray's CPU resource
    memory_bytes: int | None
    accelerators: tuple[tuple[str, int], ...] = ()  # (name, count)
    explicit_type: str | None = None
    devices: tuple[str, ...] = ()  # device refs discovered there
    node_type: str = ""  # filled by group_nodes

    @property
    def short_id(self) -> str:
        return self.node_id[:12]


def identity(node: Node) -> tuple[object, ...]:
    """What two nodes must share to be one type (the name is derived from it)."""
    memory_gib = round((node.memory_bytes or 0) / _GIB)
    return (node.explicit_type, node.cpu_model, node.cpus, memory_gib, node.accelerators)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _derived_name(node: Node) -> str:
    """``2xa100-sxm4-80gb-16cpu`` or ``cpu-4cpu-xeon-platinum-8375c``: short and readable."""
    cpus = f"{node.cpus:g}cpu"
    if node.accelerators:
        accel = "+".join(f"{n}x{_slug(name)[:24]}" for name, n in node.accelerators)
        return f"{accel}-{cpus}"
    model = _slug(re.sub(r"\((r|tm)\)|cpu|@.*|processor", "", node.cpu_model, flags=re.I))
    return f"cpu-{cpus}" + (f"-{model[:24].strip('-')}" if model else "")


def group_nodes(nodes: Iterable[Node]) -> list[Node]:
    """``nodes`` with their ``node_type`` filled in, ordered by type then node id.

    Nodes with the same :func:`identity` share a type; an explicit name is used as is, other
    names are derived from the facts (``-2``, ``-3`` ... where two identities read alike).
    """
    nodes = list(nodes)
    names: dict[tuple[object, ...], str] = {}
    taken: set[str] = set()
    for node in sorted(nodes, key=lambda n: n.node_id):
        key = identity(node)
        if key in names:
            continue
        base = node.explicit_type or _derived_name(node)
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}-{k}"
        names[key] = name
        taken.add(name)
    typed = [replace(n, node_type=names[identity(n)]) for n in nodes]
    return sorted(typed, key=lambda n: (n.node_type, n.node_id))


def _explicit_type(resources: Mapping[str, float], labels: Mapping[str, str]) -> str | None:
    for key in TYPE_LABELS:
        if labels.get(key):
            return str(labels[key])
    named = sorted(k[len(TYPE_RESOURCE_PREFIX):] for k in resources
                   if k.startswith(TYPE_RESOURCE_PREFIX))
    return named[0] if named else None


def _accelerators(discovery: Discovery, resources: Mapping[str, float]) -> tuple[tuple[str, int], ...]:
    """Accelerators the node's frameworks found; else what Ray was told (``GPU`` and
    ``accelerator_type:X`` resources), so a node with no framework installed still counts."""
    found: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for d in discovery.devices:
        if d.kind in ("gpu", "tpu") and (d.platform, d.ref.split(":")[-1]) not in seen:
            seen.add((d.platform, d.ref.split(":")[-1]))
            found[d.name] = found.get(d.name, 0) + 1
    if found:
        # several backends see the same chips: count the chips once per name
        return tuple(sorted(found.items()))
    gpus = int(resources.get("GPU", 0))
    kinds = [k.partition(":")[2] for k in resources if k.startswith("accelerator_type:")]
    if gpus:
        return ((kinds[0] if kinds else "GPU", gpus),)
    tpus = int(resources.get("TPU", 0))
    return (("TPU", tpus),) if tpus else ()


def node_from_probe(ray_node: Mapping[str, object], probe: Mapping[str, object]) -> Node:
    """A :class:`Node` from ``ray.nodes()``' entry and the pinned probe's answer."""
    resources = dict(ray_node.get("Resources") or {})  # type: ignore[call-overload]
    labels = dict(ray_node.get("Labels") or {})  # type: ignore[call-overload]
    discovery: Discovery = probe["discovery"]  # type: ignore[assignment]
    return Node(node_id=str(ray_node["NodeID"]), hostname=str(probe["hostname"]),
                address=str(ray_node.get("NodeManagerAddress", "")),
                cpu_model=str(probe.get("cpu_model") or "unknown CPU"),
                cores=probe.get("cores"),  # type: ignore[arg-type]
                cpus=float(resources.get("CPU", 0)),
                memory_bytes=probe.get("memory_bytes"),  # type: ignore[arg-type]
                accelerators=_accelerators(discovery, resources),
                explicit_type=_explicit_type(resources, labels),
                devices=tuple(d.ref for d in discovery.devices))


def types_of(nodes: Sequence[Node]) -> dict[str, list[Node]]:
    """Nodes by type name, in :func:`group_nodes` order."""
    out: dict[str, list[Node]] = {}
    for node in nodes:
        out.setdefault(node.node_type, []).append(node)
    return out


def node_facts(node: Node) -> dict[str, object]:
    """What a run keeps about a node (plain values: stored in the run's settings as JSON)."""
    return {"node_id": node.node_id, "hostname": node.hostname, "node_type": node.node_type,
            "cpu_model": node.cpu_model, "cores": node.cores, "cpus": node.cpus,
            "memory_bytes": node.memory_bytes,
            "accelerators": [list(a) for a in node.accelerators]}
