"""Dense matrix multiply, the seeds' headline experiment.

Sizes are a square side ``n`` (``1024``) or a full shape ``MxK@KxN`` such as the seeds'
``7000x3000@3000x7000`` (large, GPU-friendly) and ``70x30@30x70`` (tiny, launch-bound).
Cost: 2*M*K*N FLOPs; bytes moved = both inputs read plus the output written once.
"""

from __future__ import annotations

import re
from typing import Any

from chipfit.errors import InvalidInputError
from chipfit.results import Cost
from chipfit.workloads.base import Prepared, Workload, itemsize, parse_count, torch_dtype

__all__ = ["Matmul"]

SEED_LARGE = "7000x3000@3000x7000"
SEED_SMALL = "70x30@30x70"
_SHAPE = re.compile(r"^(\d+)x(\d+)@(\d+)x(\d+)$")


def shape_of(size: str) -> tuple[int, int, int]:
    match = _SHAPE.match(size)
    if match:
        m, k1, k2, n = (int(g) for g in match.groups())
        return m, k1, n
    side = parse_count(size)
    return side, side, side


class Matmul(Workload):
    name = "matmul"
    family = "matmul"
    axis = "n"
    description = "C = A @ B, fp32/bf16/fp16; square n or MxK@KxN (seeds: 70x30@30x70, 7000x3000@3000x7000)"
    default_sizes = (SEED_SMALL, "64", "128", "256", "512", "1024", "2048", SEED_LARGE)
    quick_sizes = (SEED_SMALL, "128", "512", "1024")

    def parse_size(self, text: str) -> str:
        raw = str(text).strip().lower().replace(" ", "")
        match = _SHAPE.match(raw)
        if match:
            m, k1, k2, n = (int(g) for g in match.groups())
            if k1 != k2:
                raise InvalidInputError(f"matmul {text!r}: inner dimensions differ ({k1} vs {k2})")
            if min(m, k1, n) <= 0:
                raise InvalidInputError(f"matmul {text!r}: dimensions must be positive")
            return raw
        if "x" in raw:
            raise InvalidInputError(f"malformed matmul size {text!r}: use n (e.g. 1024) or "
                                    "MxK@KxN (e.g. 7000x3000@3000x7000)")
        return str(parse_count(raw, "matmul n"))

    def size_value(self, size: str) -> float:
        m, k, n = shape_of(size)
        return round((m * k * n) ** (1 / 3), 3)  # the equivalent square side

    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        m, k, n = shape_of(size)
        b = itemsize(dtype)
        return Cost(flops=2.0 * m * k * n, bytes_moved=float((m * k + k * n + m * n) * b),
                    transfer_bytes=float((m * k + k * n + m * n) * b), kernels=1)

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int:
        m, k, n = shape_of(size)
        return (m * k + k * n + m * n) * itemsize(dtype)

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import torch

        m, k, n = shape_of(size)
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(m, k, generator=gen).to(torch_dtype(dtype))
        b = torch.rand(k, n, generator=gen).to(torch_dtype(dtype))
        return Prepared(torch.matmul, (a, b))

    def _build_jax(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import jax
        import jax.numpy as jnp
        import numpy as np

        m, k, n = shape_of(size)
        rng = np.random.default_rng(0)
        host = tuple(rng.random(s, dtype=np.float32).astype(jnp.dtype(dtype))
                     for s in ((m, k), (k, n)))
        return Prepared(jax.jit(jnp.matmul), host)

    def _build_tensorflow(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        from chipfit.backends.tensorflow import compiled, host_arrays, import_tensorflow

        tf = import_tensorflow()
        m, k, n = shape_of(size)
        return Prepared(compiled(lambda a, b: tf.linalg.matmul(a, b), session.handle),
                        host_arrays(((m, k), (k, n)), dtype, seed=0))


def workloads() -> list[Workload]:
    return [Matmul()]
