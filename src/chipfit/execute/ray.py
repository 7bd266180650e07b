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

Without ``address`` a local Ray instance is started (and stopped at the end); with one, the
driver joins that cluster (``auto`` finds a running one). Ray itself is an optional
dependency: only this executor imports it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chipfit.errors import BackendUnavailableError, InvalidInputError
from chipfit.execute._worker import Runner, failed, ray_discover, ray_task, tagged
from chipfit.execute.base import Executor, Outcome
from chipfit.results import DeviceInfo, Discovery, Problem
from chipfit.spec import Job

__all__ = ["RayExecutor", "job_options", "merge_discoveries"]

_GPU_PLATFORMS = ("cuda", "rocm", "gpu")


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


class RayExecutor(Executor):
    """Fan jobs out over a Ray cluster; see the module docstring for the rules."""

    name = "ray"

    def __init__(self, address: str | None = None, *, labels: Mapping[str, str] | None = None,
                 timeout_s: float | None = None, runner: Runner | None = None,
                 retries: int = 1, init_options: Mapping[str, Any] | None = None) -> None:
        from chipfit.execute.subprocess import DEFAULT_JOB_TIMEOUT_S

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
        return out

    def _connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": True, **self.init_options}
            try:
                ray.init(address=self.address, **options)
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

        ray = self._connect()
        task = ray.remote(max_calls=1, max_retries=1, num_cpus=0)(ray_discover)
        wanted = list(backends) if backends is not None else None
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node["NodeID"], soft=False)).remote(self._omp, wanted)
                for node in ray.nodes() if node.get("Alive")]
        return merge_discoveries(ray.get(refs))

    # ---- running -------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], discovery: Discovery) -> Iterator[Outcome]:
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


def _deaths(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a task whose worker process or node went away."""
    ex = ray.exceptions
    return (ex.WorkerCrashedError, ex.NodeDiedError, ex.LocalRayletDiedError, ex.ObjectLostError,
            ex.OutOfMemoryError, ex.RayActorError)
