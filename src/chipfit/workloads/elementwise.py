"""An elementwise, memory-bound op: ``out = a * x + y`` over ``size`` elements.

Cost: 2 FLOPs per element; bytes moved = two inputs read plus one output written. Its
achieved GB/s shows memory bandwidth, the other roof of the roofline.
"""

from __future__ import annotations

from typing import Any

from chipfit.results import Cost
from chipfit.workloads.base import Prepared, Workload, itemsize, parse_count, torch_dtype

__all__ = ["Elementwise"]

_ALPHA = 1.5


class Elementwise(Workload):
    name = "elementwise"
    family = "elementwise"
    axis = "elements"
    description = "out = 1.5 * x + y over N elements (memory-bound)"
    default_sizes = tuple(str(4**e) for e in range(6, 14))  # 4096 .. 67M elements
    quick_sizes = (str(2**12), str(2**18), str(2**24))

    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        n = parse_count(size)
        b = itemsize(dtype)
        return Cost(flops=2.0 * n, bytes_moved=3.0 * n * b, transfer_bytes=3.0 * n * b, kernels=1)

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int:
        return 3 * parse_count(size) * itemsize(dtype)

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import torch

        n = parse_count(size)
        gen = torch.Generator().manual_seed(1)
        x = torch.rand(n, generator=gen).to(torch_dtype(dtype))
        y = torch.rand(n, generator=gen).to(torch_dtype(dtype))
        return Prepared(lambda x, y: torch.add(y, x, alpha=_ALPHA), (x, y))

    def _build_jax(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import jax
        import jax.numpy as jnp
        import numpy as np

        n = parse_count(size)
        rng = np.random.default_rng(1)
        host = tuple(rng.random(n, dtype=np.float32).astype(jnp.dtype(dtype)) for _ in range(2))
        return Prepared(jax.jit(lambda x, y: _ALPHA * x + y), host)

    def _build_tensorflow(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        from chipfit.backends.tensorflow import compiled, host_arrays

        n = parse_count(size)
        return Prepared(compiled(lambda x, y: _ALPHA * x + y, session.handle),
                        host_arrays(((n,), (n,)), dtype, seed=1))


def workloads() -> list[Workload]:
    return [Elementwise()]
