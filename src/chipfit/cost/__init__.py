"""What one call of a workload costs, counted without timing it.

torch: one dispatch tracer (:mod:`chipfit.cost.torch`) records every ATen operator; the
per-operator records give both the per-class table that prediction uses and the matrix FLOPs
stored on each measurement (:mod:`chipfit.cost.profile`). JAX: XLA's compiled program
(:mod:`chipfit.cost.torch` ``jax_costs`` with :mod:`chipfit.cost._hlo`).
"""
