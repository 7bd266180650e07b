"""Your own Keras 3 model, measured on the TensorFlow backend the way the built-in nets are.

``KerasModel(name, factory, input_shape)`` wraps a function returning a Keras model (it is
called once per build, so every measurement starts from fresh weights); register it and bench
it on a ``tensorflow:*`` device::

    from chipfit.workloads import register
    register(KerasModel("my-classifier", make_model, (28, 28, 1)))
    chipfit.bench(["my-classifier"], ["tensorflow:cpu"], sizes=["1", "32"])

The size axis is the batch; the model runs in inference, as ``tf.function(jit_compile=True)``
(stack ``jit``). bfloat16/float16 build the model under Keras's ``mixed_*`` dtype policy
(float32 weights, lower-precision compute, as torch autocast does).

FLOPs and bytes are *counted*, not guessed: from the optimized HLO of the XLA program
TensorFlow compiles for the model on the CPU, with chipfit's convention
(:mod:`chipfit.cost._hlo`; dots and convolutions from their shapes). As for every user model,
the FLOPs stored on a measurement are the matrix classes only (``WorkloadCosts.matrix_flops``). A
loop whose trip count XLA does not know (Keras RNN layers become a ``while`` loop
of unknown length on TensorFlow) is counted once: the measurement's ``flops_source`` detail
says so, and such a model's FLOP/s are an undercount.

Keras 3 picks its framework from ``KERAS_BACKEND`` when it is imported; with ``jax`` or
``torch`` the same model code is a JAX or torch program. chipfit measures those frameworks
through their own backends (a torch module, a JAX function), so a KerasModel needs Keras on
TensorFlow and says so in one line otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from chipfit.errors import InvalidInputError, UnsupportedError
from chipfit.results import Cost
from chipfit.workloads.base import Prepared, Workload, itemsize, parse_count

__all__ = ["KerasModel"]

_CPU = "/CPU:0"


class KerasModel(Workload):
    """A Keras 3 model from ``factory()`` taking float32 inputs of ``(batch, *input_shape)``."""

    axis = "batch"
    family = "keras"
    modes = ("inference",)
    default_sizes = ("1", "8", "32", "128")
    quick_sizes = ("1", "32")

    def __init__(self, name: str, factory: Callable[[], Any], input_shape: tuple[int, ...],
                 description: str = "") -> None:
        if not callable(factory):
            raise InvalidInputError(f"{name}: factory must be a function returning a Keras model")
        if not input_shape or any(int(d) <= 0 for d in input_shape):
            raise InvalidInputError(f"{name}: input_shape must be positive sizes, got {input_shape!r}")
        self.name = name
        self.factory = factory
        self.input_shape = tuple(int(d) for d in input_shape)
        self.description = description or f"Keras 3 model {name}, input {self.input_shape}; size = batch"
        self._counted: dict[tuple[int, str], tuple[Cost, str]] = {}

    # ---- building ----------------------------------------------------------------------------
    def _model(self, dtype: str) -> Any:
        """A fresh model from the factory, built under ``dtype``'s Keras policy."""
        from chipfit.backends.tensorflow import import_tensorflow

        import_tensorflow()  # first, so its start-up notices are filtered
        import keras

        from chipfit.workloads._tf_nets import require_tensorflow_keras

        require_tensorflow_keras()
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32" if dtype == "float32" else f"mixed_{dtype}")
        try:
            model = self.factory()
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # the user's code: one line naming it
            raise InvalidInputError(f"{self.name}: the factory failed: {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}"[:300]) from None
        finally:
            keras.config.set_dtype_policy(previous)
        if not callable(model) or not hasattr(model, "count_params"):
            raise InvalidInputError(f"{self.name}: the factory returned {type(model).__name__}, "
                                    "not a Keras model")
        return model

    def _inputs(self, batch: int) -> Any:
        import numpy as np

        rng = np.random.default_rng(1)
        return rng.standard_normal((batch, *self.input_shape)).astype(np.float32)

    def _build_tensorflow(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        from chipfit.backends.tensorflow import compiled, import_tensorflow

        tf = import_tensorflow()

        batch = parse_count(size)
        with tf.device(session.handle):
            model = self._model(dtype)
            call = compiled(lambda x: model(x, training=False), session.handle)
        source = self._count(batch, dtype)[1]
        details = (("params", str(model.count_params())),
                   ("model_bytes", str(model.count_params() * 4)),
                   ("program", "Keras 3 model, tf.function(jit_compile=True)"),
                   ("flops_source", source))
        return Prepared(call, (self._inputs(batch),), items=batch, details=details)

    # ---- cost --------------------------------------------------------------------------------
    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        return self._count(parse_count(size), dtype)[0]

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int | None:
        return None  # unknown before the model is built; the run measures its peak

    def _count(self, batch: int, dtype: str) -> tuple[Cost, str]:
        """Cost of one call counted from the compiled XLA program, and how it was counted."""
        key = (batch, dtype)
        if key not in self._counted:
            self._counted[key] = self._count_hlo(batch, dtype)
        return self._counted[key]

    def _count_hlo(self, batch: int, dtype: str) -> tuple[Cost, str]:
        from chipfit.backends.tensorflow import import_tensorflow
        from chipfit.cost import _hlo
        from chipfit.cost.records import WorkloadCosts
        from chipfit.cost.xla import unknown_trip_loops

        tf = import_tensorflow()  # cost() runs before any session: TensorFlow may start here

        with tf.device(_CPU):
            model = self._model(dtype)
            program = tf.function(lambda x: model(x, training=False), jit_compile=True)
            x = tf.zeros((batch, *self.input_shape), tf.float32)
            try:
                text = program.experimental_get_compiler_ir(x)(stage="optimized_hlo")
                out = program(x)
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:
                raise UnsupportedError(f"{self.name}: XLA could not compile the model: "
                                       f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        costs = WorkloadCosts(self.name, str(batch), dtype, "inference", "tensorflow", "xla-hlo",
                              _hlo.op_costs(_hlo.entry_kernels(text)))
        outputs = sum(int(math.prod(o.shape)) * o.dtype.size for o in tf.nest.flatten(out))
        transfer = batch * math.prod(self.input_shape) * itemsize("float32") + outputs
        unknown = unknown_trip_loops(text)
        source = "counted: XLA optimized HLO (chipfit's FLOP convention, matrix classes)"
        if unknown > 0:
            source += (f"; {unknown} loop(s) of unknown trip count counted once (an undercount, "
                       "e.g. RNN layers)")
        return Cost(flops=costs.matrix_flops, bytes_moved=costs.bytes_moved,
                    transfer_bytes=float(transfer), kernels=costs.kernels), source
