"""The small networks as Keras 3 models on TensorFlow, loaded from the shared numpy weights.

Imported only when a TensorFlow builder runs. The weights come in torch's layouts
(:meth:`chipfit.workloads.nets.Net.init_weights`) and are converted here:

- Linear ``(out, in)`` -> Dense kernel ``(in, out)``;
- Conv2d ``OIHW`` -> Conv2D ``HWIO``; inputs stay ``NCHW`` as torch takes them and are
  permuted to ``NHWC`` inside the model (TensorFlow's CPU convolutions are channels-last),
  then back to ``NCHW`` before flattening so the dense layer sees torch's feature order;
- LSTM: Keras stacks the gates ``i, f, c, o``, the same order as torch's ``i, f, g, o``
  (``g`` and ``c`` are both the cell candidate), so the kernels are only transposed; Keras
  has one bias where torch has two (``b_ih + b_hh``);
- multi-head attention: torch's packed ``in_proj`` ``(3d, d)`` splits into Keras's query,
  key and value kernels ``(d, heads, d/heads)``; ``out_proj`` becomes ``(heads, d/heads, d)``.

Mixed precision mirrors torch autocast: bfloat16/float16 run under Keras's ``mixed_*`` dtype
policy (float32 variables, compute in the lower precision). Every LSTM has
``use_cudnn=False``: the cuDNN kernel is not XLA-compilable and chipfit's TensorFlow
programs are all ``jit_compile=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chipfit.backends.tensorflow import import_tensorflow

import_tensorflow()  # TensorFlow first, with its start-up notices filtered (Keras imports it)

import keras  # noqa: E402
from keras import layers  # noqa: E402

__all__ = ["cnn", "encoder_block", "lstm", "mlp", "program", "require_tensorflow_keras"]

Weights = dict[str, np.ndarray]
HEAD = "head"  # layer name that stays trainable in finetune mode


def require_tensorflow_keras() -> None:
    """Keras 3 picks its framework once, from ``KERAS_BACKEND`` at import; these models are
    traced by ``tf.function``, so Keras must run on TensorFlow here. (With ``jax`` or
    ``torch`` the same Keras code becomes a JAX or torch program; chipfit measures those
    frameworks through their own backends instead.)"""
    if keras.backend.backend() != "tensorflow":
        from chipfit.errors import UnsupportedError

        raise UnsupportedError(f"Keras runs on {keras.backend.backend()} in this process "
                               f"(KERAS_BACKEND={keras.backend.backend()}); the TensorFlow "
                               "nets need KERAS_BACKEND=tensorflow (or unset)")


def _policy(dtype: str) -> str:
    return "float32" if dtype == "float32" else f"mixed_{dtype}"


def _dense(units: int, name: str, dtype: str, activation: str | None = None) -> Any:
    return layers.Dense(units, activation=activation, name=name, dtype=_policy(dtype))


def _load_dense(model: Any, name: str, w: Weights, prefix: str) -> None:
    model.get_layer(name).set_weights([w[f"{prefix}.weight"].T, w[f"{prefix}.bias"]])


def mlp(w: Weights, dims: Sequence[int], dtype: str = "float32") -> Any:
    """Dense+ReLU through ``dims[1:-1]``, then the ``head`` to ``dims[-1]`` classes."""
    x = inputs = keras.Input((dims[0],))
    hidden = len(dims) - 2
    for i in range(hidden):
        x = _dense(dims[i + 1], f"body_{2 * i}", dtype, "relu")(x)
    model = keras.Model(inputs, _dense(dims[-1], HEAD, dtype)(x), name="mlp")
    for i in range(hidden):
        _load_dense(model, f"body_{2 * i}", w, f"body.{2 * i}")
    _load_dense(model, HEAD, w, "head")
    return model


def cnn(w: Weights, channels: Sequence[int], side: int, hidden: int, classes: int,
        dtype: str = "float32") -> Any:
    """Two 3x3 conv+ReLU+2x2 max-pool stages, a dense layer and the head; NCHW inputs."""
    policy = _policy(dtype)
    x = inputs = keras.Input((channels[0], side, side))
    x = layers.Permute((2, 3, 1), dtype=policy)(x)  # NCHW -> NHWC
    for name, width in (("features_0", channels[1]), ("features_3", channels[2])):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=name,
                          dtype=policy)(x)
        x = layers.MaxPooling2D(2, dtype=policy)(x)
    x = layers.Permute((3, 1, 2), dtype=policy)(x)  # NHWC -> NCHW: torch's flatten order
    x = _dense(hidden, "fc", dtype, "relu")(layers.Flatten(dtype=policy)(x))
    model = keras.Model(inputs, _dense(classes, HEAD, dtype)(x), name="cnn")
    for name in ("features.0", "features.3"):
        model.get_layer(name.replace(".", "_")).set_weights(
            [w[f"{name}.weight"].transpose(2, 3, 1, 0), w[f"{name}.bias"]])  # OIHW -> HWIO
    _load_dense(model, "fc", w, "fc")
    _load_dense(model, HEAD, w, "head")
    return model


def lstm(w: Weights, features: int, frames: int, hidden: int, stacked: int, classes: int,
         dtype: str = "float32") -> Any:
    """Stacked LSTM over (batch, frames, features); the head classifies the last frame."""
    x = inputs = keras.Input((frames, features))
    for layer in range(stacked):
        x = layers.LSTM(hidden, return_sequences=layer < stacked - 1, use_cudnn=False,
                        name=f"lstm_{layer}", dtype=_policy(dtype))(x)
    model = keras.Model(inputs, _dense(classes, HEAD, dtype)(x), name="lstm")
    for layer in range(stacked):
        model.get_layer(f"lstm_{layer}").set_weights(
            [w[f"lstm.weight_ih_l{layer}"].T, w[f"lstm.weight_hh_l{layer}"].T,
             w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]])
    _load_dense(model, HEAD, w, "head")
    return model


def encoder_block(w: Weights, seq: int, d: int, heads: int, ff: int, classes: int,
                  dtype: str = "float32") -> Any:
    """torch's post-norm ``TransformerEncoderLayer`` (ReLU, no dropout), mean-pooled, head."""
    policy = _policy(dtype)
    x = inputs = keras.Input((seq, d))
    attention = layers.MultiHeadAttention(heads, d // heads, name="attn", dtype=policy)
    norm1 = layers.LayerNormalization(epsilon=1e-5, name="norm1", dtype=policy)
    norm2 = layers.LayerNormalization(epsilon=1e-5, name="norm2", dtype=policy)
    x = norm1(layers.Add(dtype=policy)([x, attention(x, x)]))
    ff_out = _dense(d, "linear2", dtype)(_dense(ff, "linear1", dtype, "relu")(x))
    x = norm2(layers.Add(dtype=policy)([x, ff_out]))
    pooled = layers.GlobalAveragePooling1D(dtype=policy)(x)
    model = keras.Model(inputs, _dense(classes, HEAD, dtype)(pooled), name="encoder")
    hd = d // heads
    qkv_w = np.split(w["block.self_attn.in_proj_weight"], 3)
    qkv_b = np.split(w["block.self_attn.in_proj_bias"], 3)
    packed = []
    for weight, bias in zip(qkv_w, qkv_b, strict=True):
        packed += [weight.T.reshape(d, heads, hd), bias.reshape(heads, hd)]
    packed += [w["block.self_attn.out_proj.weight"].T.reshape(heads, hd, d),
               w["block.self_attn.out_proj.bias"]]
    attention.set_weights(packed)  # query, key, value, output: kernel then bias each
    for name in ("norm1", "norm2"):
        model.get_layer(name).set_weights([w[f"block.{name}.weight"], w[f"block.{name}.bias"]])
    _load_dense(model, "linear1", w, "block.linear1")
    _load_dense(model, "linear2", w, "block.linear2")
    _load_dense(model, HEAD, w, "head")
    return model


# ---- programs ---------------------------------------------------------------------------------
def program(model: Any, mode: str, lr: float, momentum: float) -> Callable[..., Any]:
    """The ``mode`` call of ``model`` as a plain function, for ``backends.tensorflow.compiled``.

    Training is a ``GradientTape`` step with Keras's SGD with momentum (``v = m v - lr g;
    p += v``: the same step as torch's ``v = m v + g; p -= lr v`` at a constant learning
    rate). Finetune trains the ``head`` only; the backbone gets no gradients.
    """
    tf = import_tensorflow()
    if mode == "inference":
        return lambda x: model(x, training=False)
    trained = (model.trainable_variables if mode == "train"
               else model.get_layer(HEAD).trainable_variables)
    optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    optimizer.build(trained)  # its slots exist before tracing, as tf.function needs
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, tf.cast(logits, tf.float32))  # the loss in float32, as autocast
        optimizer.apply(tape.gradient(loss, trained), trained)
        return loss

    return step
