"""What one call of a workload costs, counted without timing it.

``records.py``: the per-operator record (:class:`OpCost`, with input/output shapes) and the
per-call table (:class:`WorkloadCosts`), and the one FLOP convention. ``torch.py``: the one
torch dispatch tracer; its records give both the per-class table prediction uses and (through
``profile.py``) the matrix FLOPs, bytes and memory peak stored on each measurement.
``xla.py`` + ``_hlo.py``: the one JAX path, from XLA's compiled program. Building a workload
to trace it is :mod:`chipfit.execute.costs`.
"""
