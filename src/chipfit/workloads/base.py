"""The workload seam: a name, a size axis, an analytic cost, and one builder per backend.

A builder turns (size, dtype, mode) into a :class:`Prepared`: host-side inputs plus a
function that runs one call on inputs already resident on the device. The runner copies the
inputs (timing the copy apart), then times ``fn(*device_args)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chipfit.errors import InvalidInputError, UnsupportedError
from chipfit.results import Cost
from chipfit.spec import MAX_COUNT, parse_count  # re-exported: sizes are parsed in spec

__all__ = ["MAX_COUNT", "Prepared", "Workload", "geometric_ladder", "parse_count"]



def geometric_ladder(start: int, stop: int, points: int | None = None) -> list[int]:
    """Sizes from ``start`` to ``stop`` inclusive, evenly spaced in log space.

    With ``points`` unset, the ladder doubles (1, 2, 4, ...), ending exactly at ``stop``.
    """
    if start <= 0 or stop < start:
        raise InvalidInputError(f"need 0 < from <= to, got {start}..{stop}")
    if points is not None and points < 1:
        raise InvalidInputError(f"need at least one point, got {points}")
    if points is None:
        points = int(math.floor(math.log2(stop / start))) + 1
        if start * 2 ** (points - 1) != stop:
            points += 1
    if points <= 1 or start == stop:
        return [start]
    ratio = (stop / start) ** (1 / (points - 1))
    values = sorted({int(round(start * ratio**i)) for i in range(points)})
    values[-1] = stop
    return values


@dataclass(frozen=True)
class Prepared:
    """A workload ready to run: ``fn(*device_args)`` performs one call.

    A stack other than eager (:mod:`chipfit.workloads.stacks`) also reports how long it took
    to build (``compile_s``: export, compile, first call) and how far its output is from
    eager's on the same inputs.
    """

    fn: Callable[..., Any]
    host_args: tuple[Any, ...]
    items: int = 1
    details: tuple[tuple[str, str], ...] = field(default=())
    compile_s: float | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None


class Workload(abc.ABC):
    """A family member chipfit can build on any backend that has a builder for it."""

    name: str = ""
    family: str = ""
    axis: str = "n"  # what the size means: n (matrix side), elements, batch
    description: str = ""
    modes: tuple[str, ...] = ("inference",)
    default_sizes: tuple[str, ...] = ()
    quick_sizes: tuple[str, ...] = ()
    #: Tokens per input sequence of a token model (the window an engine prices at its real
    #: tokens: chipfit.predictors.engine.token_window); 0: its inputs are no token sequences
    #: (images); None: not known (an engine row then says it priced every traced token).
    tokens: int | None = None

    def sizes(self, quick: bool = False) -> list[str]:
        return list(self.quick_sizes if quick else self.default_sizes)

    def parse_size(self, text: str) -> str:
        """Validate ``text`` and return the canonical size label."""
        return str(parse_count(text, f"{self.name} {self.axis}"))

    def size_value(self, size: str) -> float:
        """The numeric position of ``size`` on the axis (for ladders and plots)."""
        return float(parse_count(size))

    def ladder(self, start: float, stop: float, points: int | None = None) -> list[str]:
        """A geometric ladder of sizes from ``start`` to ``stop`` (powers of two by default)."""
        return [str(v) for v in geometric_ladder(int(start), int(stop), points)]

    @abc.abstractmethod
    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        """Analytic FLOPs, bytes moved and host<->device bytes of one call."""

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int | None:
        """Bytes the run needs on the device, for the memory guard (None: unknown)."""
        return None

    def inference_module(self, size: str) -> tuple[Any, tuple[Any, ...], int, tuple[tuple[str, str], ...]]:
        """(float32 torch module in eval mode, its CPU inputs, items, details) for ``size``:
        what the stacks other than eager compile, export or quantise."""
        raise UnsupportedError(f"{self.name} has no torch module for stacks other than eager")

    def backends(self) -> Sequence[str]:
        return tuple(name[len("_build_"):] for name in dir(self) if name.startswith("_build_"))

    def build(self, backend: str, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        if mode not in self.modes:
            raise UnsupportedError(f"{self.name} has no {mode!r} mode (modes: {', '.join(self.modes)})")
        builder = getattr(self, f"_build_{backend}", None)
        if builder is None:
            raise UnsupportedError(f"{self.name} has no {backend} implementation")
        return builder(size, dtype, mode, session)


def itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}[dtype]


def torch_dtype(dtype: str) -> Any:
    import torch

    return getattr(torch, dtype)
