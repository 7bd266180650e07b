"""Isolation: each (backend, device) group runs in a fresh process, each job under a timeout.

A separate process per group keeps CUDA contexts, JAX's memory preallocation and thread pools
from contaminating one another (pyperf and optimum-benchmark isolate the same way). A job that
hangs past its timeout has its process killed and is recorded as ``timeout``; a process that
dies (``os._exit``, a segfault, the OOM killer) is recorded as ``error`` with its exit code.
Either way the group goes on in a new process with its remaining jobs.

Processes are started with the ``spawn`` method: a forked child would inherit the parent's
framework state, which is what isolation is meant to avoid. As with any spawn-based
multiprocessing, a script that uses this executor through the Python API must keep its own
top-level code under ``if __name__ == "__main__":`` (the CLI needs nothing).
"""

from __future__ import annotations

import multiprocessing
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from chipfit.errors import InvalidInputError, UsageError
from chipfit.execute._worker import Runner, exit_note, failed, serve, tagged
from chipfit.execute.base import Executor, Outcome
from chipfit.results import Discovery, Measurement
from chipfit.spec import Job

__all__ = ["DEFAULT_JOB_TIMEOUT_S", "SubprocessExecutor", "groups"]

#: Long enough for a model to build and be timed; short enough that a hung kernel costs minutes.
DEFAULT_JOB_TIMEOUT_S = 300.0
#: Starting Python and importing chipfit and the framework (before any job's clock starts).
_START_TIMEOUT_S = 180.0


def groups(jobs: Sequence[Job]) -> list[list[Job]]:
    """Jobs grouped by device (``torch:cpu`` and ``torch:cpu@1t`` apart), in first-seen order."""
    found: OrderedDict[str, list[Job]] = OrderedDict()
    for job in jobs:
        found.setdefault(str(job.device), []).append(job)
    return list(found.values())


class _Lost(Exception):
    """The worker process hung or died; ``status`` and ``note`` say which."""

    def __init__(self, status: str, note: str) -> None:
        super().__init__(note)
        self.status, self.note = status, note


class _Worker:
    """One child process serving jobs over a pipe."""

    def __init__(self, discovery: Discovery, runner: Runner | None, framework: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, discovery, runner, framework),
                                   daemon=True, name="chipfit-worker")
        self.process.start()
        child.close()  # so a dead child reads as EOF here
        self._receive(_START_TIMEOUT_S, "starting")

    def run(self, job: Job, timeout_s: float) -> Measurement:
        self._conn.send(("job", job))
        kind, value = self._receive(timeout_s, "running")
        if kind == "usage":
            raise UsageError(value)
        return value

    def _receive(self, timeout_s: float, doing: str) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll(min(0.5, max(0.0, deadline - time.monotonic()))):
            if not self.process.is_alive():
                break
            if time.monotonic() >= deadline:
                self.stop()
                raise _Lost("timeout", f"no result after {timeout_s:g} s {doing}; the worker "
                                       "process was killed (a hung kernel?)")
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise _Lost("error", f"the worker process died while {doing} "
                                 f"({exit_note(self.process.exitcode)})") from None

    def stop(self) -> None:
        """End the child: politely if it is idle, by force if it is not."""
        if self.process.is_alive():
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
            self.process.join(1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._conn.close()


class SubprocessExecutor(Executor):
    """One fresh process per (backend, device) group; a per-job timeout; crashes recorded."""

    name = "subprocess"

    def __init__(self, timeout_s: float | None = None, runner: Runner | None = None) -> None:
        self.timeout_s = DEFAULT_JOB_TIMEOUT_S if timeout_s is None else float(timeout_s)
        if self.timeout_s <= 0:
            raise InvalidInputError("the job timeout must be positive (seconds)")
        self.runner = runner

    def settings(self) -> dict[str, str]:
        return {"executor": self.name, "job_timeout_s": f"{self.timeout_s:g}"}

    def run(self, jobs: Sequence[Job], discovery: Discovery) -> Iterator[Outcome]:
        for group in groups(jobs):
            yield from self._run_group(group, discovery)

    def _run_group(self, jobs: list[Job], discovery: Discovery) -> Iterator[Outcome]:
        pending = list(jobs)
        while pending:
            worker = None
            try:
                worker = _Worker(discovery, self.runner, jobs[0].device.backend)
                while pending:
                    m = worker.run(pending[0], self.timeout_s)
                    yield pending.pop(0), tagged(m, executor=self.name)
            except _Lost as lost:  # this job is the casualty; the rest go to a new process
                job = pending.pop(0)
                yield job, tagged(failed(job, lost.status, lost.note), executor=self.name)
            finally:
                if worker is not None:
                    worker.stop()
