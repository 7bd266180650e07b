"""Shared torch helpers: one call of a model in inference, train or finetune mode.

- ``inference``: eval mode under ``torch.inference_mode`` (no autograd bookkeeping).
- ``train``: forward, loss, backward and an optimizer step over every parameter.
- ``finetune``: transfer learning; the backbone is frozen (``requires_grad=False``) and only
  the head's parameters get gradients and optimizer updates. The whole model stays in train
  mode, as in PyTorch's transfer-learning tutorial ("ConvNet as fixed feature extractor"):
  batch-norm layers normalise with batch statistics (their running-statistics buffers update;
  no weight does) and dropout is active.

Reduced precision uses autocast (weights stay float32, as in mixed-precision training). A
device/dtype pair that autocast rejects, or whose kernels are missing for that dtype, raises
:class:`~chipfit.errors.UnsupportedError`, which the runner records as "unsupported".
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from chipfit.errors import UnsupportedError
from chipfit.workloads.base import Prepared

__all__ = ["autocast", "count_params", "model_bytes", "prepared", "torch_model_call"]

# Messages of kernels that exist for float32 but not for the requested dtype on this device
# (oneDNN has no float16 LSTM on most x86 CPUs; "not implemented for 'Half'" is ATen's own).
_MISSING_KERNEL = ("could not create a primitive", "not implemented for 'half'",
                   "not implemented for 'bfloat16'", "not supported for half",
                   "not supported for bfloat16")


def count_params(model: Any, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_bytes(model: Any) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def autocast(torch: Any, device_type: str, dtype: str) -> Any:
    """An autocast context for ``dtype`` on ``device_type``, checked to be really enabled.

    Some torch builds silently disable autocast for a dtype they do not support (with a
    warning); measuring float32 under a float16 label would be a lie, so that is an error.
    """
    if dtype == "float32":
        return contextlib.nullcontext()
    target = getattr(torch, dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cast = torch.autocast(device_type=device_type, dtype=target)
            with cast:
                enabled = (torch.is_autocast_enabled(device_type)
                           and torch.get_autocast_dtype(device_type) == target)
    except RuntimeError as exc:  # e.g. bfloat16 on a pre-Ampere GPU, an unknown device type
        raise UnsupportedError(f"{dtype} autocast is not supported on {device_type}: "
                               f"{str(exc).splitlines()[0]}") from None
    if not enabled:
        raise UnsupportedError(f"{dtype} autocast is not supported on {device_type} by torch "
                               f"{torch.__version__}")
    return torch.autocast(device_type=device_type, dtype=target)


def _freeze_backbone(model: Any, head: Sequence[str]) -> list[Any]:
    trainable = []
    for name, param in model.named_parameters():
        keep = _in_head(name, head)
        param.requires_grad_(keep)
        if keep:
            trainable.append(param)
    if not trainable:
        raise ValueError(f"finetune head {list(head)} matched no parameters")
    return trainable


def _on(model: Any, device: Any) -> Any:
    """``model`` on ``device``, left untouched when it is already there (fake tensors, which
    chipfit.cost.profile counts with, cannot be moved in place)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if tensors and all(t.device == device for t in tensors):
        return model
    return model.to(device)


def _in_head(name: str, head: Sequence[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in head)


def _missing_kernels_unsupported(fn: Callable[..., Any], dtype: str,
                                 device: Any) -> Callable[..., Any]:
    """Turn "no kernel for this dtype" errors into UnsupportedError (reduced dtypes only)."""
    if dtype == "float32":
        return fn

    def call(*inputs: Any) -> Any:
        try:
            return fn(*inputs)
        except (RuntimeError, NotImplementedError) as exc:
            text = str(exc).lower()
            if any(hint in text for hint in _MISSING_KERNEL):
                raise UnsupportedError(f"{dtype} is not supported here on {device}: "
                                       f"{str(exc).splitlines()[0][:200]}") from exc
            raise

    return call


def torch_model_call(model: Any, mode: str, dtype: str, device: Any,
                     loss: Callable[[Any], Any], head: Sequence[str] = (),
                     lr: float = 1e-3, *,
                     forward: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """Return ``fn(*inputs)`` running one ``mode`` call of ``model`` on ``device``.

    ``loss`` maps the model output to a scalar; ``head`` names the parameter prefixes that stay
    trainable in ``finetune`` mode. ``forward(model, *inputs)`` replaces the plain
    ``model(*inputs)`` call (for models taking keyword inputs, or returning a structure whose
    useful part is one field). The model is moved to ``device`` here, outside any timing.
    """
    import torch

    model = _on(model, device)
    cast = autocast(torch, device.type, dtype)
    run = forward or (lambda m, *inputs: m(*inputs))
    if mode == "inference":
        model.eval()

        def infer(*inputs: Any) -> Any:
            with torch.inference_mode(), cast:
                return run(model, *inputs)

        return _missing_kernels_unsupported(infer, dtype, device)
    params = _freeze_backbone(model, head) if mode == "finetune" else list(model.parameters())
    model.train()
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)

    def step(*inputs: Any) -> Any:
        optimizer.zero_grad(set_to_none=True)
        with cast:
            value = loss(run(model, *inputs))
        value.backward()
        optimizer.step()
        return value.detach()

    return _missing_kernels_unsupported(step, dtype, device)


def prepared(fn: Callable[..., Any], inputs: tuple[Any, ...], model: Any, items: int,
             mode: str, extra: tuple[tuple[str, str], ...] = ()) -> Prepared:
    """A :class:`Prepared` with the model facts every model measurement reports.

    ``extra`` adds workload-specific details (input shape, sequence length ...).
    """
    details = (("params", str(count_params(model))),
               ("trainable_params", str(count_params(model, trainable_only=True)
                                        if mode != "inference" else 0)),
               ("model_bytes", str(model_bytes(model))))
    return Prepared(fn, inputs, items=items, details=details + tuple(extra))
