"""The inline executor: every job in this process, one after another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from chipfit.execute.base import Executor, Outcome
from chipfit.results import Discovery
from chipfit.spec import Job

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Every job in this process, in plan order (fastest start, no isolation)."""

    name = "inline"

    def __init__(self, runner: Any = None) -> None:
        self.runner = runner

    def run(self, jobs: Sequence[Job], discovery: Discovery) -> Iterator[Outcome]:
        from chipfit.execute._worker import run_here

        for job in jobs:
            yield job, run_here(job, discovery, self.runner)
