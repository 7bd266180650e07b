"""Shared torch helpers: one call of a model in inference, train or finetune mode.

- ``inference``: eval mode under ``torch.inference_mode`` (no autograd bookkeeping).
- ``train``: forward, loss, backward and an optimizer step over every parameter.
- ``finetune``: transfer learning; the backbone is frozen (``requires_grad=False``) and only
  the head's parameters get gradients and optimizer updates.

Reduced precision uses autocast (weights stay float32, as in mixed-precision training); a
device/dtype pair that autocast rejects surfaces as an "unsupported" result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from chipfit.workloads.base import Prepared

__all__ = ["count_params", "model_bytes", "torch_model_call"]


def count_params(model: Any, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_bytes(model: Any) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _autocast(torch: Any, device_type: str, dtype: str) -> Any:
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=getattr(torch, dtype))


def _freeze_backbone(model: Any, head: Sequence[str]) -> list[Any]:
    trainable = []
    for name, param in model.named_parameters():
        keep = any(name == h or name.startswith(h + ".") for h in head)
        param.requires_grad_(keep)
        if keep:
            trainable.append(param)
    if not trainable:
        raise ValueError(f"finetune head {list(head)} matched no parameters")
    return trainable


def torch_model_call(model: Any, mode: str, dtype: str, device: Any,
                     loss: Callable[[Any], Any], head: Sequence[str] = (),
                     lr: float = 1e-3) -> Callable[..., Any]:
    """Return ``fn(*inputs)`` running one ``mode`` call of ``model`` on ``device``.

    ``loss`` maps the model output to a scalar; ``head`` names the parameter prefixes that stay
    trainable in ``finetune`` mode. The model is moved to ``device`` here, outside any timing.
    """
    import torch

    model = model.to(device)
    cast = _autocast(torch, device.type, dtype)
    if mode == "inference":
        model.eval()

        def infer(*inputs: Any) -> Any:
            with torch.inference_mode(), cast:
                return model(*inputs)

        return infer
    params = _freeze_backbone(model, head) if mode == "finetune" else list(model.parameters())
    model.train()
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)

    def step(*inputs: Any) -> Any:
        optimizer.zero_grad(set_to_none=True)
        with cast:
            value = loss(model(*inputs))
        value.backward()
        optimizer.step()
        return value.detach()

    return step


def prepared(fn: Callable[..., Any], inputs: tuple[Any, ...], model: Any, items: int,
             mode: str) -> Prepared:
    """A :class:`Prepared` with the model facts every model measurement reports."""
    details = (("params", str(count_params(model))),
               ("trainable_params", str(count_params(model, trainable_only=True)
                                        if mode != "inference" else 0)),
               ("model_bytes", str(model_bytes(model))))
    return Prepared(fn, inputs, items=items, details=details)
