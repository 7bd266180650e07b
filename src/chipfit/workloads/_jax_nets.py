"""The small networks in pure JAX/lax, and their inference, train and finetune programs.

Parameters are a flat dict keyed by the torch ``state_dict`` names, in torch's layouts
(Linear weight ``(out, in)``, Conv2d ``OIHW``, LSTM gates stacked ``i, f, g, o``), so one set
of numpy weights loads into both frameworks unchanged (see ``nets.twins``).

Mixed precision mirrors torch autocast: weights stay float32 (the optimizer's master copy) and
are cast to the compute dtype inside the program; softmax, layer norm and the loss run in
float32. Training is plain JAX: ``jax.value_and_grad`` and SGD with momentum written out the
way ``torch.optim.SGD(momentum=0.9)`` computes it, so both frameworks take the same step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["JaxProgramCall", "cnn", "encoder_block", "lstm", "mlp", "program"]

Params = dict[str, Any]
Apply = Callable[[Params, Any], Any]

HEAD = "head."  # parameter prefix that stays trainable in finetune mode


# ---- layers ---------------------------------------------------------------------------------
def _linear(p: Params, name: str, x: Any) -> Any:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _layer_norm(p: Params, name: str, x: Any, eps: float = 1e-5) -> Any:
    x32 = x.astype(jnp.float32)  # autocast runs layer_norm in float32
    mean = x32.mean(-1, keepdims=True)
    var = ((x32 - mean) ** 2).mean(-1, keepdims=True)
    y = (x32 - mean) * lax.rsqrt(var + eps)
    return (y * p[f"{name}.weight"].astype(jnp.float32)
            + p[f"{name}.bias"].astype(jnp.float32)).astype(x.dtype)


def _conv(p: Params, name: str, x: Any) -> Any:
    """3x3 convolution, stride 1, padding 1, in torch's NCHW/OIHW layout."""
    y = lax.conv_general_dilated(x, p[f"{name}.weight"], window_strides=(1, 1),
                                 padding=((1, 1), (1, 1)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p[f"{name}.bias"][None, :, None, None]


def _max_pool2(x: Any) -> Any:
    # A Python -inf init lets lax recognise max-pooling (and differentiate it).
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


# ---- networks: (params, x) -> logits ----------------------------------------------------------
def mlp(p: Params, x: Any, hidden_layers: int) -> Any:
    for i in range(hidden_layers):
        x = jax.nn.relu(_linear(p, f"body.{2 * i}", x))
    return _linear(p, "head", x)


def cnn(p: Params, x: Any) -> Any:
    x = _max_pool2(jax.nn.relu(_conv(p, "features.0", x)))
    x = _max_pool2(jax.nn.relu(_conv(p, "features.3", x)))
    x = jax.nn.relu(_linear(p, "fc", x.reshape(x.shape[0], -1)))  # NCHW flatten, as torch
    return _linear(p, "head", x)


def _lstm_layer(p: Params, layer: int, xs: Any) -> Any:
    """One LSTM layer over time-major ``xs`` (T, B, I); returns all hidden states (T, B, H)."""
    w_hh = p[f"lstm.weight_hh_l{layer}"]
    # The input projection of every frame is one large matmul outside the recurrence.
    gates_x = xs @ p[f"lstm.weight_ih_l{layer}"].T + (
        p[f"lstm.bias_ih_l{layer}"] + p[f"lstm.bias_hh_l{layer}"])
    zeros = jnp.zeros((xs.shape[1], w_hh.shape[1]), xs.dtype)

    def cell(carry: tuple[Any, Any], gx: Any) -> tuple[tuple[Any, Any], Any]:
        h, c = carry
        i, f, g, o = jnp.split(gx + h @ w_hh.T, 4, axis=-1)  # torch's gate order
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    return lax.scan(cell, (zeros, zeros), gates_x)[1]


def lstm(p: Params, x: Any, layers: int) -> Any:
    """Stacked LSTM over (B, T, F) frames; the head classifies the last hidden state."""
    hs = jnp.swapaxes(x, 0, 1)
    for layer in range(layers):
        hs = _lstm_layer(p, layer, hs)
    return _linear(p, "head", hs[-1])


def _attention(p: Params, x: Any, heads: int) -> Any:
    b, s, d = x.shape
    qkv = x @ p["block.self_attn.in_proj_weight"].T + p["block.self_attn.in_proj_bias"]
    q, k, v = (t.reshape(b, s, heads, d // heads) for t in jnp.split(qkv, 3, axis=-1))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // heads)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(x.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, s, d)
    return _linear(p, "block.self_attn.out_proj", out)


def encoder_block(p: Params, x: Any, heads: int) -> Any:
    """torch's post-norm ``TransformerEncoderLayer`` (ReLU, no dropout), mean-pooled, head."""
    x = _layer_norm(p, "block.norm1", x + _attention(p, x, heads))
    ff = _linear(p, "block.linear2", jax.nn.relu(_linear(p, "block.linear1", x)))
    x = _layer_norm(p, "block.norm2", x + ff)
    return _linear(p, "head", x.mean(axis=1))


# ---- programs ---------------------------------------------------------------------------------
def _cast(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype), tree)


def cross_entropy(logits: Any, labels: Any) -> Any:
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _loss(apply: Apply, dtype: Any) -> Callable[[Params, Any, Any], Any]:
    def loss(params: Params, x: Any, y: Any) -> Any:
        return cross_entropy(apply(_cast(params, dtype), x.astype(dtype)), y)

    return loss


def _sgd(params: Params, velocity: Params, grads: Params, lr: float,
         momentum: float) -> tuple[Params, Params]:
    """torch.optim.SGD with momentum (dampening 0): v = m v + g; p = p - lr v."""
    velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
    params = jax.tree.map(lambda w, v: w - lr * v, params, velocity)
    return params, velocity


def _train(apply: Apply, dtype: Any, lr: float, momentum: float) -> Callable[..., Any]:
    grad_fn = jax.value_and_grad(_loss(apply, dtype))

    def step(params: Params, velocity: Params, x: Any, y: Any) -> tuple[Params, Params, Any]:
        value, grads = grad_fn(params, x, y)
        params, velocity = _sgd(params, velocity, grads, lr, momentum)
        return params, velocity, value

    return step


def _finetune(apply: Apply, dtype: Any, lr: float, momentum: float) -> Callable[..., Any]:
    """Transfer learning: gradients for the head only; the backbone is a constant."""
    loss = _loss(apply, dtype)

    def head_loss(head: Params, backbone: Params, x: Any, y: Any) -> Any:
        return loss({**lax.stop_gradient(backbone), **head}, x, y)

    grad_fn = jax.value_and_grad(head_loss)

    def step(head: Params, velocity: Params, backbone: Params, x: Any,
             y: Any) -> tuple[Params, Params, Any]:
        value, grads = grad_fn(head, backbone, x, y)
        head, velocity = _sgd(head, velocity, grads, lr, momentum)
        return head, velocity, value

    return step


class JaxProgramCall:
    """``fn(*inputs)`` for the timer, around one jitted pure program.

    A train step is pure in JAX (state in, new state out); this object keeps the state between
    calls, donating the old buffers as torch's in-place optimizer would reuse them. ``program``
    gives the pure function and its leading arguments, for cost analysis without tracing the
    stateful wrapper.
    """

    def __init__(self, pure: Callable[..., Any], state: Sequence[Any], fixed: Sequence[Any] = (),
                 **jit_kwargs: Any) -> None:
        self.state, self.fixed = tuple(state), tuple(fixed)
        self.stateful = bool(self.state)
        donate = tuple(range(len(self.state)))
        self.jitted = jax.jit(pure, donate_argnums=donate, **jit_kwargs)

    def __call__(self, *inputs: Any) -> Any:
        out = self.jitted(*self.state, *self.fixed, *inputs)
        if not self.stateful:
            return out
        *state, value = out
        self.state = tuple(state)
        return value

    @property
    def program(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.jitted, self.state + self.fixed


def program(apply: Apply, mode: str, dtype: str, params: Params, lr: float, momentum: float,
            **jit_kwargs: Any) -> JaxProgramCall:
    """The ``mode`` call of network ``apply`` on ``params`` (already placed on the device)."""
    compute = jnp.dtype(dtype)
    if mode == "inference":
        return JaxProgramCall(lambda p, x: apply(_cast(p, compute), x.astype(compute)), (),
                              (params,), **jit_kwargs)
    zeros = jax.tree.map(jnp.zeros_like, params)
    if mode == "train":
        return JaxProgramCall(_train(apply, compute, lr, momentum), (params, zeros),
                              **jit_kwargs)
    head = {k: v for k, v in params.items() if k.startswith(HEAD)}
    backbone = {k: v for k, v in params.items() if not k.startswith(HEAD)}
    velocity = {k: zeros[k] for k in head}
    return JaxProgramCall(_finetune(apply, compute, lr, momentum), (head, velocity),
                          (backbone,), **jit_kwargs)
