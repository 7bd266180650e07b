"""The worker side of isolated execution: what a subprocess or a Ray task runs.

Both executors call :func:`run_here` on the far side, so a job measures the same way inline,
in a fresh process, or on another machine of a Ray cluster. Devices are discovered where the
job runs, never taken on trust from the driver's machine.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chipfit.errors import UsageError
from chipfit.results import Discovery, Measurement
from chipfit.spec import Job

__all__ = ["Runner", "exit_note", "failed", "ray_discover", "ray_probe", "ray_task", "run_here",
           "serve", "tagged"]

Runner = Callable[[Job, Discovery], Measurement]
#: Ray's resource name for each accelerator platform.
_RAY_RESOURCE = {"cuda": "GPU", "rocm": "GPU", "gpu": "GPU", "tpu": "TPU"}


def failed(job: Job, status: str, note: str) -> Measurement:
    """The result of a job that produced no timing (it hung, or its process died)."""
    base = dict(workload=job.workload, size=job.size, device=str(job.device), dtype=job.dtype,
                mode=job.mode, status=status, note=note, stack=job.stack)
    try:
        from chipfit.workloads import get_workload

        cost = get_workload(job.workload).cost(job.size, job.dtype, job.mode)
        return Measurement(flops=cost.flops, bytes_moved=cost.bytes_moved, **base)
    except Exception:  # the cost is a nicety here; the failure is what must be kept
        return Measurement(**base)


def exit_note(code: int | None) -> str:
    """Words for a process exit code: ``exit code -11 (SIGSEGV)``."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def tagged(m: Measurement, **pairs: str) -> Measurement:
    """``m`` with ``pairs`` added to its metadata (where and how it was measured)."""
    return replace(m, metadata=m.metadata + tuple(pairs.items()))


def run_here(job: Job, discovery: Discovery | None = None,
             runner: Runner | None = None) -> Measurement:
    """Measure ``job`` in this process, discovering its backend's devices here if needed."""
    if runner is None:
        from chipfit.execute.job import run_job as runner
    if discovery is None:
        from chipfit.backends import get_backend

        discovery = get_backend(job.device.backend).discover()
    return watched(job, lambda: runner(job, discovery))


def watched(job: Job, work: Callable[[], Measurement]) -> Measurement:
    """``work()``'s measurement with the evidence of contention while it ran."""
    from chipfit.timing.contention import watch

    m, evidence = watch(work, str(job.device), lambda m: m.block_times_s if m.ok else ())
    return replace(m, contended=evidence.contended, contention=evidence.numbers,
                   contention_note=evidence.note)


# ---- subprocess worker ----------------------------------------------------------------------
def serve(conn: Any, discovery: Discovery, runner: Runner | None,
          framework: str | None = None) -> None:
    """Child loop of the subprocess executor: receive jobs, send back one result each.

    ``framework`` (``torch``, ``jax``) is imported before the child says it is ready, so a
    job's timeout counts the job, not the framework's start-up. Messages: the child sends
    ``("ready", pid)``; then for each ``("job", job)`` it answers ``("result", measurement)``,
    or ``("usage", message)`` for a user mistake; ``("stop",)`` ends it. A Ctrl-C reaches the
    whole process group; the parent handles it, so the child just leaves.
    """
    try:
        _preload(framework)
        conn.send(("ready", os.getpid()))
        while True:
            message = conn.recv()
            if message[0] != "job":
                return
            conn.send(_answer(message[1], discovery, runner))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


def _preload(framework: str | None) -> None:
    if framework:
        import importlib

        try:
            if framework == "tensorflow":  # its start-up notices filtered, as in discovery
                from chipfit.backends.tensorflow import import_tensorflow

                import_tensorflow()
            else:
                importlib.import_module(framework)
        except ImportError:  # the job itself will report the framework as missing
            pass


def _answer(job: Job, discovery: Discovery, runner: Runner | None) -> tuple[str, Any]:
    try:
        return "result", run_here(job, discovery, runner)
    except UsageError as exc:
        return "usage", str(exc)
    except Exception as exc:  # a bug outside the measurement: keep it as this job's result
        return "result", failed(job, "error", f"{type(exc).__name__}: {exc}"[:300])


def _restore_omp(value: str | None) -> None:
    if value is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = value


# ---- Ray task -------------------------------------------------------------------------------
def ray_task(job: Job, runner: Runner | None, omp_threads: str | None) -> Measurement:
    """Body of the Ray task: one job on whichever node Ray placed it, tagged with that node.

    Ray sets ``OMP_NUM_THREADS`` to the task's CPU count in its workers; the driver's own value
    (or none) is put back before torch is imported, so ``torch:cpu`` keeps meaning "all cores"
    as it does inline. An accelerator task sees only the GPU or TPU chip Ray assigned it, so
    it runs there as index 0; the measurement keeps the job's device name.
    """
    import ray

    _restore_omp(omp_threads)
    context = ray.get_runtime_context()
    assigned = context.get_accelerator_ids().get(_RAY_RESOURCE.get(job.device.platform, ""), [])
    local = job
    if assigned and job.device.index is not None:
        local = replace(job, device=replace(job.device, index=0))
    m = run_here(local, None, runner)
    pairs = {"executor": "ray", "node": socket.gethostname(),
             "node_id": context.get_node_id()[:12]}
    if assigned:
        pairs["ray_accelerator_ids"] = ",".join(map(str, assigned))
    return tagged(replace(m, device=str(job.device)), **pairs)


def ray_discover(omp_threads: str | None,
                 backends: list[str] | None = None) -> tuple[str, Discovery]:
    """Body of the per-node discovery task: this node's name and devices."""
    _restore_omp(omp_threads)
    from chipfit.discovery import discover

    return socket.gethostname(), discover(backends)


def ray_probe(omp_threads: str | None, backends: list[str] | None = None) -> dict[str, Any]:
    """Body of the fleet's per-node probe: this node's hardware facts and devices."""
    _restore_omp(omp_threads)
    from chipfit.discovery import discover
    from chipfit.hardware.cpu import probe_cpu

    cpu = probe_cpu()
    return {"hostname": socket.gethostname(), "discovery": discover(backends),
            "cpu_model": cpu.name, "cores": cpu.cores, "memory_bytes": cpu.memory_bytes}
