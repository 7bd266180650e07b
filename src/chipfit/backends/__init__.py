"""Backend registry: the frameworks chipfit can drive, in priority order.

Importing this package imports no framework; each backend imports its framework only when
asked to discover or open a device.
"""

from __future__ import annotations

from chipfit.backends.base import Backend, Session
from chipfit.errors import UnknownNameError

__all__ = ["Backend", "Session", "all_backends", "get_backend"]


def _registry() -> dict[str, Backend]:
    from chipfit.backends.jax import JaxBackend
    from chipfit.backends.tensorflow import TensorflowBackend
    from chipfit.backends.torch import TorchBackend

    backends: list[Backend] = [TorchBackend(), JaxBackend(), TensorflowBackend()]
    return {b.name: b for b in sorted(backends, key=lambda b: b.priority)}


_BACKENDS: dict[str, Backend] | None = None


def all_backends() -> list[Backend]:
    global _BACKENDS
    if _BACKENDS is None:
        _BACKENDS = _registry()
    return list(_BACKENDS.values())


def get_backend(name: str) -> Backend:
    for backend in all_backends():
        if backend.name == name:
            return backend
    raise UnknownNameError("backend", name, [b.name for b in all_backends()])
