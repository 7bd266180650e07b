"""A fleet on Ray: every job is a Ray task placed where its resources are.

- Resources per job: a CUDA/ROCm/JAX GPU job asks for ``num_gpus=1`` (Ray then makes that GPU
  the task's only visible one, so it runs as index 0 there), a TPU job for the ``TPU``
  resource, a CPU job for one CPU; ``labels`` (a Ray label selector) restrict every job to
  nodes of one kind.
- CPU jobs run one at a time: two at once on one node would share its cores and spoil both
  timings. GPU and TPU jobs are kept apart by Ray's own accounting of those resources.
- Devices are discovered on each node (a pinned task per node); each job discovers its own
  backend again where it lands, and its measurement records the node.
- Results stream back as tasks finish (``ray.wait``); only the driver writes them anywhere.
- Each task runs in a fresh worker process (``max_calls=1``), isolated like the subprocess
  executor. A worker that dies mid-job is retried once; a second death, or no result within
  the job timeout, is recorded as a failed measurement and the suite goes on.

With ``fleet=True`` it is a fleet (``--ray-address``): every node is probed and grouped into
node types (:mod:`chipfit.execute.fleet`), the plan runs once per node type (``every_node``:
once per node) with each job pinned to its node (``NodeAffinitySchedulingStrategy``,
``soft=False``), CPU jobs one at a time per node rather than cluster-wide, and a node lost
mid-run hands its jobs to another node of its type or has them recorded as ``lost``. Each
node's probe is kept in the cluster's own key-value store (Ray's internal KV) for as long as
its raylet lives, so a later run on the same cluster (another ``chipfit bench``) probes only
the nodes that joined since; a restarted node has a new id and is probed again.

Without ``address`` a local Ray instance is started (and stopped at the end); with one, the
driver joins that cluster (``auto`` finds a running one). Ray itself is an optional
dependency: only this executor imports it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from chipfit.errors import BackendUnavailableError, InvalidInputError
from chipfit.execute._worker import Runner, failed, ray_discover, ray_probe, ray_task, tagged
from chipfit.execute.base import Executor, Outcome, Placement
from chipfit.execute.fleet import Node, group_nodes, node_facts, node_from_probe, types_of
from chipfit.results import DeviceInfo, Discovery, Problem
from chipfit.spec import Job

__all__ = ["CONNECT_TIMEOUT_S", "RayExecutor", "check_reachable", "job_options",
           "merge_discoveries", "parse_address"]

_GPU_PLATFORMS = ("cuda", "rocm", "gpu")

#: How long the driver waits to reach a cluster's port before saying it cannot: ray.init
#: itself retries for minutes (and holds off SIGTERM meanwhile) when nothing listens there.
CONNECT_TIMEOUT_S = 5.0
_RAY_CLIENT_PORT = 10001
_ADDRESS = re.compile(r"^(?:(?P<scheme>ray)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]"
                      r"[A-Za-z0-9._-]{0,252})(?::(?P<port>[0-9]{1,5}))?$")


def parse_address(address: str) -> tuple[str, int] | None:
    """The host and port of a Ray cluster address (``HOST:PORT``, ``ray://HOST[:PORT]``), or
    None for ``auto`` and ``local`` (found or started by Ray). A malformed address is one
    line (InvalidInputError), before anything connects."""
    text = str(address).strip()
    if text in ("auto", "local"):
        return None
    match = _ADDRESS.match(text)
    port = match["port"] if match else None
    if match and port is None and match["scheme"]:
        port = str(_RAY_CLIENT_PORT)
    if not match or port is None or not 1 <= int(port) <= 65535:
        raise InvalidInputError(f"malformed Ray address {address!r}: use HOST:PORT (a `ray start "
                                "--head`, e.g. 10.0.0.5:6379), ray://HOST:10001 or auto")
    return match["host"].strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (BackendUnavailableError, one line) a cluster whose port does not accept a TCP
    connection and answer as a gRPC server within ``timeout_s`` in all, name lookup included;
    ``auto`` is checked at the address Ray would pick. Ray's own connect would retry for
    minutes (and hold off SIGTERM meanwhile)."""
    target = _auto_address() if str(address).strip() == "auto" else str(address)
    where = parse_address(target) if target else None
    if where is None:
        return
    host, port = where
    deadline = time.monotonic() + timeout_s
    found: list[Any] = []

    def lookup() -> None:  # getaddrinfo has no timeout of its own
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    worker = threading.Thread(target=lookup, daemon=True, name="chipfit-ray-lookup")
    worker.start()
    worker.join(timeout_s)
    why = "the host name did not resolve in time"
    if found and isinstance(found[0], OSError):
        why = f"unknown host ({found[0].strerror or found[0]})"
    elif found:
        for family, kind, proto, _, sockaddr in found[0]:
            left = deadline - time.monotonic()
            if left <= 0:
                why = "no answer in time"
                break
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(left)
                    sock.connect(sockaddr)
                    if _speaks_grpc(sock, deadline):
                        return
                    why = "something answers there, but not a Ray cluster (no gRPC)"
                    break
            except TimeoutError:
                why = "no answer in time"
            except OSError as exc:
                why = exc.strerror or str(exc)
    raise BackendUnavailableError(f"cannot reach the Ray cluster at {address} ({host}:{port}: "
                                  f"{why.lower()}, waited at most {timeout_s:g} s); is `ray "
                                  "start --head` running there?")


#: HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray
#: client server) answers with a SETTINGS frame of its own.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x04


def _speaks_grpc(sock: socket.socket, deadline: float) -> bool:
    """Whether the peer on ``sock`` answers an HTTP/2 preface with a SETTINGS frame before
    ``deadline``: Ray's ports speak gRPC; a port that merely accepts (another service) would
    leave ray.init waiting for minutes."""
    try:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        sock.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:  # a timeout included: no answer is not gRPC
        return False
    return head[3] == _SETTINGS


def _auto_address() -> str | None:
    """The address ``ray.init("auto")`` would join ($RAY_ADDRESS, else this machine's latest
    cluster), or None where Ray finds none (it then says so itself, at once)."""
    try:
        from ray._private.services import get_ray_address_from_environment

        found = get_ray_address_from_environment("auto", None)
    except Exception:  # noqa: BLE001 - no cluster, or a Ray without this helper: Ray decides
        return None
    return found if isinstance(found, str) and found not in ("auto", "local") else None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError("the ray executor needs Ray, which is not installed; "
                                      "install it with: pip install 'chipfit[fleet]'") from None
    return ray


def job_options(job: Job, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Ray task options for ``job``: the resources its device needs, and the label selector."""
    platform = job.device.platform
    if platform in _GPU_PLATFORMS:
        options: dict[str, Any] = {"num_gpus": 1}
    elif platform == "tpu":
        options = {"num_cpus": 1, "resources": {"TPU": 1}}
    else:
        options = {"num_cpus": 1}
    if labels:
        options["label_selector"] = dict(labels)
    return options


def _lane(job: Job) -> str:
    """Jobs in one lane never overlap: every CPU job shares one; accelerators are Ray's."""
    return "cpu" if job.device.is_cpu else f"job:{id(job)}"


def merge_discoveries(found: Iterable[tuple[str, Discovery]]) -> Discovery:
    """One discovery for a cluster: each device once, with the nodes that have it."""
    devices: dict[str, DeviceInfo] = {}
    hosts: dict[str, list[str]] = {}
    problems: dict[tuple[str, str], Problem] = {}
    for host, discovery in found:
        for d in discovery.devices:
            devices.setdefault(d.ref, d)
            hosts.setdefault(d.ref, []).append(host)
        for p in discovery.problems:
            problems.setdefault((p.scope, p.reason), Problem(p.scope, f"on {host}: {p.reason}"))
    merged = tuple(replace(d, details=d.details + (("ray_nodes", ",".join(hosts[ref])),))
                   for ref, d in devices.items())
    return Discovery(merged, tuple(problems.values()))


@dataclass
class _Flight:
    job: Job
    attempt: int
    deadline: float
    node: Node | None = None  # a fleet job's node
    lane: str = ""
    moved_from: str = ""  # the lost node a fleet job was moved away from


class RayExecutor(Executor):
    """Fan jobs out over a Ray cluster; see the module docstring for the rules."""

    name = "ray"

    def __init__(self, address: str | None = None, *, labels: Mapping[str, str] | None = None,
                 timeout_s: float | None = None, runner: Runner | None = None,
                 retries: int = 1, init_options: Mapping[str, Any] | None = None,
                 fleet: bool = False, every_node: bool = False,
                 nodes: Sequence[Node] | None = None) -> None:
        """``fleet``: measure the plan once per node type (``every_node``: once per node),
        each job pinned to its node; see :mod:`chipfit.execute.fleet` for node types.
        ``nodes``: an earlier probe's nodes (:meth:`nodes`), to skip probing again."""
        from chipfit.execute.subprocess import DEFAULT_JOB_TIMEOUT_S

        self.fleet, self.every_node = fleet or every_node, every_node
        self._nodes: list[Node] | None = list(nodes) if nodes is not None else None
        self._dead: set[str] = set()
        self._probed: dict[str, Discovery] = {}
        self.probed_nodes: tuple[str, ...] = ()  # the node ids the last probe asked itself

        if address is not None:
            parse_address(address)  # malformed: refused now, not when the first job runs
        self.address, self.labels, self.runner, self.retries = address, labels, runner, retries
        self.timeout_s = DEFAULT_JOB_TIMEOUT_S if timeout_s is None else float(timeout_s)
        if self.timeout_s <= 0:
            raise InvalidInputError("the job timeout must be positive (seconds)")
        self.init_options = dict(init_options or {})
        self._started = False
        self._omp = os.environ.get("OMP_NUM_THREADS")

    def settings(self) -> dict[str, str]:
        out = {"executor": self.name, "address": self.address or "local",
               "job_timeout_s": f"{self.timeout_s:g}"}
        if self.labels:
            out["labels"] = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        if self.fleet:
            out["fleet"] = "every-node" if self.every_node else "node-type"
            out["node_types"] = ",".join(sorted({n.node_type for n in self.nodes()}))
            out["fleet_nodes"] = json.dumps([node_facts(n) for n in self.nodes()])
        return out

    def _connect(self) -> Any:
        if self.address and not self._started:  # seconds, not the minutes ray.init retries
            check_reachable(self.address)
        ray = _ray()
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": True, **self.init_options}
            try:
                # "local": a new local Ray instance. Ray's default would join the latest
                # cluster started on this machine (/tmp/ray/ray_current_cluster), anyone's.
                ray.init(address=self.address or "local", **options)
            except ConnectionError as exc:
                raise BackendUnavailableError(f"cannot reach the Ray cluster at {self.address}: "
                                              f"{exc}; is `ray start` running there?") from None
            self._started = True
        return ray

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    # ---- discovery -----------------------------------------------------------------------
    def discover(self, backends: Iterable[str] | None = None) -> Discovery:
        """Devices of every alive node, each found by a task pinned to that node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self.fleet:
            return self._probe(backends)
        ray = self._connect()
        task = ray.remote(max_calls=1, max_retries=1, num_cpus=0)(ray_discover)
        wanted = list(backends) if backends is not None else None
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node["NodeID"], soft=False)).remote(self._omp, wanted)
                for node in ray.nodes() if node.get("Alive")]
        return merge_discoveries(ray.get(refs))

    # ---- the fleet's nodes ------------------------------------------------------------------
    def _probe(self, backends: Iterable[str] | None = None) -> Discovery:
        """Probe every alive node (pinned), group them into types; the merged discovery.

        A node's probe is kept in the cluster's own key-value store (Ray's internal KV, keyed
        by node id, chipfit version, backends and ``OMP_NUM_THREADS``): what a node is cannot
        change while its raylet lives (a restarted node has a new id), so a later executor,
        in this process or another (a second ``chipfit bench`` on the same cluster), probes
        only the nodes no one has probed yet. ``probed_nodes``: the ids this call probed.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        wanted = list(backends) if backends is not None else None
        cached = self._probed.get(repr(wanted))
        if cached is not None:  # probing imports every framework on every node: once is enough
            return cached
        ray = self._connect()
        everyone = ray.nodes()
        alive = [n for n in everyone if n.get("Alive")]
        _forget_probes(n["NodeID"] for n in everyone if not n.get("Alive"))
        probes = {n["NodeID"]: p for n in alive
                  if (p := _kept_probe(n["NodeID"], wanted, self._omp)) is not None}
        todo = [n for n in alive if n["NodeID"] not in probes]
        task = ray.remote(max_calls=1, max_retries=1, num_cpus=0)(ray_probe)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(self._omp, wanted) for n in todo]
        for n, p in zip(todo, ray.get(refs), strict=True):
            probes[n["NodeID"]] = p
            _keep_probe(n["NodeID"], wanted, self._omp, p)
        self.probed_nodes = tuple(n["NodeID"] for n in todo)
        self._nodes = group_nodes(node_from_probe(n, probes[n["NodeID"]]) for n in alive)
        by_id = {n.node_id: n for n in self._nodes}
        self._probed[repr(wanted)] = merge_discoveries(
            (f"{by_id[n['NodeID']].hostname}/{by_id[n['NodeID']].node_type}",
             probes[n["NodeID"]]["discovery"]) for n in alive)
        return self._probed[repr(wanted)]

    def nodes(self) -> list[Node]:
        """The cluster's nodes with their types (probed once, at the first call)."""
        if self._nodes is None:
            self._probe()
        return list(self._nodes or ())

    def placements(self) -> list[Placement]:
        """One placement per node type (or per node with ``every_node``); [] unless a fleet.

        Nodes without a CPU or accelerator for jobs (a head started with ``--num-cpus 0``, as
        KubeRay advises) run nothing.
        """
        if not self.fleet:
            return []
        usable = [n for n in self.nodes() if n.cpus >= 1 or n.accelerators]
        if self.every_node:
            return [Placement(n.node_type, n.node_id, n.devices) for n in usable]
        return [Placement(t, None, tuple(sorted({d for n in group for d in n.devices})))
                for t, group in types_of(usable).items()]

    def _node_for(self, job: Job, exclude: str = "") -> Node | None:
        """An alive node for a fleet job: its own, else the first of its type (sorted by id)."""
        candidates = [n for n in self.nodes() if n.node_id not in self._dead
                      and n.node_id != exclude and (n.cpus >= 1 or n.accelerators)]
        if job.node_id and not exclude:
            return next((n for n in candidates if n.node_id == job.node_id), None)
        return next((n for n in candidates if n.node_type == job.node_type), None)

    # ---- running -------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], discovery: Discovery) -> Iterator[Outcome]:
        if any(job.node_type is not None for job in jobs):
            yield from self._run_fleet(jobs)
            return
        ray = self._connect()
        task = ray.remote(max_calls=1, max_retries=0)(ray_task)
        lanes: dict[str, deque[Job]] = {}
        for job in jobs:
            lanes.setdefault(_lane(job), deque()).append(job)
        flights: dict[Any, _Flight] = {}
        try:
            for lane in lanes.values():
                self._submit(task, lane.popleft(), 1, flights)
            while flights:
                for ref, late in self._ready(ray, flights):
                    outcome = self._collect(ray, task, ref, late, flights)
                    if outcome is None:
                        continue  # resubmitted: the job keeps its lane
                    yield outcome
                    lane = lanes[_lane(outcome[0])]
                    if lane:
                        self._submit(task, lane.popleft(), 1, flights)
        finally:
            for ref in flights:
                ray.cancel(ref, force=True)

    def _submit(self, task: Any, job: Job, attempt: int, flights: dict[Any, _Flight]) -> None:
        ref = task.options(**job_options(job, self.labels)).remote(job, self.runner, self._omp)
        flights[ref] = _Flight(job, attempt, time.monotonic() + self.timeout_s)

    def _ready(self, ray: Any, flights: dict[Any, _Flight]) -> list[tuple[Any, bool]]:
        """Finished tasks (False), and those past their deadline, cancelled (True)."""
        soonest = min(f.deadline for f in flights.values())
        done, _ = ray.wait(list(flights), num_returns=1,
                           timeout=max(0.0, soonest - time.monotonic()))
        now = time.monotonic()
        late = [r for r, f in flights.items() if f.deadline <= now and r not in done]
        for ref in late:
            ray.cancel(ref, force=True)
        return [(r, False) for r in done] + [(r, True) for r in late]

    def _collect(self, ray: Any, task: Any, ref: Any, late: bool,
                 flights: dict[Any, _Flight]) -> Outcome | None:
        """The job's outcome, or None when a dead worker's job was sent out again."""
        flight = flights.pop(ref)
        job = flight.job
        if late:
            return job, tagged(failed(job, "timeout", f"no result after {self.timeout_s:g} s; the "
                                                      "Ray task was cancelled (a hung kernel?)"),
                               executor=self.name, attempts=str(flight.attempt))
        try:
            m = ray.get(ref)
        except _deaths(ray) as exc:
            if flight.attempt <= self.retries:
                self._submit(task, job, flight.attempt + 1, flights)
                return None
            note = (f"the Ray worker died on all {flight.attempt} attempts "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            return job, tagged(failed(job, "error", note), executor=self.name,
                               attempts=str(flight.attempt))
        except ray.exceptions.RayTaskError as exc:  # a bug in the worker code, not a death
            cause = exc.cause if exc.cause is not None else exc
            note = f"{type(cause).__name__}: {str(cause).splitlines()[0][:240]}"
            return job, tagged(failed(job, "error", note), executor=self.name,
                               attempts=str(flight.attempt))
        return job, tagged(m, attempts=str(flight.attempt))

    # ---- a fleet: every job pinned to a node ---------------------------------------------
    def _run_fleet(self, jobs: Sequence[Job]) -> Iterator[Outcome]:
        """Each job on a node of its type (or its own node), pinned with ``soft=False``.

        CPU jobs of one node form one lane (one at a time there: they would share its cores);
        nodes run side by side. When a node dies, its jobs move to another alive node of the
        same type; with none left they are recorded as ``lost`` with the reason (``--resume``
        measures them once such a node is back). A worker crash on a live node is retried
        there once, as without a fleet.
        """
        ray = self._connect()
        task = ray.remote(max_calls=1, max_retries=0)(ray_task)
        queues: dict[str, deque[tuple[Job, str]]] = {}
        nodes: dict[str, Node] = {}
        for job in jobs:
            node = self._node_for(job)
            if node is None:
                yield self._lost(job, None, f"no alive node of type {job.node_type}"
                                 + (f" ({job.node_id[:12]})" if job.node_id else ""))
                continue
            nodes[node.node_id] = node
            queues.setdefault(_fleet_lane(job, node), deque()).append((job, ""))
        flights: dict[Any, _Flight] = {}
        busy: set[str] = set()
        try:
            for lane in list(queues):
                self._next_in_lane(task, lane, queues, busy, flights, nodes)
            while flights:
                for ref, late in self._ready(ray, flights):
                    flight = flights.pop(ref)
                    yield from self._settle(ray, task, ref, late, flight, queues, busy, flights,
                                            nodes)
                    if flight.lane not in busy or flight.lane in {f.lane for f in flights.values()}:
                        continue
                    busy.discard(flight.lane)
                    self._next_in_lane(task, flight.lane, queues, busy, flights, nodes)
        finally:
            for ref in flights:
                ray.cancel(ref, force=True)

    def _next_in_lane(self, task: Any, lane: str, queues: dict[str, deque[tuple[Job, str]]],
                      busy: set[str], flights: dict[Any, _Flight], nodes: dict[str, Node],
                      attempt: int = 1) -> None:
        queue = queues.get(lane)
        if not queue or lane in busy:
            return
        job, moved_from = queue.popleft()
        node = nodes[lane.split("|")[0]]
        self._submit_pinned(task, job, node, lane, attempt, flights, moved_from)
        busy.add(lane)

    def _submit_pinned(self, task: Any, job: Job, node: Node, lane: str, attempt: int,
                       flights: dict[Any, _Flight], moved_from: str = "") -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = job_options(job, self.labels)
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        ref = task.options(**options).remote(job, self.runner, self._omp)
        flights[ref] = _Flight(job, attempt, time.monotonic() + self.timeout_s, node, lane,
                               moved_from)

    def _settle(self, ray: Any, task: Any, ref: Any, late: bool, flight: _Flight,
                queues: dict[str, deque[tuple[Job, str]]], busy: set[str],
                flights: dict[Any, _Flight], nodes: dict[str, Node]) -> Iterator[Outcome]:
        """The outcome(s) of one finished fleet task; a dead node's jobs move or are lost."""
        job, node = flight.job, flight.node
        assert node is not None
        where = {"executor": self.name, "attempts": str(flight.attempt)}
        if job.node_id:  # --every-node: the node it was planned on (its key), kept if it moved
            where["planned_node"] = job.node_id
        if flight.moved_from:
            where["moved_from"] = flight.moved_from
        if late:
            note = f"no result after {self.timeout_s:g} s; the Ray task was cancelled"
            yield job, self._placed(failed(job, "timeout", note), node, **where)
            return
        try:
            m = ray.get(ref)
        except _deaths(ray) + _unschedulable(ray) as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            if self._node_alive(ray, node.node_id) and not isinstance(exc, _unschedulable(ray)):
                if flight.attempt <= self.retries:  # a worker crash: once more on that node
                    self._submit_pinned(task, job, node, flight.lane, flight.attempt + 1,
                                        flights, flight.moved_from)
                    return
                note = f"the Ray worker died on all {flight.attempt} attempts ({reason})"
                yield job, self._placed(failed(job, "error", note), node, **where)
                return
            yield from self._node_lost(task, flight, reason, queues, busy, flights, nodes)
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            note = f"{type(cause).__name__}: {str(cause).splitlines()[0][:240]}"
            yield job, self._placed(failed(job, "error", note), node, **where)
            return
        yield job, self._placed(m, node, **{k: v for k, v in where.items() if k != "executor"})

    def _node_lost(self, task: Any, flight: _Flight, reason: str,
                   queues: dict[str, deque[tuple[Job, str]]], busy: set[str],
                   flights: dict[Any, _Flight], nodes: dict[str, Node]) -> Iterator[Outcome]:
        """Node of ``flight`` died: move its job and its lane's queue to a sibling, or lose them."""
        dead = flight.node
        assert dead is not None
        self._dead.add(dead.node_id)
        waiting = [(flight.job, flight.moved_from)] + list(queues.pop(flight.lane, ()))
        busy.discard(flight.lane)
        sibling = self._node_for(flight.job, exclude=dead.node_id)
        if sibling is None:
            for job, _ in waiting:
                yield self._lost(job, dead, f"node {dead.short_id} ({dead.hostname}) of type "
                                 f"{dead.node_type} died mid-run ({reason}) and no other node "
                                 "of that type is alive; --resume measures it when one is")
            return
        nodes[sibling.node_id] = sibling
        for job, _ in waiting:
            lane = _fleet_lane(job, sibling)
            queues.setdefault(lane, deque()).append((job, dead.short_id))
            self._next_in_lane(task, lane, queues, busy, flights, nodes)

    def _lost(self, job: Job, node: Node | None, reason: str) -> Outcome:
        m = failed(job, "lost", f"lost: {reason}")
        m = replace(m, node_type=job.node_type, node_id=node.node_id if node else job.node_id)
        pairs = {"planned_node": job.node_id} if job.node_id else {}
        return job, tagged(m, executor=self.name, **pairs)

    @staticmethod
    def _placed(m: Any, node: Node, **pairs: str) -> Any:
        """``m`` tagged with the node it ran on and that node's type."""
        return tagged(replace(m, node_id=node.node_id, node_type=node.node_type), **pairs)

    @staticmethod
    def _node_alive(ray: Any, node_id: str) -> bool:
        return any(n["NodeID"] == node_id and n.get("Alive") for n in ray.nodes())


# ---- probes kept in the cluster (Ray's internal KV) ------------------------------------------
_KV_NAMESPACE = "chipfit"


def _kv() -> Any:
    """Ray's internal KV of the connected cluster, or None (not connected, or an older Ray)."""
    try:
        from ray.experimental import internal_kv

        return internal_kv if internal_kv._internal_kv_initialized() else None
    except Exception:  # noqa: BLE001 - the cache is a saving, never a reason to fail
        return None


def _probe_key(node_id: str, wanted: list[str] | None, omp: str | None) -> bytes:
    from chipfit._version import __version__

    return f"probe/{node_id}/{json.dumps([__version__, wanted, omp])}".encode()


def _kept_probe(node_id: str, wanted: list[str] | None, omp: str | None) -> dict[str, Any] | None:
    """A probe of this node kept in the cluster's KV by an earlier executor, or None."""
    kv = _kv()
    if kv is None:
        return None
    try:
        raw = kv._internal_kv_get(_probe_key(node_id, wanted, omp), namespace=_KV_NAMESPACE)
        if not raw:
            return None
        data = json.loads(raw)
        probe = {"hostname": str(data["hostname"]), "cpu_model": data["cpu_model"] and str(data["cpu_model"]),
                 "cores": None if data["cores"] is None else int(data["cores"]),
                 "memory_bytes": None if data["memory_bytes"] is None else int(data["memory_bytes"]),
                 "discovery": Discovery.checked(data["discovery"], "a kept node probe")}
    except Exception:  # noqa: BLE001 - damaged or from elsewhere: probe the node again
        return None
    return probe


def _keep_probe(node_id: str, wanted: list[str] | None, omp: str | None,
                probe: Mapping[str, Any]) -> None:
    kv = _kv()
    if kv is None:
        return
    discovery = probe["discovery"]
    data = {**{k: probe.get(k) for k in ("hostname", "cpu_model", "cores", "memory_bytes")},
            "discovery": {"devices": [asdict(d) for d in discovery.devices],
                          "problems": [asdict(p) for p in discovery.problems]}}
    try:
        kv._internal_kv_put(_probe_key(node_id, wanted, omp), json.dumps(data).encode(),
                            overwrite=True, namespace=_KV_NAMESPACE)
    except Exception:  # noqa: BLE001 - not kept: the next executor probes it again
        pass


def _forget_probes(node_ids: Iterable[str]) -> None:
    """Drop the kept probes of dead nodes (their ids never come back)."""
    kv = _kv()
    for node_id in node_ids if kv is not None else ():
        try:
            kv._internal_kv_del(f"probe/{node_id}/".encode(), del_by_prefix=True,
                                namespace=_KV_NAMESPACE)
        except Exception:  # noqa: BLE001
            return


def _fleet_lane(job: Job, node: Node) -> str:
    """CPU jobs share their node's lane; each accelerator job has its own (Ray counts GPUs)."""
    return f"{node.node_id}|cpu" if job.device.is_cpu else f"{node.node_id}|job:{id(job)}"


def _unschedulable(ray: Any) -> tuple[type[BaseException], ...]:
    """A task pinned to a node that is gone (Ray cannot place it anywhere else)."""
    ex = ray.exceptions
    return tuple(getattr(ex, name) for name in ("TaskUnschedulableError", "NodeDiedError")
                 if hasattr(ex, name))


def _deaths(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a task whose worker process or node went away."""
    ex = ray.exceptions
    return (ex.WorkerCrashedError, ex.NodeDiedError, ex.LocalRayletDiedError, ex.ObjectLostError,
            ex.OutOfMemoryError, ex.RayActorError)
