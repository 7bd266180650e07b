"""Cost of a JAX program as XLA counts it: the compiled program's own cost analysis.

``jax.jit(fn).lower(*args).compile().cost_analysis()`` reports the FLOPs and bytes accessed of
the optimised HLO, after fusion, so it sees what the device will run rather than what the
Python code says. Two limits, both answered with :class:`~chipfit.errors.UnsupportedError`
so callers fall back to a workload's analytic :meth:`~chipfit.workloads.Workload.cost`:

- a backend may return no analysis (older plugins, some GPU/TPU runtimes);
- XLA's HloCostAnalysis counts the body of a ``while`` loop once, whatever its trip count, so
  any program with a loop (``lax.scan``, ``fori_loop``: the LSTM) is undercounted.

Note: compiling here fills JAX's compilation cache, so a later first call of the same program
in this process no longer includes compile time. Measure before asking for costs, or ask in
another process.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chipfit.errors import UnsupportedError
from chipfit.results import Cost

__all__ = ["jax_cost", "workload_jax_cost"]

# HLO instructions that move no data and launch nothing: they are not kernels.
_NOT_KERNELS = frozenset({"parameter", "constant", "tuple", "get-tuple-element", "bitcast",
                          "after-all", "partition-id", "replica-id", "opt-barrier"})
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?\S+\s*=\s*.*?\s([a-z][a-z0-9\-]*)\(")
_LOOP = re.compile(r"\swhile\(")


def jax_cost(fn: Callable[..., Any], *args: Any, resident: int = 0) -> Cost:
    """XLA's cost of one call ``fn(*args)``, compiled for the devices ``args`` live on.

    ``fn`` is a pure JAX function (jitted or not); ``args`` are arrays, pytrees of arrays or
    ``jax.ShapeDtypeStruct``. Returns FLOPs and bytes accessed from XLA's cost analysis,
    ``transfer_bytes`` as the bytes of the arguments and results a host would copy in and out
    (all but the first ``resident`` arguments, such as weights that stay on the device), and
    ``kernels`` as the non-trivial instructions of the optimised entry computation (fusions,
    library calls, collectives: one launch each on a GPU).
    Raises UnsupportedError where XLA's count is missing or would be wrong (loops).
    """
    import jax

    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    compiled = jitted.lower(*args).compile()
    analysis = _analysis(compiled)
    hlo = compiled.as_text() or ""
    if _LOOP.search(hlo):
        raise UnsupportedError("the program has a loop (lax.scan/while) and XLA's cost analysis "
                               "counts a loop body once; use the analytic cost instead")
    out = jax.eval_shape(jitted, *args)
    return Cost(flops=float(analysis["flops"]),
                bytes_moved=float(analysis.get("bytes accessed", 0.0)),
                transfer_bytes=float(_nbytes(args[resident:]) + _nbytes(out)),
                kernels=count_kernels(hlo))


def _analysis(compiled: Any) -> dict[str, float]:
    try:
        analysis = compiled.cost_analysis()
    except Exception as exc:  # some runtimes raise NotImplemented/Unimplemented
        raise UnsupportedError(f"XLA gave no cost analysis here ({exc}); use the analytic "
                               "cost instead") from exc
    if isinstance(analysis, (list, tuple)):  # jax < 0.4.30 returned one dict per partition
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        raise UnsupportedError("XLA gave no FLOP count for this program on this backend; use "
                               "the analytic cost instead")
    return dict(analysis)


def count_kernels(hlo: str) -> int:
    """Instructions of the optimised HLO's ENTRY computation that launch work."""
    start = hlo.find("\nENTRY")
    if start < 0:
        return 0
    body = hlo[start:].split("\n}", 1)[0].splitlines()[1:]
    ops = (m.group(1) for m in map(_INSTRUCTION.match, body) if m)
    return sum(1 for op in ops if op not in _NOT_KERNELS)


def _nbytes(tree: Any) -> int:
    import jax
    import numpy as np

    leaves = jax.tree.leaves(tree)
    return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize for leaf in leaves
               if hasattr(leaf, "shape") and hasattr(leaf, "dtype"))


def workload_jax_cost(workload: str, size: str, dtype: str = "float32",
                      mode: str = "inference") -> Cost:
    """XLA's cost of one call of a built-in workload, built on JAX's first CPU device.

    Programs compile for the CPU here: FLOPs match what other XLA backends count for the same
    program closely, bytes accessed less so (fusion decisions differ per backend).
    """
    import jax

    from chipfit.backends import get_backend
    from chipfit.spec import DeviceRef
    from chipfit.workloads import get_workload

    wl = get_workload(workload)
    label = wl.parse_size(size)
    with get_backend("jax").session(DeviceRef("jax", "cpu", 0)) as session:
        prepared = wl.build("jax", label, dtype, mode, session)
        # A train step's program also returns the new weights and optimizer state, which stay
        # on the device: only the call's own result (the loss) goes back to the host.
        fn, leading = getattr(prepared.fn, "program", (prepared.fn, ()))
        inputs = session.to_device(prepared.host_args)
        cost = jax_cost(fn, *leading, *inputs, resident=len(leading))
        out = jax.eval_shape(fn, *leading, *inputs)
        if getattr(prepared.fn, "stateful", False):
            out = out[-1]
        return replace(cost, transfer_bytes=float(_nbytes(prepared.host_args) + _nbytes(out)))
