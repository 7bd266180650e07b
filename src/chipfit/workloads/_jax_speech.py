"""The CTC speech recogniser in pure JAX: bidirectional LSTM, CTC loss, greedy decoding.

Parameters are the torch ``state_dict`` names and layouts (see ``_jax_nets``), so the numpy
weights of ``speech.SpeechCTC`` load into both frameworks unchanged. The CTC loss is the
forward (alpha) recursion of Graves et al. 2006 ("Connectionist Temporal Classification",
sec. 4.1) in log space, reduced as ``torch.nn.CTCLoss(reduction="mean")`` reduces it (each
utterance's negative log-likelihood over its target length, averaged over the batch); the
train and finetune programs are ``_jax_nets``'s, with this loss in place of cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from chipfit.workloads._jax_nets import HEAD, JaxProgramCall, _cast, _linear, _sgd

__all__ = ["BLANK", "blstm_ctc", "ctc_loss", "ctc_program", "greedy_ctc"]

Params = dict[str, Any]
BLANK = 0
_NEG = -1e30  # log(0) kept finite, so no inf - inf (and no NaN gradient) in the recursion


def _direction(p: Params, layer: int, xs: Any, reverse: bool) -> Any:
    """One direction of one LSTM layer over time-major ``xs`` (T, B, I) -> (T, B, H)."""
    sfx = f"l{layer}" + ("_reverse" if reverse else "")
    w_hh = p[f"lstm.weight_hh_{sfx}"]
    gates_x = xs @ p[f"lstm.weight_ih_{sfx}"].T + (p[f"lstm.bias_ih_{sfx}"] + p[f"lstm.bias_hh_{sfx}"])
    zeros = jnp.zeros((xs.shape[1], w_hh.shape[1]), xs.dtype)

    def cell(carry: tuple[Any, Any], gx: Any) -> tuple[tuple[Any, Any], Any]:
        h, c = carry
        i, f, g, o = jnp.split(gx + h @ w_hh.T, 4, axis=-1)  # torch's gate order
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    # reverse=True walks the frames from the last and stores each output at its own frame
    return lax.scan(cell, (zeros, zeros), gates_x, reverse=reverse)[1]


def blstm_ctc(p: Params, x: Any, layers: int) -> Any:
    """Per-frame class logits (B, T, C) of a stacked bidirectional LSTM over (B, T, F)."""
    hs = jnp.swapaxes(x, 0, 1)
    for layer in range(layers):
        hs = jnp.concatenate([_direction(p, layer, hs, False), _direction(p, layer, hs, True)], -1)
    return _linear(p, "head", jnp.swapaxes(hs, 0, 1))


def greedy_ctc(logits: Any, blank: int = BLANK) -> tuple[Any, Any]:
    """Best path decoding: ``(ids, lengths)`` as ``_torch_speech.greedy_ctc`` returns them."""
    best = jnp.argmax(logits, axis=-1)
    prev = jnp.concatenate([jnp.full_like(best[:, :1], blank), best[:, :-1]], axis=1)
    keep = (best != blank) & (best != prev)
    order = jnp.argsort((~keep).astype(jnp.int8), axis=1, stable=True)
    ids = jnp.where(jnp.take_along_axis(keep, order, 1), jnp.take_along_axis(best, order, 1), blank)
    return ids, keep.sum(1)


def ctc_loss(logits: Any, targets: Any, blank: int = BLANK) -> Any:
    """Mean over the batch of -log p(targets | frames) / target length; ``targets`` (B, L) are
    padded with ``blank``, every utterance uses all its frames."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # (B, T, C)
    batch, labels = targets.shape
    lengths = (targets != blank).sum(1)
    ext = jnp.full((batch, 2 * labels + 1), blank, targets.dtype).at[:, 1::2].set(targets)
    # a label may follow the label two places back (skipping the blank) unless they are equal
    skip = jnp.concatenate([jnp.zeros((batch, 2), bool),
                            (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])], axis=1)
    emit = jnp.take_along_axis(logp, jnp.broadcast_to(ext[:, None, :], (batch, logp.shape[1],
                                                                        ext.shape[1])), axis=2)
    start = jnp.full(ext.shape, _NEG).at[:, :2].set(emit[:, 0, :2])

    def step(alpha: Any, e: Any) -> tuple[Any, None]:
        one = jnp.pad(alpha[:, :-1], ((0, 0), (1, 0)), constant_values=_NEG)
        two = jnp.where(skip, jnp.pad(alpha[:, :-2], ((0, 0), (2, 0)), constant_values=_NEG), _NEG)
        return jnp.logaddexp(jnp.logaddexp(alpha, one), two) + e, None

    alpha = lax.scan(step, start, jnp.swapaxes(emit[:, 1:], 0, 1))[0]
    end = 2 * lengths  # the final blank; the last label sits just before it
    final = jnp.logaddexp(jnp.take_along_axis(alpha, end[:, None], 1),
                          jnp.take_along_axis(alpha, (end - 1)[:, None], 1))[:, 0]
    return jnp.mean(-final / lengths)


def _loss(apply: Callable[[Params, Any], Any], dtype: Any) -> Callable[..., Any]:
    def loss(params: Params, x: Any, targets: Any) -> Any:
        return ctc_loss(apply(_cast(params, dtype), x.astype(dtype)), targets)

    return loss


def ctc_program(apply: Callable[[Params, Any], Any], mode: str, dtype: str, params: Params,
                lr: float, momentum: float) -> JaxProgramCall:
    """The ``mode`` call: decoding (inference) or a CTC train/finetune step with SGD momentum."""
    compute = jnp.dtype(dtype)
    if mode == "inference":
        return JaxProgramCall(lambda p, x: greedy_ctc(apply(_cast(p, compute), x.astype(compute))),
                              (), (params,))
    loss = _loss(apply, compute)
    zeros = jax.tree.map(jnp.zeros_like, params)
    if mode == "train":
        grad_fn = jax.value_and_grad(loss)

        def train(p: Params, v: Params, x: Any, y: Any) -> tuple[Params, Params, Any]:
            value, grads = grad_fn(p, x, y)
            return (*_sgd(p, v, grads, lr, momentum), value)

        return JaxProgramCall(train, (params, zeros))
    head = {k: v for k, v in params.items() if k.startswith(HEAD)}
    backbone = {k: v for k, v in params.items() if not k.startswith(HEAD)}
    head_grad = jax.value_and_grad(lambda h, b, x, y: loss({**lax.stop_gradient(b), **h}, x, y))

    def finetune(h: Params, v: Params, b: Params, x: Any, y: Any) -> tuple[Params, Params, Any]:
        value, grads = head_grad(h, b, x, y)
        return (*_sgd(h, v, grads, lr, momentum), value)

    return JaxProgramCall(finetune, (head, {k: zeros[k] for k in head}), (backbone,))
