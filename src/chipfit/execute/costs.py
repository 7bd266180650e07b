"""Costs of a workload: build it on this machine's CPU, then trace one call.

The tracing itself lives in :mod:`chipfit.cost` (torch dispatch tracer, XLA program); this
module builds the workload through its backend session, as a job would, and hands the call to
the tracer. ``tensors="auto"`` runs the call for real unless its analytic FLOPs are large, and
then uses fake tensors (shapes only).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from chipfit.cost.records import WorkloadCosts
from chipfit.cost.torch import trace_torch
from chipfit.errors import InvalidInputError, UnsupportedError

__all__ = ["extract_costs", "jax_costs", "prediction_costs", "tf_costs", "torch_costs"]

#: Above this many analytic FLOPs, ``tensors="auto"`` uses fake tensors instead of running.
REAL_FLOPS_LIMIT = 2e11


def _choose_tensors(tensors: str, workload: Any, size: str, dtype: str, mode: str) -> bool:
    """True for real tensors. ``auto``: real unless the analytic FLOPs are large."""
    if tensors not in ("auto", "real", "fake"):
        raise InvalidInputError(f"tensors must be auto, real or fake, not {tensors!r}")
    if tensors != "auto":
        return tensors == "real"
    try:
        estimate = workload.cost(size, dtype, mode).flops
    except Exception:  # a workload without an analytic cost: running it is the safe default
        return True
    return not estimate > REAL_FLOPS_LIMIT


def torch_costs(workload: Any, size: str, dtype: str = "float32", mode: str = "inference", *,
                tensors: str = "auto") -> WorkloadCosts:
    """Per-operator costs of one call of ``workload`` as torch runs it eagerly.

    Built on the CPU; ``tensors`` is ``real`` (the call runs), ``fake`` (shapes only) or
    ``auto``. Training steps are recorded on the second call, after optimizer state exists.
    """
    from chipfit.backends import get_backend
    from chipfit.spec import DeviceRef

    size = workload.parse_size(size)
    real = _choose_tensors(tensors, workload, size, dtype, mode)
    backend = get_backend("torch")
    with backend.session(DeviceRef("torch", "cpu")) as session:
        prepared = workload.build("torch", size, dtype, mode, session)
        args = dict(workload=workload.name, size=size, dtype=dtype, mode=mode,
                    items=prepared.items)
        if real:
            return trace_torch(prepared.fn, prepared.host_args, tensors="real", **args)
        try:
            return trace_torch(prepared.fn, prepared.host_args, tensors="fake", **args)
        except Exception as exc:  # an op fake tensors cannot run (data-dependent shapes ...)
            if tensors == "fake":
                why = f"{type(exc).__name__}: {exc}"
                raise UnsupportedError(f"{workload.name} cannot be traced on fake tensors "
                                       f"({why}); use tensors='real'") from exc
        prepared = workload.build("torch", size, dtype, mode, session)  # fresh state
        costs = trace_torch(prepared.fn, prepared.host_args, tensors="real", **args)
        return replace(costs, notes=costs.notes + ("fake tensors failed; the call was run",))


def jax_costs(workload: Any, size: str, dtype: str = "float32",
              mode: str = "inference") -> WorkloadCosts:
    """Per-kernel costs of the workload's compiled XLA program (CPU compilation)."""
    from chipfit.backends import get_backend
    from chipfit.cost.xla import trace_xla
    from chipfit.spec import DeviceRef

    size = workload.parse_size(size)
    with get_backend("jax").session(DeviceRef("jax", "cpu", 0)) as session:
        prepared = workload.build("jax", size, dtype, mode, session)
    return trace_xla(prepared.fn, prepared.host_args, workload=workload.name, size=size,
                     dtype=dtype, mode=mode, items=prepared.items)


def tf_costs(workload: Any, size: str, dtype: str = "float32",
             mode: str = "inference") -> WorkloadCosts:
    """Per-kernel costs of the workload's TensorFlow program (XLA, compiled for the CPU)."""
    from chipfit.backends import get_backend
    from chipfit.cost.xla import trace_tf
    from chipfit.spec import DeviceRef

    size = workload.parse_size(size)
    with get_backend("tensorflow").session(DeviceRef("tensorflow", "cpu")) as session:
        prepared = workload.build("tensorflow", size, dtype, mode, session)
    return trace_tf(prepared.fn, prepared.host_args, workload=workload.name, size=size,
                    dtype=dtype, mode=mode, items=prepared.items)


def extract_costs(workload: Any, size: str, dtype: str = "float32", mode: str = "inference",
                  backend: str = "torch", *, tensors: str = "auto",
                  working_set: bool = True) -> WorkloadCosts:
    """Costs of ``workload`` (a name or a :class:`~chipfit.workloads.Workload`) on ``backend``.
    Building and tracing runs the workload's code (a user's model prints what it likes): its
    output goes to stderr, never into stdout's JSON. ``working_set``: also the bytes one call
    touches (``WorkloadCosts.working_set_bytes``, which only a calibrated CPU's roofs read;
    a model workload's memory estimate is a second shape-only trace, ~0.3 CPU-s)."""
    from chipfit.workloads.user import user_output_to_stderr

    with user_output_to_stderr():
        return _extract_costs(workload, size, dtype, mode, backend, tensors, working_set)


def _extract_costs(workload: Any, size: str, dtype: str, mode: str, backend: str,
                   tensors: str, working_set: bool) -> WorkloadCosts:
    if isinstance(workload, str):
        from chipfit.workloads import get_workload

        workload = get_workload(workload)
    if backend not in workload.backends():
        raise UnsupportedError(f"{workload.name} has no {backend} implementation "
                               f"(it has: {', '.join(workload.backends()) or 'none'})")
    if backend == "jax":
        costs = jax_costs(workload, size, dtype, mode)
    elif backend == "torch":
        costs = torch_costs(workload, size, dtype, mode, tensors=tensors)
    elif backend == "tensorflow":
        costs = tf_costs(workload, size, dtype, mode)
    else:
        raise UnsupportedError(f"no cost extraction for backend {backend!r}")
    return _with_working_set(costs, workload, size, dtype, mode) if working_set else costs


def _with_working_set(costs: WorkloadCosts, workload: Any, size: str, dtype: str,
                      mode: str) -> WorkloadCosts:
    """``costs`` with the bytes one call touches: the workload's own memory estimate (left
    unknown where it has none)."""
    if costs.working_set_bytes is not None:
        return costs
    try:
        estimate = workload.memory_estimate(size, dtype, mode)
    except Exception:  # an estimate is a refinement: a workload without one keeps None
        return costs
    if estimate is None or not math.isfinite(float(estimate)) or float(estimate) <= 0:
        return costs
    return replace(costs, working_set_bytes=float(estimate))


def prediction_costs(workload: Any, size: str, dtype: str = "float32", mode: str = "inference",
                     backend: str = "torch", *, gpu: bool = False) -> WorkloadCosts:
    """The trace every prediction prices (``predict``, ``advise``, ``feed``: one question, one
    trace): shapes only (fake tensors), so choosing hardware never runs a full forward pass
    here; a model fake tensors cannot trace is run once. ``gpu``: as a CUDA/XLA build runs
    it (fused attention and recurrent kernels, :mod:`chipfit.workloads.gpu_trace`).
    A user's forward that fails under the tracer is one line, not a traceback."""
    from chipfit.errors import ChipfitError

    def trace(tensors: str) -> WorkloadCosts:
        if not gpu:
            return extract_costs(workload, size, dtype, mode, backend, tensors=tensors)
        from chipfit.workloads.gpu_trace import gpu_kernels

        with gpu_kernels():  # priced by GPU kernel models or catalog roofs: no working set
            return extract_costs(workload, size, dtype, mode, backend, tensors=tensors,
                                 working_set=False)

    try:
        try:
            return trace("fake")
        except UnsupportedError:
            return trace("real")
    except (KeyboardInterrupt, ChipfitError):
        raise
    except Exception as exc:  # the user's forward, run under the tracer
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        name = getattr(workload, "name", workload)
        raise InvalidInputError(f"cannot count the operations of {name} "
                                f"({type(exc).__name__}: {first[:160]}); chipfit needs them to "
                                "predict other hardware") from None
