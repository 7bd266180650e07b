"""Shape-only traces of models as a GPU runs them, including models given as config files.

``trace_for_gpu(fn, args)`` records one call with chipfit's torch tracer on meta tensors
(no weights, nothing runs) while two things are routed to the kernels a CUDA build calls:

- ``F.scaled_dot_product_attention`` becomes one fused attention operator
  (``_scaled_dot_product_efficient_attention``, the kernel torch picks for float32 on CUDA;
  flash attention for half precision has the same cost model), not the CPU's
  decomposition into matmuls and a softmax;
- ``nn.LSTM``/``nn.GRU``/``nn.RNN`` become one fused recurrent operator per module (cuDNN's
  ``_cudnn_rnn``), not the CPU's per-step kernels.

``config_model(path)`` builds a transformers model from a ``config.json`` on the meta device
(``architectures[0]`` names its class) with example inputs for ``seq_len`` and ``batch``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError, UnsupportedError

__all__ = ["IMAGE_MODEL_TYPES", "config_model", "memory_need", "takes_tokens", "trace_config",
           "trace_for_gpu"]


@contextlib.contextmanager
def _fused_attention(torch: Any) -> Iterator[None]:
    from torch.overrides import TorchFunctionMode

    sdpa = torch.nn.functional.scaled_dot_product_attention

    class Fused(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func is sdpa:
                return _efficient(torch, *args, **kwargs)
            return func(*args, **kwargs)

    with Fused():
        yield


def _efficient(torch: Any, q: Any, k: Any, v: Any, attn_mask: Any = None,
               dropout_p: float = 0.0, is_causal: bool = False, scale: Any = None,
               enable_gqa: bool = False) -> Any:
    if k.shape[-3] != q.shape[-3]:  # grouped-query attention: heads shared by groups
        reps = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(reps, dim=-3), v.repeat_interleave(reps, dim=-3)
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # the kernels take a bias
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
            ~attn_mask, float("-inf"))
    if q.device.type == "cpu":
        # Real or fake CPU tensors: the CPU's fused kernel, same shapes and FLOPs. It refuses
        # dropout, which CUDA's fused kernels apply inside the kernel (a mask drawn per score
        # tile: no kernel and no tensor of its own), so the stand-in runs without it: the
        # count is the one a CUDA build's fine-tuning step launches.
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, bool(is_causal), attn_mask=attn_mask, scale=scale)[0]
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, attn_mask, False, float(dropout_p), bool(is_causal), scale=scale)
    return out[0]


@contextlib.contextmanager
def _fused_rnn(torch: Any, records: list[Any]) -> Iterator[None]:
    """nn.RNNBase.forward -> one fused record and empty outputs of the right shapes."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    from chipfit.cost.records import OpCost

    def forward(self: Any, x: Any, hx: Any = None) -> Any:
        batched = x.dim() == 3
        seq = x if batched else x.unsqueeze(1)
        if self.batch_first and batched:
            seq = seq.transpose(0, 1)
        steps, batch, width = (int(s) for s in seq.shape)
        dirs = 2 if self.bidirectional else 1
        out_w = dirs * (self.proj_size or self.hidden_size)
        mode = {"LSTM": "lstm", "GRU": "gru"}.get(self.mode, self.mode.lower())
        gates = {"lstm": 4, "gru": 3}.get(mode, 1)
        flops = 0.0
        for layer in range(self.num_layers):
            inp = width if layer == 0 else out_w
            flops += 2.0 * dirs * steps * batch * gates * self.hidden_size * (inp + self.hidden_size)
        elem = x.element_size()
        params = sum(p.numel() for p in self.parameters())
        nbytes = elem * (steps * batch * (width + out_w) + params)
        record = OpCost("_cudnn_rnn", "recurrent", str(x.dtype).replace("torch.", ""),
                        flops, float(nbytes), 1, 1, f"fused:{mode}:{self.num_layers}:{dirs}",
                        ((steps, batch, width), (steps, batch, out_w)))
        recorder = _get_current_dispatch_mode()
        # The tracer's dispatch mode keeps its records in .ops: the fused kernel joins them
        (recorder.ops if isinstance(getattr(recorder, "ops", None), list) else records).append(
            record)
        out = torch.empty(steps, batch, out_w, dtype=x.dtype, device=x.device)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        shape = (self.num_layers * dirs, batch, self.proj_size or self.hidden_size)
        h = torch.empty(shape if batched else (shape[0], shape[2]), dtype=x.dtype, device=x.device)
        if mode == "lstm":
            c = torch.empty(self.num_layers * dirs, batch, self.hidden_size, dtype=x.dtype,
                            device=x.device)
            return out, (h, c if batched else c.squeeze(1))
        return out, h

    classes = (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)
    originals = [cls.__dict__.get("forward") for cls in classes]
    for cls in classes:
        cls.forward = forward
    try:
        yield
    finally:
        for cls, orig in zip(classes, originals, strict=True):
            if orig is None:
                del cls.forward
            else:
                cls.forward = orig


#: Where transformers keeps the Switch Transformers experts :func:`_balanced_experts` routes.
_SWITCH_MODULE = "transformers.models.switch_transformers.modeling_switch_transformers"


@contextlib.contextmanager
def _balanced_experts(torch: Any, capacity: int | None) -> Iterator[None]:
    """Mixture-of-experts layers routed evenly: which expert a token picks depends on the
    data, which a shape-only trace does not have, so each expert gets ``tokens / experts``
    tokens (at most ``capacity``), the balanced routing that load-balancing losses aim at.

    Only a model whose module is imported can hold such layers, so the patch goes on when
    transformers' Switch Transformers module is imported: already, or while inside (a config's
    model built in the trace). A trace of any other model never imports it (importing it
    costs 4-5 CPU-seconds, more than torch)."""
    import sys

    patched: list[tuple[Any, Any]] = []

    def patch(module: Any) -> None:
        experts = module.SwitchTransformersExperts
        original = experts.forward

        def forward(self: Any, hidden: Any, selected: Any, weights: Any) -> Any:
            tokens = int(hidden.shape[0])
            share = -(-tokens // self.num_experts)
            share = min(share, capacity) if capacity else share
            out = torch.zeros_like(hidden)
            for i in range(self.num_experts):
                part = self[f"expert_{i}"](hidden[:share]) * weights[:share]
                out.index_add_(0, torch.arange(share, device=hidden.device), part.to(hidden.dtype))
            return out

        experts.forward = forward
        patched.append((experts, original))

    hook = None
    if _SWITCH_MODULE in sys.modules:
        patch(sys.modules[_SWITCH_MODULE])
    else:
        hook = _OnImport(_SWITCH_MODULE, patch)
        sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        if hook is not None and hook in sys.meta_path:
            sys.meta_path.remove(hook)
        for experts, original in reversed(patched):
            experts.forward = original


class _OnImport:
    """A meta path finder that calls ``then(module)`` once the module ``name`` has run (found
    and loaded by the finders after it, as without it)."""

    def __init__(self, name: str, then: Callable[[Any], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        import sys

        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenLoader(spec.loader, self.then)
                return spec
        return None


class _ThenLoader:
    """``loader``, calling ``then(module)`` after the module's code ran."""

    def __init__(self, loader: Any, then: Callable[[Any], None]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.then(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_data, ... as the loader has them
        return getattr(self.loader, name)


@contextlib.contextmanager
def gpu_kernels(records: list[Any] | None = None,
                expert_capacity: int | None = None) -> Iterator[list[Any]]:
    """While active, torch traces see the kernels a CUDA build calls (fused attention, fused
    recurrent layers, evenly routed experts). Fused recurrent records join the active
    tracer's; calls outside a tracer (warm-up steps) land in the yielded list."""
    import torch

    records = [] if records is None else records
    with _fused_attention(torch), _fused_rnn(torch, records), \
            _balanced_experts(torch, expert_capacity):
        yield records


def trace_for_gpu(fn: Callable[..., Any], args: tuple[Any, ...], *, workload: str = "call",
                  size: str = "", dtype: str = "float32", mode: str = "inference",
                  items: int = 1, tensors: str = "meta", expert_capacity: int | None = None,
                  module: Any = None) -> Any:
    """Trace ``fn(*args)`` as a CUDA build runs it (fused attention and recurrent layers;
    mixture-of-experts layers routed evenly, see :func:`_balanced_experts`). With the
    ``module`` that ``fn`` calls, the costs also say the device memory one call needs
    (``memory_bytes``: :func:`memory_need`)."""
    from chipfit.cost.torch import trace_torch

    with gpu_kernels(expert_capacity=expert_capacity):
        costs = trace_torch(fn, args, workload=workload, size=size, dtype=dtype, mode=mode,
                            items=items, tensors=tensors)
    if module is not None:
        costs = replace(costs, memory_bytes=memory_need(costs, module))
    fused = sum(o.count for o in costs.ops if o.op == "_cudnn_rnn")
    if not fused:
        return costs
    note = f"{fused} recurrent layer call(s) traced as fused cuDNN kernels"
    return replace(costs, notes=costs.notes + (note,))


def memory_need(costs: Any, module: Any) -> int | None:
    """Device bytes one traced call of ``module`` needs: its weights and buffers, their
    gradients when training (made by the first step, resident while the traced second one
    peaks), the inputs and the tracer's peak of live bytes, times the margin the built-in
    models use (:data:`chipfit.cost.profile.MEMORY_MARGIN`). None where no peak was followed."""
    from chipfit.cost.profile import MEMORY_MARGIN

    if costs.peak_bytes is None:
        return None
    weights = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    grads = (sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
             if costs.mode != "inference" else 0)
    return int((weights + grads + costs.h2d_bytes + costs.peak_bytes) * MEMORY_MARGIN)


def read_config(path: str | Path) -> dict[str, Any]:
    """A transformers ``config.json`` as a dict, read by the bounded reader and checked by
    :func:`chipfit.workloads.config_schema.check_config` (one-line errors naming the field)."""
    from chipfit.paths import CONFIG_FILE_LIMIT, read_user_json
    from chipfit.workloads.config_schema import RESERVED_KEYS, check_config

    data = check_config(read_user_json(path, CONFIG_FILE_LIMIT, "config"), str(path))
    return {k: v for k, v in data.items() if k not in RESERVED_KEYS}


def hf_config(raw: dict[str, Any], origin: str, attention: str = "sdpa") -> Any:
    """The transformers config object of a checked config dict; whatever transformers says
    against it (its own field validation included) is one line."""
    import transformers

    try:
        config = transformers.AutoConfig.for_model(**raw)
    except Exception as exc:  # noqa: BLE001 - ValueError, KeyError, StrictDataclass... errors
        first = str(exc).strip().splitlines()
        raise InvalidInputError(f"{origin}: transformers cannot read this config "
                                f"({type(exc).__name__}: {first[0][:200] if first else ''})") from None
    config._attn_implementation = attention
    return config


def model_class(raw: dict[str, Any], origin: str, architecture: str | None = None) -> Any:
    """The transformers model class ``architectures[0]`` (or ``architecture``) names, None
    for the model type's default; a name that is not a transformers model class is refused
    (the name picks what gets called: only model classes are)."""
    import transformers

    arch = architecture or (raw.get("architectures") or [None])[0]
    if not arch:
        return None
    cls = getattr(transformers, arch, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise InvalidInputError(f"config {origin}: architectures names {arch!r}, which is not a "
                                "transformers model class")
    return cls


def config_model(path: str | Path, batch: int, seq_len: int, *, attention: str = "sdpa",
                 dtype: str = "float32", architecture: str | None = None
                 ) -> tuple[Any, tuple[Any, ...], Callable[..., Any]]:
    """(model on the meta device, example inputs, call) for a transformers ``config.json``;
    ``architecture`` overrides the config's ``architectures[0]``. The sizes are bounded
    (:func:`chipfit.workloads.config_schema.check_trace_size`) before anything is built."""
    import torch
    import transformers

    from chipfit.workloads.config_schema import check_trace_size

    raw = read_config(path)
    check_trace_size(raw, batch, seq_len)
    arch = architecture or _first_architecture(raw, path)
    cls = model_class(raw, str(path), architecture)
    config = hf_config(raw, str(path), attention)
    config._attn_implementation = _attention_for(transformers, cls, config, attention)
    with torch.device("meta"):
        try:
            model = cls(config) if cls is not None else transformers.AutoModel.from_config(config)
        except Exception as exc:  # transformers raises many kinds for unusable configs
            # values that contradict each other are the file's fault (exit 2); anything
            # else (a missing optional library ...) is this machine's
            error = (InvalidInputError if isinstance(exc, (ValueError, TypeError, KeyError,
                                                           AttributeError, IndexError))
                     else UnsupportedError)
            raise error(f"{path}: cannot build {arch or raw['model_type']} "
                        f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        model = model.to(getattr(torch, dtype))
        inputs = _inputs(torch, config, batch, seq_len)
    names = tuple(inputs)

    def call(*values: Any) -> Any:
        return model(**dict(zip(names, values, strict=True)))

    return model, tuple(inputs.values()), call


def _first_architecture(raw: dict[str, Any], path: str | Path) -> str | None:
    """``architectures[0]`` of a config, checked: a list of class names (or absent)."""
    names = raw.get("architectures")
    if names is None or names == []:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InvalidInputError(f"{path}: architectures must be a list of model class names, "
                                f"not {str(names)[:80]}")
    return names[0]


def _attention_for(transformers: Any, cls: Any, config: Any, attention: str) -> str:
    """``attention``, or ``eager`` where the model class has no SDPA path (Switch
    Transformers, say): transformers refuses to build those with ``sdpa``, and their eager
    attention (matmul, softmax, matmul) is what they run on a GPU too."""
    if attention != "sdpa":
        return attention
    if cls is None:
        try:
            cls = transformers.AutoModel._model_mapping[type(config)]
        except (KeyError, AttributeError):  # no base model for this config: let the build say
            return attention
    return attention if getattr(cls, "_supports_sdpa", True) else "eager"


#: Config model types whose input is an image (pixel values), not token ids.
IMAGE_MODEL_TYPES = ("vit", "deit", "beit", "resnet", "convnext", "swin", "mobilenet_v2",
                     "efficientnet", "regnet")


def takes_tokens(raw: dict[str, Any]) -> bool:
    """Whether a config's model is traced on token ids (a sequence of ``seq_len`` tokens)
    rather than an image."""
    return raw.get("model_type", "") not in IMAGE_MODEL_TYPES


def _inputs(torch: Any, config: Any, batch: int, seq_len: int) -> dict[str, Any]:
    if getattr(config, "model_type", "") in IMAGE_MODEL_TYPES:
        size = getattr(config, "image_size", 224) or 224
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))
        channels = int(getattr(config, "num_channels", 3) or 3)
        return {"pixel_values": torch.empty(batch, channels, height, width)}
    ids = torch.zeros(batch, seq_len, dtype=torch.long)
    if getattr(config, "is_encoder_decoder", False):
        return {"input_ids": ids, "decoder_input_ids": ids}
    return {"input_ids": ids}


def trace_config(path: str | Path, batch: int, seq_len: int, *, mode: str = "inference",
                 dtype: str = "float32", attention: str = "sdpa",
                 architecture: str | None = None) -> Any:
    """Per-operator costs of one inference call, or forward + backward (``mode="train"``),
    of the model a ``config.json`` describes, shape-only and as a GPU runs it."""
    import torch

    model, inputs, call = config_model(path, batch, seq_len, attention=attention, dtype=dtype,
                                       architecture=architecture)
    name = Path(path).stem
    used = getattr(model.config, "_attn_implementation", attention)
    notes = ((f"{type(model).__name__} has no SDPA attention in transformers: traced with its "
              f"eager attention (matmul, softmax, matmul)",) if used != attention else ())
    costs = _trace_config_call(torch, model, inputs, call, name, batch, seq_len, mode, dtype)
    return replace(costs, notes=notes + costs.notes) if notes else costs


def _trace_config_call(torch: Any, model: Any, inputs: tuple[Any, ...], call: Any, name: str,
                       batch: int, seq_len: int, mode: str, dtype: str) -> Any:
    per_seq = getattr(model.config, "expert_capacity", None)
    capacity = int(per_seq) * batch if per_seq else None
    if mode == "inference":
        model.eval()
        with torch.inference_mode():
            try:
                return trace_for_gpu(call, inputs, workload=name, size=f"{batch}x{seq_len}",
                                     dtype=dtype, items=batch, expert_capacity=capacity,
                                     module=model)
            except _UNTRACEABLE as exc:  # data-dependent shapes, kernels meta lacks
                raise _untraceable(name, exc) from None
    if mode != "train":
        raise InvalidInputError(f"mode must be inference or train, not {mode!r}")
    model.train()

    def step(*values: Any) -> Any:
        out = call(*values)
        logits = out[0] if isinstance(out, tuple) else next(iter(out.values()))
        logits.float().mean().backward()
        return logits

    try:
        return trace_for_gpu(step, inputs, workload=name, size=f"{batch}x{seq_len}",
                             dtype=dtype, mode="train-fwd-bwd", items=batch,
                             expert_capacity=capacity, module=model)
    except _UNTRACEABLE as exc:  # data-dependent shapes (expert routing) on meta
        raise _untraceable(name, exc) from None


# What a model built from a user's config raises when meta tensors cannot run it: data-
# dependent shapes (NotImplementedError), kernels with dtype or device rules of their own
# (transformers' grouped-matmul experts want bfloat16: RuntimeError), and the like.
_UNTRACEABLE = (NotImplementedError, RuntimeError, ValueError, TypeError, IndexError)


def _untraceable(name: str, exc: BaseException) -> UnsupportedError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return UnsupportedError(f"{name}: shape-only tracing is not possible "
                            f"({type(exc).__name__}: {lines[0][:200] if lines else ''})")
