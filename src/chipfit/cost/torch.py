"""Cost extraction: what one call of a workload asks of a processor, operator by operator.

torch: the workload is built on the CPU and called once under a ``TorchDispatchMode`` that
sees every ATen operator after autograd. Per operator it records the FLOPs (the formulas
registered in ``torch.utils.flop_counter``, plus a few CPU kernels that registry lacks), the
bytes moved (every tensor read plus every tensor written, once each), the operator class and
whether it launches a kernel (views and allocations do not). Composite operators are
decomposed, as ``FlopCounterMode`` does; a few fused CPU kernels (the transformer fast path)
are re-dispatched below the Python key so the kernels they call are seen. Tensors are real
(the call really runs) or fake (``FakeTensorMode``: shapes only, for sizes too big to run
here).

JAX: the workload's jitted program is lowered and compiled for the CPU; XLA's own
``cost_analysis()`` gives the program's FLOPs, and the optimized HLO's entry computation gives
the kernels: one per fusion/custom call/top-level op, with bytes from the operand and result
shapes (see :mod:`chipfit.cost._hlo`).

Conventions (they matter little, and are written down so nobody mistakes them for data):
non-matrix operators count one FLOP per element of their largest tensor, pooling one per
output element, data-movement operators (copies, gathers, concatenation) none. Those operators are
memory-bound on every catalog device (their intensity is below 1 FLOP/byte, every ridge point
is above 5 FLOP/byte), so the count does not change a predicted time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.errors import InvalidInputError, UnsupportedError
from chipfit.results import Cost

__all__ = ["OP_CLASSES", "OpCost", "WorkloadCosts", "extract_costs", "jax_costs", "torch_costs",
           "trace_torch"]

OP_CLASSES = ("matmul", "conv", "attention", "recurrent", "norm", "pool", "reduction",
              "elementwise", "memory", "other", "view")
#: Classes whose FLOPs run on matrix units (tensor cores, MXUs, AMX) at the matmul peak.
MATRIX_CLASSES = ("matmul", "conv", "attention", "recurrent")
#: Above this many analytic FLOPs, ``tensors="auto"`` uses fake tensors instead of running.
REAL_FLOPS_LIMIT = 2e11


@dataclass(frozen=True)
class OpCost:
    """One operator (or ``count`` identical ones): per-occurrence FLOPs, bytes and kernels."""

    op: str
    op_class: str
    dtype: str
    flops: float
    bytes_moved: float
    kernels: int = 1
    count: int = 1
    variant: str = ""  # a kernel path with its own calibrated rate, e.g. "1x1b1" convolutions

    @property
    def total_flops(self) -> float:
        return self.flops * self.count

    @property
    def total_bytes(self) -> float:
        return self.bytes_moved * self.count


@dataclass(frozen=True)
class WorkloadCosts:
    """Everything one call costs, per operator; ``source`` is ``estimated`` (counted, not timed).

    ``program_calls`` is 1 for a compiled (jitted) program dispatched once per call and 0 for
    eager code, whose dispatch cost is per operator. ``module_calls`` counts ``nn.Module``
    calls (Python overhead on top of the operators).
    """

    workload: str
    size: str
    dtype: str
    mode: str
    backend: str
    method: str
    ops: tuple[OpCost, ...]
    h2d_bytes: float = 0.0
    d2h_bytes: float = 0.0
    items: int = 1
    program_calls: int = 0
    module_calls: int = 0
    notes: tuple[str, ...] = field(default=())
    source: str = "estimated"

    @property
    def flops(self) -> float:
        return sum(o.total_flops for o in self.ops)

    @property
    def bytes_moved(self) -> float:
        return sum(o.total_bytes for o in self.ops)

    @property
    def kernels(self) -> int:
        return sum(o.kernels * o.count for o in self.ops)

    @property
    def host_ops(self) -> int:
        """Operators dispatched from Python, views included (eager host work)."""
        return sum(o.count for o in self.ops)

    @property
    def transfer_bytes(self) -> float:
        return self.h2d_bytes + self.d2h_bytes

    def cost(self) -> Cost:
        return Cost(self.flops, self.bytes_moved, self.transfer_bytes, self.kernels)

    def by_class(self) -> dict[str, tuple[float, float, int]]:
        """op class -> (FLOPs, bytes, kernels), in :data:`OP_CLASSES` order."""
        out: dict[str, list[float]] = {}
        for o in self.ops:
            acc = out.setdefault(o.op_class, [0.0, 0.0, 0])
            acc[0] += o.total_flops
            acc[1] += o.total_bytes
            acc[2] += o.kernels * o.count
        order = {c: i for i, c in enumerate(OP_CLASSES)}
        return {c: (v[0], v[1], int(v[2])) for c, v in sorted(out.items(),
                                                              key=lambda kv: order.get(kv[0], 99))}

    def op_mix(self) -> tuple[tuple[str, float], ...]:
        """Share of the FLOPs per operator class (sums to 1 when there are FLOPs)."""
        total = self.flops
        if not total:
            return ()
        return tuple((c, v[0] / total) for c, v in self.by_class().items() if v[0])

    def small_op_share(self, flops_below: float = 1e6) -> float:
        """Share of kernels doing under ``flops_below`` FLOPs (launch-bound on accelerators)."""
        kernels = self.kernels
        small = sum(o.count * o.kernels for o in self.ops if o.kernels and o.flops < flops_below)
        return small / kernels if kernels else 0.0

    @property
    def recurrent(self) -> bool:
        return any(o.op_class == "recurrent" for o in self.ops)


def merge_ops(ops: Iterable[OpCost]) -> tuple[OpCost, ...]:
    """Fold identical operators into one entry with a count, keeping first-seen order."""
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], OpCost] = {}
    for o in ops:
        key = (o.op, o.op_class, o.dtype, o.flops, o.bytes_moved, o.kernels, o.variant)
        counts[key] += o.count
        first.setdefault(key, o)
    return tuple(OpCost(o.op, o.op_class, o.dtype, o.flops, o.bytes_moved, o.kernels, counts[k],
                        o.variant) for k, o in first.items())


# ---------------------------------------------------------------------------------- torch

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


class _Recorder:
    """Builds the dispatch mode lazily so importing this module never imports torch."""

    def __new__(cls, torch: Any, real: bool) -> Any:
        from torch.utils import flop_counter as fc
        from torch.utils._python_dispatch import TorchDispatchMode

        registry = {p.__name__ if hasattr(p, "__name__") else str(p): f
                    for p, f in fc.flop_registry.items()}
        registry.update(_extra_formulas())
        return _make_mode(TorchDispatchMode, torch, real, registry)


def _make_mode(base: type, torch: Any, real: bool, registry: dict[str, Any]) -> Any:
    dk = torch._C.DispatchKey
    after_python = torch._C._dispatch_keyset_full_after(dk.Python)

    class Recorder(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[OpCost] = []
            self.unknown: set[str] = set()

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            name = _op_name(func)
            if name in _SKIP or not hasattr(func, "_overloadpacket"):
                return func(*args, **kwargs)
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
            if op_class == "view":
                self.ops.append(OpCost(name, "view", _dtype(args, out, torch), 0.0, 0.0, 0))
                return
            nbytes = op_bytes(func, args, kwargs, out, torch)
            flops = self._flops(name, op_class, args, kwargs, out)
            self.ops.append(OpCost(name, op_class, _dtype(args, out, torch), flops, nbytes, 1,
                                   variant=_variant(op_class, args, out)))

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


#: Output rows (the smaller output dimension) up to which a matmul is matrix-vector-like,
#: and up to which it is "skinny": both run well below the square-matmul rate of the same
#: FLOPs (less reuse per loaded weight), so calibration measures them as their own paths.
GEMV_ROWS = 8
SKINNY_ROWS = 256


def matmul_variant(out: Any) -> str:
    """``gemv`` or ``skinny`` for a matmul whose output has few rows, else ``""``."""
    shape = tuple(getattr(out, "shape", ()))
    rows = min(shape[-2:]) if len(shape) >= 2 else 1
    if rows <= GEMV_ROWS:
        return "gemv"
    return "skinny" if rows <= SKINNY_ROWS else ""


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


def _host_nbytes(value: Any) -> float:
    if isinstance(value, (tuple, list)):
        return sum(_host_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_host_nbytes(v) for v in value.values())
    if hasattr(value, "element_size") and hasattr(value, "numel"):
        return float(value.element_size() * value.numel())
    if hasattr(value, "nbytes"):
        return float(value.nbytes)
    return 0.0


def _count_modules(torch: Any) -> tuple[list[int], Any]:
    calls = [0]

    def hook(module: Any, inputs: Any) -> None:
        calls[0] += 1

    return calls, torch.nn.modules.module.register_module_forward_pre_hook(hook)


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
    ops, out, modules, unknown = _record_call(torch, fn, args, tensors == "fake", mode, real)
    notes = [f"{n}: no FLOP formula; counted as 0 FLOPs" for n in sorted(unknown)]
    fused = sorted({o.op for o in ops if o.op in _OPAQUE})
    if fused:
        notes.append(f"fused kernels counted whole, not by the kernels inside them: "
                     f"{', '.join(fused)} ({tensors} tensors; real ones look inside)")
    return WorkloadCosts(workload, size, dtype, mode, "torch", f"torch-dispatch:{tensors}",
                         merge_ops(ops), _host_nbytes(args), _host_nbytes(out), items, 0,
                         modules, tuple(notes))


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
        recorder = _Recorder(torch, real)
        calls, handle = _count_modules(torch)
        try:
            with recorder:
                out = fn(*args)
        finally:
            handle.remove()
    return recorder.ops, out, calls[0], recorder.unknown


def jax_costs(workload: Any, size: str, dtype: str = "float32",
              mode: str = "inference") -> WorkloadCosts:
    """Per-kernel costs of the workload's compiled XLA program (CPU compilation)."""
    import jax

    from chipfit.cost import _hlo
    from chipfit.backends import get_backend
    from chipfit.spec import DeviceRef

    size = workload.parse_size(size)
    backend = get_backend("jax")
    with backend.session(DeviceRef("jax", "cpu", 0)) as session:
        prepared = workload.build("jax", size, dtype, mode, session)
    fn, lead = _jax_program(jax, prepared.fn)
    specs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                   (*lead, *prepared.host_args))
    compiled = fn.lower(*specs).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device
        analysis = analysis[0] if analysis else {}
    kernels = _hlo.entry_kernels(compiled.as_text())
    out = jax.eval_shape(fn, *specs)
    if lead:  # a stateful step returns (new state ..., value): only the value comes back
        out = jax.tree_util.tree_leaves(out)[-1:]
    out_bytes = sum(math.prod(o.shape) * o.dtype.itemsize for o in jax.tree_util.tree_leaves(out))
    ops = merge_ops(OpCost(k.opcode, k.op_class, k.dtype, k.flops, k.bytes_moved, 1, k.count)
                    for k in kernels)
    note = (f"XLA cost_analysis: {float(analysis.get('flops', 0)):.4g} FLOPs, "
            f"{float(analysis.get('bytes accessed', 0)):.4g} bytes accessed (loop bodies once)")
    return WorkloadCosts(workload.name, size, dtype, mode, "jax", "xla-hlo", ops,
                         _host_nbytes(prepared.host_args), float(out_bytes), prepared.items, 1, 0,
                         (note,))


def _jax_program(jax: Any, fn: Any) -> tuple[Any, tuple[Any, ...]]:
    """The jitted pure program behind a workload's ``fn`` and its leading (state) arguments."""
    program = getattr(fn, "program", None)
    if program is not None:  # a stateful call (train step): cost the pure program
        pure, lead = program
        return pure, tuple(lead)
    return (fn if hasattr(fn, "lower") else jax.jit(fn)), ()


def extract_costs(workload: Any, size: str, dtype: str = "float32", mode: str = "inference",
                  backend: str = "torch", *, tensors: str = "auto") -> WorkloadCosts:
    """Costs of ``workload`` (a name or a :class:`~chipfit.workloads.Workload`) on ``backend``."""
    if isinstance(workload, str):
        from chipfit.workloads import get_workload

        workload = get_workload(workload)
    if backend not in workload.backends():
        raise UnsupportedError(f"{workload.name} has no {backend} implementation "
                               f"(it has: {', '.join(workload.backends()) or 'none'})")
    if backend == "jax":
        return jax_costs(workload, size, dtype, mode)
    if backend == "torch":
        return torch_costs(workload, size, dtype, mode, tensors=tensors)
    raise UnsupportedError(f"no cost extraction for backend {backend!r}")
