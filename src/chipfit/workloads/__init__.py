"""Workload registry: built-in workloads by name."""

from __future__ import annotations

import importlib

from chipfit.errors import UnknownNameError
from chipfit.workloads.base import Prepared, Workload

__all__ = ["Prepared", "Workload", "all_workloads", "builtin_workloads", "get_workload"]


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
