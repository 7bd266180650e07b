"""Small networks on torch, JAX and TensorFlow: an MLP, a CNN, an LSTM and a Transformer block.

The size axis is the batch. Every network runs in ``inference``, ``train`` (forward, backward,
SGD-with-momentum step over all parameters) and ``finetune`` (only the ``head`` trains) on
torch, on JAX and on TensorFlow. Weights are created once in numpy from a seed
(:meth:`Net.init_weights`) and loaded unchanged into the torch module and the JAX parameter
dict, and with their layouts converted into a Keras 3 model (:meth:`Net.keras_model`,
``_tf_nets``), so the three frameworks run the same network on the same inputs
(:func:`twins` for torch and JAX).

Analytic cost (per call, batch ``B``; "dense" = ``2*rows*in*out`` FLOPs plus the bias add):
- forward: the sum over the layers listed in each network's ``_ops`` (dense, convolution
  ``2*B*Cout*H*W*Cin*k*k``, LSTM ``2*4H*(I+H)`` per frame and layer plus ~9 pointwise FLOPs per
  hidden unit, attention ``4*B*S^2*D`` for scores and weighted sum).
- train: backward costs about twice the forward (gradients w.r.t. activations and weights,
  Kaplan et al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1), so 3x forward, plus
  the optimizer: 4 FLOPs and 20 bytes (fp32 read p, g, v; write p, v) per trainable parameter.
- finetune: forward, plus backward through the head only (2x the head's forward), plus the
  optimizer over the head.
Bytes moved count every layer reading its inputs and weights and writing its outputs once:
weights at 4 bytes (float32 master copy, cast on the fly as autocast does), activations at the
compute dtype's size. Host<->device bytes are the float32 inputs (and int64 labels when
training) in, the logits (or the scalar loss) out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipfit.errors import UnsupportedError
from chipfit.results import Cost
from chipfit.spec import MODES
from chipfit.workloads.base import Prepared, Workload, itemsize, parse_count

__all__ = ["CNN", "LSTM", "MLP", "Net", "TransformerBlock", "Twins", "twins", "workloads"]

#: Learning rate and momentum of every train/finetune step, on both frameworks (torch's side
#: uses chipfit.workloads.training.torch_model_call, whose SGD has momentum 0.9).
LR = 1e-3
MOMENTUM = 0.9
_WEIGHT_BYTES = 4  # float32 master weights
_LABEL_BYTES = 8  # torch's int64 class labels


@dataclass(frozen=True)
class _Op:
    """One layer's work in elements: FLOPs, weight elements read, activations in and out."""

    flops: float
    weights: float = 0.0
    inputs: float = 0.0
    outputs: float = 0.0
    kernels: int = 1
    head: bool = False

    def cost(self, act_bytes: int) -> Cost:
        moved = self.weights * _WEIGHT_BYTES + (self.inputs + self.outputs) * act_bytes
        return Cost(flops=self.flops, bytes_moved=moved, kernels=self.kernels)


def _dense(rows: int, fan_in: int, fan_out: int, head: bool = False) -> _Op:
    return _Op(2.0 * rows * fan_in * fan_out + rows * fan_out, fan_in * fan_out + fan_out,
               rows * fan_in, rows * fan_out, head=head)


def _pointwise(elements: int, flops_each: float = 1.0) -> _Op:
    return _Op(elements * flops_each, 0.0, elements, elements)


@dataclass(frozen=True)
class _Param:
    shape: tuple[int, ...]
    bound: float = 0.0  # uniform(-bound, bound); 0 marks a layer-norm weight/bias
    norm: str = ""  # "weight" | "bias" for layer norms


def _linear_params(name: str, fan_in: int, fan_out: int) -> dict[str, _Param]:
    # torch's default Linear/Conv init (kaiming_uniform with a=sqrt(5)) is uniform(+-1/sqrt(fan_in))
    bound = 1 / math.sqrt(fan_in)
    return {f"{name}.weight": _Param((fan_out, fan_in), bound),
            f"{name}.bias": _Param((fan_out,), bound)}


@dataclass(frozen=True)
class Twins:
    """One network built from the same numpy weights: a torch module, JAX params and (asked
    for with ``twins(..., keras=True)``) a Keras 3 model on TensorFlow."""

    weights: dict[str, np.ndarray]
    torch_model: Any
    jax_params: dict[str, Any]
    jax_apply: Callable[[dict[str, Any], Any], Any]
    keras_model: Any = None


class Net(Workload):
    """A network whose size axis is the batch, built from shared numpy weights on each backend."""

    axis = "batch"
    modes = MODES
    classes: int = 10
    #: Per-device batch for ``chipfit scale`` when none is given.
    scale_batch: int = 32

    # ---- what subclasses define ------------------------------------------------------------
    def input_shape(self, batch: int) -> tuple[int, ...]:
        raise NotImplementedError

    def param_specs(self) -> dict[str, _Param]:
        raise NotImplementedError

    def _ops(self, batch: int) -> list[_Op]:
        raise NotImplementedError

    def torch_module(self) -> Any:
        """A fresh torch ``nn.Module`` of this architecture (weights not yet loaded)."""
        raise NotImplementedError

    def jax_apply(self, params: dict[str, Any], x: Any) -> Any:
        """Logits of ``x`` under ``params`` (pure JAX, traceable)."""
        raise NotImplementedError

    def keras_model(self, weights: dict[str, np.ndarray], dtype: str = "float32") -> Any:
        """This architecture as a Keras 3 model (TensorFlow) holding ``weights``."""
        raise NotImplementedError

    # ---- weights and data ------------------------------------------------------------------
    def init_weights(self, seed: int = 0) -> dict[str, np.ndarray]:
        """float32 weights keyed by torch ``state_dict`` name, in torch's layouts."""
        rng = np.random.default_rng(seed)
        out = {}
        for name, spec in self.param_specs().items():
            if spec.norm:  # perturbed from (1, 0) so a swapped weight/bias shows in a test
                base = 1.0 if spec.norm == "weight" else 0.0
                value = base + 0.1 * rng.standard_normal(spec.shape)
            else:
                value = rng.uniform(-spec.bound, spec.bound, spec.shape)
            out[name] = value.astype(np.float32)
        return out

    def sample_batch(self, batch: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Seeded float32 inputs and int64 class labels for ``batch`` samples."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape(batch)).astype(np.float32)
        return x, rng.integers(0, self.classes, batch).astype(np.int64)

    def param_count(self, head_only: bool = False) -> int:
        return sum(math.prod(s.shape) for n, s in self.param_specs().items()
                   if not head_only or n.startswith("head."))

    # ---- cost and memory -------------------------------------------------------------------
    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        batch = parse_count(size)
        ops = self._ops(batch)
        act = itemsize(dtype)
        forward = sum((op.cost(act) for op in ops), Cost())
        if mode == "inference":
            work = forward
        elif mode == "train":
            work = forward * 3 + _optimizer(self.param_count())
        else:
            head = sum((op.cost(act) for op in ops if op.head), Cost())
            work = forward + head * 2 + _optimizer(self.param_count(head_only=True))
        return Cost(work.flops, work.bytes_moved, self._transfer_bytes(batch, mode), work.kernels)

    def _transfer_bytes(self, batch: int, mode: str) -> float:
        x = math.prod(self.input_shape(batch)) * 4
        if mode == "inference":
            return float(x + batch * self.classes * 4)
        return float(x + batch * _LABEL_BYTES + 4)

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int:
        """Weights (x3 with gradients and momentum when all train) plus activations.

        Training keeps every layer's output for the backward pass; inference and finetune
        (whose backbone needs no gradients) hold about two layers' activations at a time.
        """
        batch = parse_count(size)
        acts = [op.outputs for op in self._ops(batch)]
        kept = sum(acts) * 2 if mode == "train" else 2 * max(acts)
        weights = self.param_count() * _WEIGHT_BYTES
        trained = {"inference": 0, "train": self.param_count(),
                   "finetune": self.param_count(head_only=True)}[mode]
        inputs = math.prod(self.input_shape(batch)) * 4
        return int(weights + 2 * trained * _WEIGHT_BYTES + kept * itemsize(dtype) + inputs)

    # ---- builders --------------------------------------------------------------------------
    def _details(self, mode: str) -> tuple[tuple[str, str], ...]:
        trainable = {"inference": 0, "train": self.param_count(),
                     "finetune": self.param_count(head_only=True)}[mode]
        return (("params", str(self.param_count())), ("trainable_params", str(trainable)),
                ("model_bytes", str(self.param_count() * _WEIGHT_BYTES)))

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import torch

        from chipfit.workloads import _torch_nets
        from chipfit.workloads.training import prepared, torch_model_call

        batch = parse_count(size)
        net = _torch_nets.load_weights(self.torch_module(), self.init_weights())
        x, y = self.sample_batch(batch)
        if mode == "inference":
            fn = torch_model_call(net, mode, dtype, session.handle, loss=_identity)
            return prepared(fn, (torch.from_numpy(x),), net, batch, mode)
        fn = torch_model_call(_torch_nets.WithLoss(net), mode, dtype, session.handle,
                              loss=_identity, head=("net.head",), lr=LR)
        return prepared(fn, (torch.from_numpy(x), torch.from_numpy(y)), net, batch, mode)

    def inference_module(self, size: str) -> tuple[Any, tuple[Any, ...], int, tuple[tuple[str, str], ...]]:
        import torch

        from chipfit.workloads import _torch_nets

        batch = parse_count(size)
        net = _torch_nets.load_weights(self.torch_module(), self.init_weights()).eval()
        return net, (torch.from_numpy(self.sample_batch(batch)[0]),), batch, self._details("inference")

    def _build_jax(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import jax

        from chipfit.workloads import _jax_nets

        batch = parse_count(size)
        params = jax.device_put(self.init_weights(), session.handle)
        call = _jax_nets.program(self.jax_apply, mode, dtype, params, LR, MOMENTUM)
        x, y = self.sample_batch(batch)
        host = (x,) if mode == "inference" else (x, y.astype(np.int32))
        return Prepared(call, host, items=batch, details=self._details(mode))

    def backends(self) -> Sequence[str]:
        """TensorFlow only for the networks that have a Keras model."""
        names = tuple(super().backends())
        if type(self).keras_model is Net.keras_model:
            names = tuple(n for n in names if n != "tensorflow")
        return names

    def _build_tensorflow(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        if "tensorflow" not in self.backends():
            raise UnsupportedError(f"{self.name} has no tensorflow implementation")
        from chipfit.backends.tensorflow import compiled, import_tensorflow

        tf = import_tensorflow()
        from chipfit.workloads import _tf_nets  # imports keras: after TensorFlow's quiet start

        _tf_nets.require_tensorflow_keras()
        batch = parse_count(size)
        with tf.device(session.handle):  # variables (and optimizer slots) on the device
            model = self.keras_model(self.init_weights(), dtype)
            call = compiled(_tf_nets.program(model, mode, LR, MOMENTUM), session.handle)
        x, y = self.sample_batch(batch)
        host = (x,) if mode == "inference" else (x, y)
        details = (("program", "Keras 3 model, tf.function(jit_compile=True)"),)
        return Prepared(call, host, items=batch, details=self._details(mode) + details)


def _optimizer(params: int) -> Cost:
    return Cost(flops=4.0 * params, bytes_moved=20.0 * params, kernels=1)


def _identity(value: Any) -> Any:
    return value


class MLP(Net):
    name = "mlp"
    family = "mlp"
    description = ("MLP on flattened 28x28 inputs: 784-1024-1024-1024 ReLU, 10-class head; "
                   "size = batch")
    dims: Sequence[int] = (784, 1024, 1024, 1024, 10)
    default_sizes = ("1", "4", "16", "64", "256", "1024", "4096")
    quick_sizes = ("1", "64", "256")
    scale_batch = 256

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.dims[0])

    def param_specs(self) -> dict[str, _Param]:
        specs: dict[str, _Param] = {}
        for i, (a, b) in enumerate(zip(self.dims[:-2], self.dims[1:-1], strict=True)):
            specs |= _linear_params(f"body.{2 * i}", a, b)
        return specs | _linear_params("head", self.dims[-2], self.dims[-1])

    def _ops(self, batch: int) -> list[_Op]:
        ops = []
        for a, b in zip(self.dims[:-2], self.dims[1:-1], strict=True):
            ops += [_dense(batch, a, b), _pointwise(batch * b)]
        return ops + [_dense(batch, self.dims[-2], self.dims[-1], head=True)]

    def torch_module(self) -> Any:
        from chipfit.workloads._torch_nets import MLP as TorchMLP

        return TorchMLP(self.dims)

    def jax_apply(self, params: dict[str, Any], x: Any) -> Any:
        from chipfit.workloads._jax_nets import mlp

        return mlp(params, x, len(self.dims) - 2)

    def keras_model(self, weights: dict[str, np.ndarray], dtype: str = "float32") -> Any:
        from chipfit.workloads._tf_nets import mlp

        return mlp(weights, self.dims, dtype)


class CNN(Net):
    name = "cnn"
    family = "cnn"
    description = ("28x28 digit classifier: 2x (3x3 conv + ReLU + 2x2 max-pool; 32, 64 "
                   "channels), dense 128, 10-class head; size = batch")
    side, channels, hidden = 28, (1, 32, 64), 128
    default_sizes = ("1", "8", "32", "128", "512", "2048")
    quick_sizes = ("1", "32", "128")
    scale_batch = 128

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.channels[0], self.side, self.side)

    def param_specs(self) -> dict[str, _Param]:
        specs: dict[str, _Param] = {}
        for name, (cin, cout) in (("features.0", self.channels[:2]),
                                  ("features.3", self.channels[1:])):
            bound = 1 / math.sqrt(cin * 9)
            specs[f"{name}.weight"] = _Param((cout, cin, 3, 3), bound)
            specs[f"{name}.bias"] = _Param((cout,), bound)
        flat = self.channels[2] * (self.side // 4) ** 2
        return specs | _linear_params("fc", flat, self.hidden) | _linear_params(
            "head", self.hidden, self.classes)

    def _ops(self, batch: int) -> list[_Op]:
        ops, side = [], self.side
        for cin, cout in (self.channels[:2], self.channels[1:]):
            out = batch * cout * side * side
            ops += [_Op(2.0 * out * cin * 9 + out, cout * cin * 9 + cout,
                        batch * cin * side * side, out),
                    _pointwise(out),
                    _Op(out * 3 / 4, 0.0, out, out / 4)]  # 3 comparisons per 2x2 window
            side //= 2
        flat = self.channels[2] * side * side
        return ops + [_dense(batch, flat, self.hidden), _pointwise(batch * self.hidden),
                      _dense(batch, self.hidden, self.classes, head=True)]

    def torch_module(self) -> Any:
        from chipfit.workloads._torch_nets import CNN as TorchCNN

        return TorchCNN(self.channels, self.side, self.hidden, self.classes)

    def jax_apply(self, params: dict[str, Any], x: Any) -> Any:
        from chipfit.workloads._jax_nets import cnn

        return cnn(params, x)

    def keras_model(self, weights: dict[str, np.ndarray], dtype: str = "float32") -> Any:
        from chipfit.workloads._tf_nets import cnn

        return cnn(weights, self.channels, self.side, self.hidden, self.classes, dtype)


class LSTM(Net):
    name = "lstm"
    family = "rnn"
    description = ("speech model: 80 mel features x 300 frames, 3-layer LSTM (512 hidden), "
                   "35-class head on the last frame; size = batch")
    features, hidden, layers, frames = 80, 512, 3, 300
    classes = 35
    default_sizes = ("1", "4", "16", "64", "256")
    quick_sizes = ("1", "4")
    scale_batch = 4

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.frames, self.features)

    def param_specs(self) -> dict[str, _Param]:
        h, bound = self.hidden, 1 / math.sqrt(self.hidden)  # torch's LSTM init
        specs: dict[str, _Param] = {}
        for layer in range(self.layers):
            fan_in = self.features if layer == 0 else h
            specs |= {f"lstm.weight_ih_l{layer}": _Param((4 * h, fan_in), bound),
                      f"lstm.weight_hh_l{layer}": _Param((4 * h, h), bound),
                      f"lstm.bias_ih_l{layer}": _Param((4 * h,), bound),
                      f"lstm.bias_hh_l{layer}": _Param((4 * h,), bound)}
        return specs | _linear_params("head", h, self.classes)

    def _ops(self, batch: int) -> list[_Op]:
        h, t, ops = self.hidden, self.frames, []
        for layer in range(self.layers):
            fan_in = self.features if layer == 0 else h
            ops.append(_dense(batch * t, fan_in, 4 * h))  # every frame's input projection
            # Recurrence: per frame a (B,H)x(H,4H) matmul re-reading the recurrent weights,
            # then ~9 pointwise FLOPs per hidden unit (3 sigmoid, 2 tanh, 3 mul, 1 add);
            # gates, c and h are kept for the backward pass. Two kernels per frame.
            per_frame = 2.0 * batch * h * 4 * h + batch * 4 * h + 9.0 * batch * h
            ops.append(_Op(t * per_frame, t * 4 * h * h, batch * t * 4 * h,
                           batch * t * 6 * h, kernels=2 * t))
        return ops + [_dense(batch, h, self.classes, head=True)]

    def torch_module(self) -> Any:
        from chipfit.workloads._torch_nets import SpeechLSTM

        return SpeechLSTM(self.features, self.hidden, self.layers, self.classes)

    def jax_apply(self, params: dict[str, Any], x: Any) -> Any:
        from chipfit.workloads._jax_nets import lstm

        return lstm(params, x, self.layers)

    def keras_model(self, weights: dict[str, np.ndarray], dtype: str = "float32") -> Any:
        from chipfit.workloads._tf_nets import lstm

        return lstm(weights, self.features, self.frames, self.hidden, self.layers,
                    self.classes, dtype)


class TransformerBlock(Net):
    name = "transformer-block"
    family = "transformer"
    description = ("one post-norm Transformer encoder block (d_model 512, 8 heads, ff 2048, "
                   "seq 128), mean-pooled, 10-class head; size = batch")
    d_model, heads, ff, seq = 512, 8, 2048, 128
    default_sizes = ("1", "4", "16", "64", "256")
    quick_sizes = ("1", "4", "16")
    scale_batch = 8

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.seq, self.d_model)

    def param_specs(self) -> dict[str, _Param]:
        d, ff = self.d_model, self.ff
        xavier = math.sqrt(6 / (d + 3 * d))  # torch: xavier_uniform on in_proj_weight
        specs = {"block.self_attn.in_proj_weight": _Param((3 * d, d), xavier),
                 "block.self_attn.in_proj_bias": _Param((3 * d,), 1 / math.sqrt(d))}
        specs |= _linear_params("block.self_attn.out_proj", d, d)
        specs |= _linear_params("block.linear1", d, ff) | _linear_params("block.linear2", ff, d)
        for norm in ("block.norm1", "block.norm2"):
            specs |= {f"{norm}.weight": _Param((d,), norm="weight"),
                      f"{norm}.bias": _Param((d,), norm="bias")}
        return specs | _linear_params("head", d, self.classes)

    def _ops(self, batch: int) -> list[_Op]:
        d, s, tokens = self.d_model, self.seq, batch * self.seq
        scores = batch * self.heads * s * s
        norm = _Op(8.0 * tokens * d, 2 * d, 2 * tokens * d, tokens * d)  # residual + LayerNorm
        return [_dense(tokens, d, 3 * d),
                _Op(2.0 * batch * s * s * d, 0.0, 2 * tokens * d, scores),  # q k^T
                _pointwise(scores, 5.0),  # softmax: max, subtract, exp, sum, divide
                _Op(2.0 * batch * s * s * d, 0.0, scores + tokens * d, tokens * d),  # a v
                _dense(tokens, d, d), norm,
                _dense(tokens, d, self.ff), _pointwise(tokens * self.ff),
                _dense(tokens, self.ff, d), norm,
                _Op(tokens * d, 0.0, tokens * d, batch * d),  # mean over the sequence
                _dense(batch, d, self.classes, head=True)]

    def torch_module(self) -> Any:
        from chipfit.workloads._torch_nets import EncoderClassifier

        return EncoderClassifier(self.d_model, self.heads, self.ff, self.classes)

    def jax_apply(self, params: dict[str, Any], x: Any) -> Any:
        from chipfit.workloads._jax_nets import encoder_block

        return encoder_block(params, x, self.heads)

    def keras_model(self, weights: dict[str, np.ndarray], dtype: str = "float32") -> Any:
        from chipfit.workloads._tf_nets import encoder_block

        return encoder_block(weights, self.seq, self.d_model, self.heads, self.ff,
                             self.classes, dtype)


def twins(name: str, seed: int = 0, keras: bool = False) -> Twins:
    """Network ``name`` as a torch module and JAX params loaded from the same numpy weights
    (and with ``keras``, a Keras 3 model on TensorFlow holding them too).

    For checking that the frameworks compute the same thing: feed each ``Net.sample_batch``
    inputs (torch: ``torch_model.eval()``; JAX: ``jax_apply(jax_params, x)``; Keras:
    ``keras_model(x, training=False)``).
    """
    import jax.numpy as jnp

    from chipfit.workloads import _torch_nets, get_workload

    net = get_workload(name)
    if not isinstance(net, Net):
        from chipfit.errors import InvalidInputError

        raise InvalidInputError(f"{name!r} is not one of the small networks "
                                f"({', '.join(w.name for w in workloads())})")
    weights = net.init_weights(seed)
    model = _torch_nets.load_weights(net.torch_module(), weights)
    params = {k: jnp.asarray(v) for k, v in weights.items()}
    keras_model = None
    if keras:
        from chipfit.backends.tensorflow import import_tensorflow

        import_tensorflow()
        keras_model = net.keras_model(weights)
    return Twins(weights, model, params, net.jax_apply, keras_model)


def workloads() -> list[Workload]:
    return [MLP(), CNN(), LSTM(), TransformerBlock()]
