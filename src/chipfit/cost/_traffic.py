"""A dispatch mode that counts operators, bytes moved and the peak of live tensor bytes.

Imported only while :mod:`chipfit.cost.profile` profiles a model (it needs torch).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["Traffic", "tensor_bytes", "tensors_in"]


def tensors_in(value: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(int(t.numel()) * t.element_size() for t in tensors)


class Traffic(TorchDispatchMode):
    """Operators, bytes read + written, and live-byte peak of everything run inside it.

    Bytes follow the eager no-reuse model: an operator reads each input tensor and writes each
    output tensor once; views (and aliases such as ``_unsafe_view``) move nothing. Live bytes:
    every storage first seen as an operator's output is an allocation, released when Python
    frees that storage (a finalizer; storages keep one Python object for their lifetime).
    Storages resident before the call (weights, buffers, inputs) are known and not counted.
    """

    def __init__(self, resident: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self._pinned = [t.untyped_storage() for t in resident]  # keeps their ids unique
        self._known = {id(s) for s in self._pinned}
        self._sizes: dict[int, int] = {}
        self.ops = self.moved = self.live = self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        outs = tensors_in(out)
        fresh = [t for t in outs if self._is_new(t)]
        if not fresh and not func._schema.is_mutable:
            return out  # an alias: nothing read or written
        self.ops += 1
        self.moved += tensor_bytes(tensors_in((args, kwargs))) + tensor_bytes(outs)
        for tensor in fresh:
            self._allocate(tensor.untyped_storage())
        self.peak = max(self.peak, self.live)
        return out

    def _is_new(self, tensor: torch.Tensor) -> bool:
        key = id(tensor.untyped_storage())
        return key not in self._known and key not in self._sizes

    def _allocate(self, storage: Any) -> None:
        key = id(storage)
        if key in self._sizes:  # two outputs of one operator sharing a new storage
            return
        self._sizes[key] = int(storage.nbytes())
        self.live += self._sizes[key]
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)
