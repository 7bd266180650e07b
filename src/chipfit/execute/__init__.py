"""Executors: where jobs run (see :mod:`chipfit.execute.base` for the seam).

:func:`get_executor` picks one by name; each imports only when chosen, so the subprocess and
Ray machinery costs nothing to a run that does not use it. ``job.py`` measures one job and
serves every executor.
"""

from __future__ import annotations

from typing import Any

from chipfit.errors import UnknownNameError
from chipfit.execute.base import Executor

__all__ = ["EXECUTORS", "get_executor"]

EXECUTORS = ("inline", "subprocess", "ray")


def get_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name`` (see :data:`EXECUTORS`); options go to its constructor."""
    if name == "inline":
        from chipfit.execute.inline import InlineExecutor

        return InlineExecutor(**options)
    if name == "subprocess":
        from chipfit.execute.subprocess import SubprocessExecutor

        return SubprocessExecutor(**options)
    if name == "ray":
        from chipfit.execute.ray import RayExecutor

        return RayExecutor(**options)
    raise UnknownNameError("executor", name, EXECUTORS)
