"""The torch cost tracer: one call, operator by operator, under a ``TorchDispatchMode``.

The mode sees every ATen operator after autograd. Per operator it records (an
:class:`~chipfit.cost.records.OpCost`) the FLOPs (the formulas registered in
``torch.utils.flop_counter``, plus a few CPU kernels that registry lacks), the bytes moved
(every tensor read plus every tensor written, once each), the input and output shapes, the
operator class and whether it launches a kernel (views, aliases and allocations do not).
Composite operators are decomposed, as ``FlopCounterMode`` does; a few fused CPU kernels (the
transformer fast path) are re-dispatched below the Python key so the kernels they call are
seen. Tensors are real (the call really runs), fake (``FakeTensorMode``: shapes only, for
sizes too big to run here) or meta. With ``track_memory`` the same mode also follows the live
bytes allocated during the call and their peak (:mod:`chipfit.cost.profile` uses it).

The FLOP convention is written down once, in :mod:`chipfit.cost.records`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from chipfit.cost.records import MATRIX_CLASSES, OpCost, WorkloadCosts, host_nbytes, merge_ops, rows_variant
from chipfit.errors import InvalidInputError

__all__ = ["classify", "matmul_variant", "op_bytes", "trace_torch", "tracer"]


_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "mv", "addmv", "dot", "vdot",
           "_addmm_activation", "_int_mm", "addbmm", "matmul", "linear", "outer", "addr"}
_CONV = {"convolution", "_convolution", "convolution_backward", "cudnn_convolution",
         "mkldnn_convolution", "_slow_conv2d_forward", "_slow_conv2d_backward",
         "convolution_overrideable", "_conv_depthwise2d", "slow_conv3d_forward",
         "mkldnn_convolution_backward"}
_RECURRENT = {"mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_thnn_fused_lstm_cell",
              "_thnn_fused_lstm_cell_backward_impl", "_thnn_fused_gru_cell", "_cudnn_rnn",
              "_cudnn_rnn_backward", "miopen_rnn"}
_NORM_WORDS = ("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm")
_REDUCTION = {"_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
              "nll_loss_forward", "nll_loss_backward", "logsumexp", "cumsum", "cumprod",
              "topk", "sort", "mse_loss", "mse_loss_backward", "_masked_softmax", "norm"}
_MEMORY = {"copy_", "_to_copy", "clone", "cat", "stack", "index", "index_select", "gather",
           "scatter", "scatter_add", "scatter_add_", "embedding", "embedding_dense_backward",
           "constant_pad_nd", "repeat", "fill_", "zero_", "zeros", "ones", "full", "zeros_like",
           "ones_like", "full_like", "_unsafe_index", "index_put_", "_index_put_impl_",
           "masked_fill", "masked_fill_", "roll", "flip", "contiguous", "new_zeros", "new_ones",
           "slice_scatter", "select_scatter", "_copy_from", "_copy_from_and_resize", "narrow_copy",
           "split_with_sizes_copy", "unbind_copy", "pad", "reflection_pad2d", "replication_pad2d"}
_METADATA = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
             "lift_fresh", "detach", "alias", "set_", "resize_", "_unsafe_view", "as_strided",
             "_reshape_alias", "_local_scalar_dense", "_record_function_enter_new",
             "_record_function_exit", "_record_function_enter", "is_same_size",
             "resize_as_", "_has_compatible_shallow_copy_type", "_nested_tensor_from_mask"}
# Queries that answer from metadata and never reach a kernel.
_SKIP = {"size", "sym_size", "stride", "sym_stride", "storage_offset", "sym_storage_offset",
         "numel", "sym_numel", "dim", "is_contiguous", "sym_is_contiguous",
         "is_strides_like_format", "is_non_overlapping_and_dense", "device", "layout"}
# Ops that only write their mutated argument (its old contents are not read).
_OVERWRITE = {"copy_", "fill_", "zero_", "normal_", "uniform_", "random_", "bernoulli_",
              "exponential_", "set_", "resize_", "index_put_", "_index_put_impl_"}
# Dropout in eval mode (train=False or p=0) is the identity in ATen: no kernel.
_DROPOUT = {"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"}
# Fused CPU kernels that call other ATen kernels: re-dispatched so those are counted.
_OPAQUE = {"_transformer_encoder_layer_fwd", "_native_multi_head_attention"}


def _op_name(func: Any) -> str:
    return func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)


def classify(name: str, func: Any = None) -> str:
    """The operator class of ATen op ``name`` (``addmm`` -> ``matmul``)."""
    if name in _MATMUL:
        return "matmul"
    if name in _CONV or "convolution" in name:
        return "conv"
    if "attention" in name or name == "_transformer_encoder_layer_fwd":
        return "attention"
    if name in _RECURRENT:
        return "recurrent"
    if any(w in name for w in _NORM_WORDS):
        return "norm"
    if "pool" in name and "backward" not in name:
        return "pool"
    if name in _METADATA or (func is not None and getattr(func, "is_view", False)):
        return "view"
    if name in _MEMORY or name.startswith("_foreach_copy"):
        return "memory"
    if name in _REDUCTION:
        return "reduction"
    tags = {str(t) for t in getattr(func, "tags", ())} if func is not None else set()
    if "Tag.reduction" in tags:
        return "reduction"
    if "Tag.pointwise" in tags or name.startswith("_foreach_"):
        return "elementwise"
    return "other"


def _tensors(value: Any, torch: Any) -> list[Any]:
    from torch.utils._pytree import tree_flatten

    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def _nbytes(t: Any) -> float:
    return float(t.numel() * t.element_size())


def _written_args(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  torch: Any) -> list[Any]:
    """Tensors the op mutates in place (``add_``'s self, ``out=``), from its schema."""
    written: list[Any] = []
    schema = getattr(func, "_schema", None)
    if schema is None:
        return written
    for i, arg in enumerate(schema.arguments):
        info = arg.alias_info
        if info is None or not info.is_write:
            continue
        value = args[i] if i < len(args) else kwargs.get(arg.name)
        written += _tensors(value, torch)
    return written


def op_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any,
             torch: Any) -> float:
    """Bytes read plus bytes written by one operator, each tensor counted once."""
    name = _op_name(func)
    written = _written_args(func, args, kwargs, torch)
    overwrite = name in _OVERWRITE or "out" in kwargs
    written_ids = {id(t) for t in written}
    reads = {id(t): t for t in _tensors((args, kwargs), torch)
             if not (overwrite and id(t) in written_ids)}
    writes = {id(t): t for t in written}
    writes.update({id(t): t for t in _tensors(out, torch)})
    return sum(_nbytes(t) for t in reads.values()) + sum(_nbytes(t) for t in writes.values())


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _shapes(value: Any, torch: Any) -> tuple[tuple[int, ...], ...]:
    """The shapes of the tensors in ``value``, in argument order."""
    return tuple(_shape(t) for t in _tensors(value, torch))


def _rnn_flops(args: tuple[Any, ...]) -> float:
    """mkldnn_rnn_layer: 2 x steps x batch x (gates*H) x (input + H) multiply-adds."""
    inp, w_ih, w_hh = args[0], args[1], args[2]
    batch_first = bool(args[14]) if len(args) > 14 else False
    steps, batch = (inp.shape[1], inp.shape[0]) if batch_first else (inp.shape[0], inp.shape[1])
    if inp.dim() == 2:  # packed/unbatched input: (steps, features)
        steps, batch = inp.shape[0], 1
    gates_h = w_ih.shape[0]
    return 2.0 * steps * batch * gates_h * (w_ih.shape[1] + w_hh.shape[1])


def _extra_formulas() -> dict[str, Callable[..., float]]:
    """FLOP formulas for CPU kernels that ``torch.utils.flop_counter`` does not register."""
    from torch.utils import flop_counter as fc

    def sdpa_cpu(q: Any, k: Any, v: Any, *_: Any, **__: Any) -> float:
        return float(fc.sdpa_flop_count(_shape(q), _shape(k), _shape(v)))

    def sdpa_cpu_bwd(grad: Any, q: Any, k: Any, v: Any, *_: Any, **__: Any) -> float:
        return float(fc.sdpa_backward_flop_count(_shape(grad), _shape(q), _shape(k), _shape(v)))

    def addmm_act(bias: Any, a: Any, b: Any, *_: Any, **__: Any) -> float:
        return 2.0 * a.shape[0] * a.shape[1] * b.shape[1]

    def mv(a: Any, x: Any, *_: Any, **__: Any) -> float:
        return 2.0 * a.shape[0] * a.shape[1]

    def addmv(bias: Any, a: Any, x: Any, *_: Any, **__: Any) -> float:
        return 2.0 * a.shape[0] * a.shape[1]

    def dot(a: Any, b: Any, *_: Any, **__: Any) -> float:
        return 2.0 * a.numel()

    def mha(q: Any, k: Any, v: Any, embed: int, heads: int, *_: Any, **__: Any) -> float:
        """q/k/v/out projections plus QK^T and AV (batch-first ``(B, L, E)`` inputs)."""
        b, length, e = (1, *q.shape) if q.dim() == 2 else q.shape
        s = k.shape[-2]
        return 2.0 * b * e * e * (2 * length + 2 * s) + 4.0 * b * length * s * e

    def encoder_layer(src: Any, embed: int, heads: int, *args: Any, **__: Any) -> float:
        """The fused encoder layer: attention as above plus the two feed-forward matmuls."""
        ffn = args[11].shape[0]  # ffn_weight_1: (F, E)
        b, length, e = (1, *src.shape) if src.dim() == 2 else src.shape
        return mha(src, src, src, embed, heads) + 4.0 * b * length * e * ffn

    return {
        "_native_multi_head_attention": mha, "_transformer_encoder_layer_fwd": encoder_layer,
        "_scaled_dot_product_flash_attention_for_cpu": sdpa_cpu,
        "_scaled_dot_product_flash_attention_for_cpu_backward": sdpa_cpu_bwd,
        "_addmm_activation": addmm_act, "mv": mv, "addmv": addmv, "dot": dot, "vdot": dot,
        "mkldnn_rnn_layer": lambda *a, **k: _rnn_flops(a),
        "mkldnn_rnn_layer_backward": lambda *a, **k: 2 * _rnn_flops(a),
    }


def tracer(real: bool = True, resident: Sequence[Any] = (), track_memory: bool = False) -> Any:
    """The dispatch mode: ``with tracer() as t: fn(*args)``, then ``t.ops`` (one
    :class:`OpCost` per operator, unmerged), ``t.unknown`` (matrix ops without a formula) and,
    with ``track_memory``, ``t.peak`` (the most live bytes allocated during the call).

    ``real``: the tensors hold data (fused kernels can then be looked inside). ``resident``:
    tensors that exist before the call (weights, inputs); their storages are not allocations.
    Built lazily so importing this module never imports torch.
    """
    import torch
    from torch.utils import flop_counter as fc
    from torch.utils._python_dispatch import TorchDispatchMode

    registry = {p.__name__ if hasattr(p, "__name__") else str(p): f
                for p, f in fc.flop_registry.items()}
    registry.update(_extra_formulas())
    memory = _LiveBytes(resident) if track_memory else None
    return _make_mode(TorchDispatchMode, torch, real, registry, memory)


class _LiveBytes:
    """Live bytes of the storages first seen as an operator's output, and their peak.

    A storage is released when Python frees it (a finalizer; storages keep one Python object
    for their lifetime). Storages resident before the call are known and not counted.
    """

    def __init__(self, resident: Sequence[Any]) -> None:
        self._pinned = [t.untyped_storage() for t in resident]  # keeps their ids unique
        self._known = {id(s) for s in self._pinned}
        self._sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def is_new(self, tensor: Any) -> bool:
        key = id(tensor.untyped_storage())
        return key not in self._known and key not in self._sizes

    def allocate(self, tensors: Sequence[Any]) -> None:
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self._sizes:  # two outputs of one operator sharing a new storage
                continue
            self._sizes[key] = int(storage.nbytes())
            self.live += self._sizes[key]
            weakref.finalize(storage, self._release, key)
        self.peak = max(self.peak, self.live)

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


def _make_mode(base: type, torch: Any, real: bool, registry: dict[str, Any],
               memory: _LiveBytes | None) -> Any:
    dk = torch._C.DispatchKey
    after_python = torch._C._dispatch_keyset_full_after(dk.Python)

    class Recorder(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[OpCost] = []
            self.unknown: set[str] = set()

        @property
        def peak(self) -> int | None:
            return memory.peak if memory is not None else None

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            name = _op_name(func)
            if name in _SKIP or not hasattr(func, "_overloadpacket"):
                return func(*args, **kwargs)
            if name in _DROPOUT and not (len(args) > 2 and args[2] and args[1]):
                return args[0]  # ATen returns the input itself; torch's Python decomposition
                # would clone it, a copy no eager kernel makes
            if name not in registry:
                with self:
                    result = func.decompose(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            if name in _OPAQUE:
                expanded = self._expand(func, args, kwargs)
                if expanded is not NotImplemented:
                    return expanded
            out = func(*args, **kwargs)
            self._record(func, name, args, kwargs, out)
            return out

        def _expand(self, func: Any, args: Any, kwargs: Any) -> Any:
            """Run a fused CPU kernel with this mode active so its inner kernels are seen."""
            tensors = _tensors((args, kwargs), torch)
            if not real or not tensors or any(t.device.type != "cpu" for t in tensors):
                return NotImplemented
            mark = len(self.ops)
            keys = torch._C._dispatch_keys(tensors[0]) & after_python
            with self:
                out = func.redispatch(keys, *args, **kwargs)
            if any(o.kernels for o in self.ops[mark:]):
                return out
            del self.ops[mark:]
            self._record(func, _op_name(func), args, kwargs, out)
            return out

        def _record(self, func: Any, name: str, args: Any, kwargs: Any, out: Any) -> None:
            op_class = classify(name, func)
            shapes = _shapes((args, kwargs), torch) + _shapes(out, torch)
            dtype = _dtype(args, out, torch)
            if op_class != "view" and memory is not None:
                fresh = [t for t in _tensors(out, torch) if memory.is_new(t)]
                if not fresh and not func._schema.is_mutable:
                    op_class = "view"  # an alias: it neither allocates nor writes
                memory.allocate(fresh)
            if op_class == "view":
                self.ops.append(OpCost(name, "view", dtype, 0.0, 0.0, 0, shapes=shapes))
                return
            nbytes = op_bytes(func, args, kwargs, out, torch)
            flops = self._flops(name, op_class, args, kwargs, out)
            self.ops.append(OpCost(name, op_class, dtype, flops, nbytes, 1,
                                   variant=_variant(op_class, args, out), shapes=shapes))

        def _flops(self, name: str, op_class: str, args: Any, kwargs: Any, out: Any) -> float:
            formula = registry.get(name)
            if formula is not None:
                try:
                    return float(formula(*args, **kwargs, out_val=out))
                except TypeError:  # the extra formulas take no out_val
                    return float(formula(*args, **kwargs))
            if op_class in MATRIX_CLASSES:
                self.unknown.add(name)
                return 0.0
            if op_class == "memory":  # copies, gathers, concatenation: data movement only
                return 0.0
            if op_class == "pool":  # one FLOP per output element (a window reduced to one)
                return float(sum(t.numel() for t in _tensors(out, torch)[:1]))
            # Convention (module docstring): one FLOP per element of the largest tensor.
            sizes = [t.numel() for t in _tensors((args, kwargs, out), torch)]
            return float(max(sizes, default=0))

    return Recorder()


def matmul_variant(out: Any) -> str:
    """``gemv`` or ``skinny`` for a matmul whose output has few rows, else ``""``."""
    shape = tuple(getattr(out, "shape", ()))
    return rows_variant(min(shape[-2:]) if len(shape) >= 2 else 1)


def _variant(op_class: str, args: Any, out: Any = None) -> str:
    """The kernel path an operator takes when it has its own calibrated rate.

    ``1x1b1``: a stride-1 1x1 convolution on one sample; eager torch on a CPU runs those on a
    different kernel path (not oneDNN) than other convolutions. ``gemv``/``skinny``: matmuls
    with few output rows (:func:`matmul_variant`).
    """
    if op_class == "matmul":
        return matmul_variant(out)
    if op_class != "conv" or len(args) < 2 or not hasattr(args[1], "shape"):
        return ""
    inp, weight = args[0], args[1]
    stride = args[3] if len(args) > 3 and isinstance(args[3], (list, tuple)) else (1,)
    one_by_one = weight.dim() >= 3 and all(int(k) == 1 for k in weight.shape[2:])
    single = inp.dim() >= 3 and int(inp.shape[0]) == 1
    return "1x1b1" if one_by_one and single and all(int(v) == 1 for v in stride) else ""


def _dtype(args: Any, out: Any, torch: Any) -> str:
    """The compute dtype: the first floating-point tensor among the inputs (else outputs)."""
    for t in _tensors(args, torch) + _tensors(out, torch):
        if t.is_floating_point() or t.dtype in (torch.int8, torch.uint8):
            return str(t.dtype).replace("torch.", "")
    return "float32"


def _count_modules(torch: Any) -> tuple[list[int], Any]:
    calls = [0]

    def hook(module: Any, inputs: Any) -> None:
        calls[0] += 1

    return calls, torch.nn.modules.module.register_module_forward_pre_hook(hook)


def trace_torch(fn: Callable[..., Any], args: tuple[Any, ...], *, workload: str = "call",
                size: str = "", dtype: str = "float32", mode: str = "inference", items: int = 1,
                tensors: str = "real") -> WorkloadCosts:
    """Record one call ``fn(*args)`` operator by operator (any torch callable).

    ``tensors``: ``real`` runs the call; ``fake`` converts the arguments to fake tensors
    (shapes only); ``meta`` expects meta-device arguments and modules already (shapes only).
    """
    import torch

    if tensors not in ("real", "fake", "meta"):
        raise InvalidInputError(f"tensors must be real, fake or meta, not {tensors!r}")
    real = tensors == "real"
    ops, out, modules, unknown, peak = _record_call(torch, fn, args, tensors == "fake", mode,
                                                    real)
    notes = [f"{n}: no FLOP formula; counted as 0 FLOPs" for n in sorted(unknown)]
    fused = sorted({o.op for o in ops if o.op in _OPAQUE})
    if fused:
        notes.append(f"fused kernels counted whole, not by the kernels inside them: "
                     f"{', '.join(fused)} ({tensors} tensors; real ones look inside)")
    return WorkloadCosts(workload, size, dtype, mode, "torch", f"torch-dispatch:{tensors}",
                         merge_ops(ops), host_nbytes(args), host_nbytes(out), items, 0,
                         modules, tuple(notes), peak_bytes=peak)


def _record_call(torch: Any, fn: Callable[..., Any], args: tuple[Any, ...], fake: bool,
                 mode: str, real: bool) -> tuple[Any, ...]:
    import contextlib

    context: Any = contextlib.nullcontext()
    if fake:
        from torch._subclasses.fake_tensor import FakeTensorMode

        context = FakeTensorMode(allow_non_fake_inputs=True)
        args = tuple(context.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
    with context:
        if mode != "inference":
            fn(*args)  # the first step creates optimizer state: record the second
        resident = [a for a in args if isinstance(a, torch.Tensor)]
        recorder = tracer(real, resident, track_memory=True)  # memory: to see aliases
        calls, handle = _count_modules(torch)
        try:
            with recorder:
                out = fn(*args)
        finally:
            handle.remove()
    return recorder.ops, out, calls[0], recorder.unknown, recorder.peak
