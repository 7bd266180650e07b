"""The execution seam: run jobs somewhere and hand back each result as it completes.

An executor turns jobs into ``(job, measurement)`` pairs, in completion order. Failures are
values (a measurement whose status says what went wrong), so a suite always goes on; only a
user mistake (:class:`~chipfit.errors.UsageError`) or Ctrl-C stops it. Closing the iterator
early (Ctrl-C in the driver) stops whatever is still running.

=============  ==========================================================================
inline         this process, one job after another (the default; no isolation)
subprocess     a fresh process per (backend, device) group, with a per-job timeout
ray            a Ray cluster (or a local Ray instance): each job where its resources are
=============  ==========================================================================
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from chipfit.results import Discovery, Measurement
from chipfit.spec import Job

__all__ = ["Executor", "Outcome", "Placement"]

Outcome = tuple[Job, Measurement]


@dataclass(frozen=True)
class Placement:
    """Where a fleet runs a copy of the plan: a node type (any of its nodes) or one node."""

    node_type: str
    node_id: str | None = None
    devices: tuple[str, ...] = ()  # the device refs its nodes have (``torch:cpu`` ...)


class Executor(abc.ABC):
    """Runs jobs and yields each one's measurement as soon as it exists."""

    name: str = ""

    def discover(self, backends: Iterable[str] | None = None) -> Discovery:
        """The devices jobs can be sent to (this machine's, unless the executor has others)."""
        from chipfit.discovery import discover

        return discover(backends)

    @abc.abstractmethod
    def run(self, jobs: Sequence[Job], discovery: Discovery) -> Iterator[Outcome]:
        """Yield ``(job, measurement)`` for every job, in the order they complete."""

    def placements(self) -> list[Placement]:
        """Where a fleet measures the plan (once per entry); [] runs each job once."""
        return []

    def settings(self) -> dict[str, str]:
        """What a run should record about where it ran."""
        return {"executor": self.name}

    def close(self) -> None:  # noqa: B027 - most executors hold nothing between runs
        """Release what the executor started (processes, a local Ray instance)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
