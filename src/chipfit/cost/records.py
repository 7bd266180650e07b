"""What one call of a workload costs, per operator: the records every cost path produces.

One FLOP convention, for every path (torch dispatch tracer, XLA program):

- Matrix products, convolutions, attention and recurrent cells count 2 FLOPs per
  multiply-add (the formulas registered in ``torch.utils.flop_counter``, plus a few CPU
  kernels that registry lacks; XLA's own count for a compiled program).
- Other operators count one FLOP per element of their largest tensor, pooling one per output
  element, data movement (copies, gathers, concatenation) and views none. Those operators are
  memory-bound on every catalog device (intensity below 1 FLOP/byte, every ridge point above
  5 FLOP/byte), so the count does not change a predicted time.
- The FLOPs stored on a :class:`~chipfit.results.Measurement` (and so its GFLOP/s) are the
  matrix classes only (:attr:`WorkloadCosts.matrix_flops`), the usual MFU accounting (PaLM,
  Chowdhery et al. 2022, appendix B). Prediction uses every class (:meth:`WorkloadCosts.by_class`).

Bytes follow the eager no-reuse model: an operator reads each input tensor and writes each
output tensor once; views and aliases move nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.results import Cost

__all__ = ["DTYPE_BYTES", "GEMV_ROWS", "MATRIX_CLASSES", "OP_CLASSES", "PROBE_ROWS",
           "SKINNY_ROWS", "OpCost", "WorkloadCosts", "host_nbytes", "merge_ops", "rows_variant"]

OP_CLASSES = ("matmul", "conv", "attention", "recurrent", "norm", "pool", "reduction",
              "elementwise", "memory", "other", "view")
#: Classes whose FLOPs run on matrix units (tensor cores, MXUs, AMX) at the matmul peak.
MATRIX_CLASSES = ("matmul", "conv", "attention", "recurrent")
#: Output rows (the smaller output dimension) up to which a matmul is matrix-vector-like,
#: and up to which it is "skinny": both run well below the square-matmul rate of the same
#: FLOPs (less reuse per loaded weight), so calibration measures them as their own paths.
GEMV_ROWS = 8
SKINNY_ROWS = 256
#: The rows at which calibration measures each few-row path (a weight of ``k x k``).
PROBE_ROWS = (("gemv", 1), ("skinny", 128))
#: Bytes per element of the dtypes operators record (``OpCost.dtype``).
DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "int8": 1.0, "uint8": 1.0,
               "float64": 8.0, "float8_e4m3fn": 1.0, "float8_e5m2": 1.0}


def rows_variant(rows: int) -> str:
    """``gemv`` or ``skinny`` for a matmul with ``rows`` output rows, else ``""``."""
    if rows <= GEMV_ROWS:
        return "gemv"
    return "skinny" if rows <= SKINNY_ROWS else ""


@dataclass(frozen=True)
class OpCost:
    """One operator (or ``count`` identical ones): per-occurrence FLOPs, bytes and kernels."""

    op: str
    op_class: str
    dtype: str
    flops: float
    bytes_moved: float
    kernels: int = 1
    count: int = 1
    variant: str = ""  # a kernel path with its own calibrated rate, e.g. "1x1b1" convolutions
    #: Input then output tensor shapes (torch tracer; empty where unknown), so a predictor can
    #: read a matmul's M, N, K or a convolution's geometry. Merged ops share their shapes.
    shapes: tuple[tuple[int, ...], ...] = ()
    #: Runs every iteration of a compiled loop (an XLA while body with a known trip count,
    #: counted ``count`` times): the operands it does not change stay in the cache between
    #: iterations, whatever the whole program touches.
    in_loop: bool = False

    @property
    def total_flops(self) -> float:
        return self.flops * self.count

    @property
    def total_bytes(self) -> float:
        return self.bytes_moved * self.count


@dataclass(frozen=True)
class WorkloadCosts:
    """Everything one call costs, per operator; ``source`` is ``estimated`` (counted, not timed).

    ``program_calls`` is 1 for a compiled (jitted) program dispatched once per call and 0 for
    eager code, whose dispatch cost is per operator. ``module_calls`` counts ``nn.Module``
    calls (Python overhead on top of the operators).
    """

    workload: str
    size: str
    dtype: str
    mode: str
    backend: str
    method: str
    ops: tuple[OpCost, ...]
    h2d_bytes: float = 0.0
    d2h_bytes: float = 0.0
    items: int = 1
    program_calls: int = 0
    module_calls: int = 0
    notes: tuple[str, ...] = field(default=())
    source: str = "estimated"
    #: The torch tracer's peak of live bytes allocated during the call (None: not followed).
    peak_bytes: int | None = None
    #: Device bytes one call needs (weights, inputs, that peak, with a margin), where the
    #: tracer knew the model (:func:`chipfit.workloads.gpu_trace.trace_for_gpu`); else None.
    memory_bytes: int | None = None
    #: Bytes one call touches (its workload's memory estimate: weights, inputs, activations);
    #: None where unknown. Beyond a CPU's last-level cache, operands do not stay cached
    #: between operators (:func:`chipfit.analysis.roofline.predict`).
    working_set_bytes: float | None = None

    @property
    def flops(self) -> float:
        return sum(o.total_flops for o in self.ops)

    @property
    def bytes_moved(self) -> float:
        return sum(o.total_bytes for o in self.ops)

    @property
    def kernels(self) -> int:
        return sum(o.kernels * o.count for o in self.ops)

    @property
    def host_ops(self) -> int:
        """Operators dispatched from Python, views included (eager host work)."""
        return sum(o.count for o in self.ops)

    @property
    def transfer_bytes(self) -> float:
        return self.h2d_bytes + self.d2h_bytes

    def cost(self) -> Cost:
        return Cost(self.flops, self.bytes_moved, self.transfer_bytes, self.kernels)

    def by_class(self) -> dict[str, tuple[float, float, int]]:
        """op class -> (FLOPs, bytes, kernels), in :data:`OP_CLASSES` order."""
        out: dict[str, list[float]] = {}
        for o in self.ops:
            acc = out.setdefault(o.op_class, [0.0, 0.0, 0])
            acc[0] += o.total_flops
            acc[1] += o.total_bytes
            acc[2] += o.kernels * o.count
        order = {c: i for i, c in enumerate(OP_CLASSES)}
        return {c: (v[0], v[1], int(v[2])) for c, v in sorted(out.items(),
                                                              key=lambda kv: order.get(kv[0], 99))}

    def op_mix(self) -> tuple[tuple[str, float], ...]:
        """Share of the FLOPs per operator class (sums to 1 when there are FLOPs)."""
        total = self.flops
        if not total:
            return ()
        return tuple((c, v[0] / total) for c, v in self.by_class().items() if v[0])

    def small_op_share(self, flops_below: float = 1e6) -> float:
        """Share of kernels doing under ``flops_below`` FLOPs (launch-bound on accelerators)."""
        kernels = self.kernels
        small = sum(o.count * o.kernels for o in self.ops if o.kernels and o.flops < flops_below)
        return small / kernels if kernels else 0.0

    @property
    def matrix_flops(self) -> float:
        """FLOPs of the matrix classes only: the count stored on measurements (module doc)."""
        return sum(o.total_flops for o in self.ops if o.op_class in MATRIX_CLASSES)

    @property
    def recurrent(self) -> bool:
        return any(o.op_class == "recurrent" for o in self.ops)


def merge_ops(ops: Iterable[OpCost]) -> tuple[OpCost, ...]:
    """Fold identical operators into one entry with a count, keeping first-seen order."""
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], OpCost] = {}
    for o in ops:
        key = (o.op, o.op_class, o.dtype, o.flops, o.bytes_moved, o.kernels, o.variant, o.shapes,
               o.in_loop)
        counts[key] += o.count
        first.setdefault(key, o)
    return tuple(replace(o, count=counts[k]) for k, o in first.items())


def host_nbytes(value: Any) -> float:
    """Bytes of the tensors/arrays in ``value`` (nested tuples, lists and dicts)."""
    if isinstance(value, (tuple, list)):
        return sum(host_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(host_nbytes(v) for v in value.values())
    if hasattr(value, "element_size") and hasattr(value, "numel"):
        return float(value.element_size() * value.numel())
    if hasattr(value, "nbytes"):
        return float(value.nbytes)
    return 0.0
