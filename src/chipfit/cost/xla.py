"""The JAX and TensorFlow paths: costs of a compiled XLA program, kernel by kernel.

The program is lowered and compiled for the CPU; XLA's own ``cost_analysis()`` gives the
program's FLOPs (kept as a note), and the optimized HLO's entry computation gives the kernels:
one per fusion/custom call/top-level op, with bytes from the operand and result shapes (see
:mod:`chipfit.cost._hlo`). The FLOP convention is :mod:`chipfit.cost.records`'.
"""

from __future__ import annotations

import math
from typing import Any

from chipfit.cost.records import WorkloadCosts, host_nbytes

__all__ = ["trace_tf", "trace_xla", "unknown_trip_loops"]


def trace_xla(fn: Any, host_args: tuple[Any, ...], *, workload: str = "call", size: str = "",
              dtype: str = "float32", mode: str = "inference", items: int = 1) -> WorkloadCosts:
    """Per-kernel costs of ``fn(*host_args)`` compiled by XLA (``fn`` jitted or plain).

    A stateful call (a train step) exposes its pure program as ``fn.program = (pure, lead)``;
    the pure program is costed with the leading state arguments in front.
    """
    import jax

    from chipfit.cost import _hlo

    fn, lead = _jax_program(jax, fn)
    specs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                   (*lead, *host_args))
    compiled = fn.lower(*specs).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device
        analysis = analysis[0] if analysis else {}
    kernels = _hlo.entry_kernels(compiled.as_text())
    out = jax.eval_shape(fn, *specs)
    if lead:  # a stateful step returns (new state ..., value): only the value comes back
        out = jax.tree_util.tree_leaves(out)[-1:]
    out_bytes = sum(math.prod(o.shape) * o.dtype.itemsize for o in jax.tree_util.tree_leaves(out))
    ops = _hlo.op_costs(kernels)
    note = (f"XLA cost_analysis: {float(analysis.get('flops', 0)):.4g} FLOPs, "
            f"{float(analysis.get('bytes accessed', 0)):.4g} bytes accessed (loop bodies once)")
    return WorkloadCosts(workload, size, dtype, mode, "jax", "xla-hlo", ops,
                         host_nbytes(host_args), float(out_bytes), items, 1, 0, (note,))


def _jax_program(jax: Any, fn: Any) -> tuple[Any, tuple[Any, ...]]:
    """The jitted pure program behind a workload's ``fn`` and its leading (state) arguments."""
    program = getattr(fn, "program", None)
    if program is not None:  # a stateful call (train step): cost the pure program
        pure, lead = program
        return pure, tuple(lead)
    return (fn if hasattr(fn, "lower") else jax.jit(fn)), ()


def unknown_trip_loops(hlo_text: str) -> int:
    """``while`` loops of an HLO module whose trip count XLA does not know (counted once)."""
    return hlo_text.count(" while(") - hlo_text.count('"known_trip_count"')


def trace_tf(fn: Any, host_args: tuple[Any, ...], *, workload: str = "call", size: str = "",
             dtype: str = "float32", mode: str = "inference", items: int = 1) -> WorkloadCosts:
    """Per-kernel costs of a TensorFlow workload call, from the optimized HLO of the XLA
    program ``tf.function(jit_compile=True)`` compiles for the CPU (``fn.program``, set by
    :func:`chipfit.backends.tensorflow.compiled`).

    A loop of unknown trip count (Keras RNN layers become a ``tf.while_loop`` that XLA cannot
    count) would be counted once, so such a program is refused rather than undercounted.
    """
    from chipfit.backends.tensorflow import import_tensorflow
    from chipfit.cost import _hlo
    from chipfit.errors import UnsupportedError

    tf = import_tensorflow()

    program = getattr(fn, "program", None)
    if program is None or not hasattr(program, "experimental_get_compiler_ir"):
        raise UnsupportedError(f"{workload}: its TensorFlow call is not a compiled program")
    with tf.device("/CPU:0"):
        args = tuple(tf.convert_to_tensor(a) for a in host_args)
        text = program.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
        outputs = tf.nest.flatten(program.get_concrete_function(*args).structured_outputs)
    loops = unknown_trip_loops(text)
    if loops:
        raise UnsupportedError(f"{workload}: TensorFlow's XLA program has {loops} loop(s) of "
                               "unknown trip count (an RNN layer), which cannot be counted; "
                               "count it on torch or jax")
    out_bytes = sum(math.prod(o.shape) * o.dtype.size for o in outputs if o.shape.is_fully_defined())
    ops = _hlo.op_costs(_hlo.entry_kernels(text))
    return WorkloadCosts(workload, size, dtype, mode, "tensorflow", "xla-hlo", ops,
                         host_nbytes(host_args), float(out_bytes), items, 1, 0,
                         (f"TensorFlow {tf.__version__}, tf.function(jit_compile=True) on the CPU",))
