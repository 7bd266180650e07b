"""Counting a torch model's work once per (workload, size, dtype, mode), without running it.

One call of the model (the same ``torch_model_call`` function that is timed: forward, and in
train/finetune the loss, backward and optimizer step) runs on *fake tensors*
(``torch._subclasses.FakeTensorMode``) pretending to live on the CPU. Fake tensors carry shapes,
dtypes and strides but no data, so a batch of 256 ResNet-50 images costs no memory and no
arithmetic, and autocast applies exactly as on a real CPU (the meta device has no autocast, so
it could not count a bfloat16 run's bytes). While the call runs, the one torch cost tracer
(:func:`chipfit.cost.torch.tracer`, with memory tracking) records every ATen operator. Its
records give:

- the FLOPs of matrix products, convolutions, attention and recurrent cells (2 FLOPs per
  multiply-add), forward and backward: the operators that dominate these models; elementwise
  work is not counted here (the convention of :mod:`chipfit.cost.records`);
- the kernels (about one launch per non-view operator in eager mode) and the bytes moved under
  the eager no-reuse model (every operator reads its inputs and writes its outputs once from
  memory; views and aliases move nothing);
- the peak of live tensor bytes allocated during the call (activations, saved tensors,
  gradients, autocast weight copies, optimizer state).

Models are built on the meta device (no weight initialisation), then given fake CPU storage.
If fake execution fails for a model, a real batch-1 run on the CPU is counted instead and
scaled by the batch (these models' FLOPs are linear in the batch); the peak is then unknown.
If that fails too (no transformers installed, say), the counts are zero and the method says
why; the measurement itself then fails with the real reason when the model is built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

__all__ = ["Profile", "clear_cache", "profile_torch"]

#: Convolution workspaces, weight reorders, allocator rounding and fragmentation are not
#: tensors the simulation sees. Measured on a CPU (resident-set growth over two steps vs the
#: simulation): ResNet-50 train batch 8 needed 1.15x, BERT-base and GPT-2 train at most 1.0x.
MEMORY_MARGIN = 1.25

_CACHE: dict[Hashable, Profile] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Profile:
    """What one call of a model costs, counted (FLOPs, kernels) or simulated (bytes)."""

    flops: float  # the cost tracer: matrix-class FLOPs of the whole call
    bytes_moved: float  # eager traffic: operator inputs read + outputs written
    kernels: int  # ATen operators dispatched (views excluded)
    peak_bytes: int | None  # live bytes allocated during the call, at their peak
    param_bytes: int  # parameters and buffers, resident before the call
    trainable_bytes: int  # parameters that get gradients and optimizer state
    input_bytes: int
    output_bytes: int
    method: str  # "fake", "real-batch1", or "unknown: <why>" (all counts zero)

    def memory_bytes(self, mode: str) -> int | None:
        """Device bytes one steady-state call needs, with a margin (:data:`MEMORY_MARGIN`).

        Weights, inputs and the call's peak of live tensors; in a later training step the SGD
        momentum (one buffer per trainable parameter, made during the first step) is already
        resident while the backward pass peaks, so it is added once more.
        """
        if self.peak_bytes is None:
            return None
        momentum = self.trainable_bytes if mode != "inference" else 0
        need = self.param_bytes + self.input_bytes + self.peak_bytes + momentum
        return int(need * MEMORY_MARGIN)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def profile_torch(key: Hashable, build_model: Callable[[], Any],
                  make_inputs: Callable[[], tuple[Any, ...]], make_call: Callable[[Any], Any],
                  batch: int) -> Profile:
    """Count one call, cached under ``key`` (e.g. ``(workload, size, dtype, mode)``).

    ``build_model()`` constructs the ``nn.Module`` (called under the meta device);
    ``make_inputs()`` makes the call's inputs for ``batch`` samples; ``make_call(model)``
    returns the function to count (e.g. a ``torch_model_call`` on the CPU).
    """
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        found = _profile_fake(build_model, make_inputs, make_call)
    except Exception:  # an operator without a fake implementation: count a real small run
        try:
            found = _profile_real(build_model, make_inputs, make_call, batch)
        except Exception as exc:  # the model cannot be built or run here: the build says why
            found = Profile(0.0, 0.0, 0, None, 0, 0, 0, 0,
                            f"unknown: {type(exc).__name__}: {str(exc)[:200]}")
    with _LOCK:
        _CACHE[key] = found
    return found


def _profile_fake(build_model: Callable[[], Any], make_inputs: Callable[[], tuple[Any, ...]],
                  make_call: Callable[[Any], Any]) -> Profile:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.device("meta"):
        model = build_model()
    ties = _shared_parameters(model)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = _retie(model.to_empty(device="cpu"), ties)
        inputs = make_inputs()
        return _count(model, inputs, make_call, "fake")


def _shared_parameters(model: Any) -> list[list[tuple[str, str]]]:
    """Groups of (module, attribute) names holding one parameter (tied embeddings)."""
    owners: dict[int, list[tuple[str, str]]] = {}
    for module_name, module in model.named_modules():
        for attr, param in module._parameters.items():
            if param is not None:
                owners.setdefault(id(param), []).append((module_name, attr))
    return [group for group in owners.values() if len(group) > 1]


def _retie(model: Any, ties: list[list[tuple[str, str]]]) -> Any:
    """Share parameters again after ``to_empty``, which gives every owner its own copy."""
    for (first_module, first_attr), *others in ties:
        shared = getattr(model.get_submodule(first_module), first_attr)
        for module_name, attr in others:
            setattr(model.get_submodule(module_name), attr, shared)
    return model


def _profile_real(build_model: Callable[[], Any], make_inputs: Callable[[], tuple[Any, ...]],
                  make_call: Callable[[Any], Any], batch: int) -> Profile:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model()
        inputs = make_inputs()
    one = tuple(t[:1] if getattr(t, "ndim", 0) else t for t in inputs)
    counted = _count(model, one, make_call, "real-batch1")
    # FLOPs and activation traffic grow with the batch; the weights' share does not, so the
    # scaled bytes are an upper bound.
    return Profile(counted.flops * batch, counted.bytes_moved * batch, counted.kernels, None,
                   counted.param_bytes, counted.trainable_bytes, counted.input_bytes * batch,
                   counted.output_bytes * batch, "real-batch1")


def _count(model: Any, inputs: tuple[Any, ...], make_call: Callable[[Any], Any],
           method: str) -> Profile:
    import torch
    from torch.utils._pytree import tree_leaves

    from chipfit.cost.records import WorkloadCosts, merge_ops
    from chipfit.cost.torch import tracer

    def tensor_bytes(value: Any) -> int:
        return sum(int(t.numel()) * t.element_size() for t in tree_leaves(value)
                   if isinstance(t, torch.Tensor))

    fn = make_call(model)
    resident = list(model.parameters()) + list(model.buffers())
    trace = tracer(real=method != "fake", resident=resident + [t for t in tree_leaves(inputs)
                                                               if isinstance(t, torch.Tensor)],
                   track_memory=True)
    with trace:
        out = fn(*inputs)
    costs = WorkloadCosts("call", "", "", "", "torch", method, merge_ops(trace.ops))
    trainable = [p for p in model.parameters() if p.requires_grad]
    return Profile(costs.matrix_flops, costs.bytes_moved, costs.kernels, trace.peak,
                   tensor_bytes(resident), tensor_bytes(trainable), tensor_bytes(inputs),
                   tensor_bytes(out), method)
