"""Workload registry: built-in workloads by name."""

from __future__ import annotations

import importlib
import math
from functools import lru_cache

from chipfit.errors import UnknownNameError
from chipfit.workloads.base import Prepared, Workload

__all__ = ["Prepared", "Workload", "all_workloads", "builtin_workloads", "get_workload",
           "size_position"]


# Modules that define built-in workloads; each exposes workloads() -> list[Workload] and must
# not import a framework at module level.
_MODULES = ("matmul", "elementwise", "nets", "models", "detection", "seq2seq", "speech")


def _builtin() -> list[Workload]:
    found: list[Workload] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"chipfit.workloads.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"chipfit.workloads.{name}":
                raise
            continue  # not part of this build
        found += module.workloads()
    return found


_REGISTRY: dict[str, Workload] = {}


def all_workloads() -> list[Workload]:
    if not _REGISTRY:
        _REGISTRY.update({w.name: w for w in _builtin()})
    return list(_REGISTRY.values())


def builtin_workloads() -> list[Workload]:
    """The workloads chipfit ships, without any registered since (a user's model that
    ``advise`` ran, a plugin)."""
    names = {w.name for w in _builtin()}
    return [w for w in all_workloads() if w.name in names]


def get_workload(name: str) -> Workload:
    for workload in all_workloads():
        if workload.name == name:
            return workload
    raise UnknownNameError("workload", name, [w.name for w in all_workloads()])


def register(workload: Workload) -> None:
    """Add a workload (user models, plugins) under its name."""
    all_workloads()
    _REGISTRY[workload.name] = workload


@lru_cache(maxsize=4096)
def size_position(workload: str, size: str) -> float:
    """Where ``size`` lies on ``workload``'s axis (matmul's ``MxK@KxN``: the equivalent
    square side), else the size read as a count, else nan: the position the crossover
    analysis (pure) is handed by its callers."""
    from chipfit.errors import ChipfitError
    from chipfit.spec import parse_count

    try:
        return float(get_workload(workload).size_value(size))
    except (ChipfitError, ValueError):
        pass
    try:
        return float(parse_count(size))
    except ChipfitError:
        return math.nan
