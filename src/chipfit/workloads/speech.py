"""Speech recognition: a bidirectional LSTM with a CTC head over characters, on torch and JAX.

``lstm-ctc`` is the seeds' "LSTM for speech recognition" as a recogniser, not a classifier:
80 mel features x 300 frames (3 s at a 10 ms hop, as the ``lstm`` workload) through 4
bidirectional LSTM layers of 320 cells per direction, then a linear layer to per-frame logits
over 29 classes (CTC's blank, space, apostrophe and a-z: the usual English character set).
This is the shape of the deep BLSTM + CTC character models of EESEN (Miao, Gowayyed and
Metze 2015, "EESEN: End-to-End Speech Recognition using Deep RNN Models and WFST-based
Decoding"), 8.4M parameters.

Modes: ``inference`` recognises: per-frame logits, then greedy (best path) CTC decoding on the
device (the most likely class per frame, repeats collapsed, blanks dropped; the ids come back
packed to the left with their lengths, :func:`ctc_text` spells them). ``train`` computes the
CTC loss (``nn.CTCLoss``, mean reduction) against random transcripts of 30-45 characters
(speech runs at about 15 characters a second) and takes an SGD-with-momentum step;
``finetune`` trains the output layer only. The size axis is the batch.

Like the networks of :mod:`chipfit.workloads.nets`, the weights are made once in numpy and
loaded unchanged into the torch module and the JAX parameters (:func:`twins` checks they
agree). Analytic cost as in nets (LSTM ``2*4H*(I+H)`` per frame, layer and direction plus
~9 pointwise FLOPs per cell; train is 3x forward plus the optimizer); decoding and the loss's
softmax are counted as a few elementwise FLOPs per logit. The stacks other than eager
(``--stacks``) compile or export the acoustic model alone (input to logits), whose outputs
can be compared with eager's; decoding is a handful of elementwise operators after it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from chipfit.workloads.base import Prepared, Workload, parse_count
from chipfit.workloads.nets import LR, MOMENTUM, Net, Twins, _dense, _identity, _Op, _Param, _pointwise

__all__ = ["ALPHABET", "SpeechCTC", "ctc_text", "workloads"]

#: Class i is ``ALPHABET[i]``; class 0 is CTC's blank (never emitted).
ALPHABET = "_ 'abcdefghijklmnopqrstuvwxyz"
_ID_BYTES = 8  # int64 token ids


def ctc_text(ids: Any, lengths: Any, alphabet: str = ALPHABET) -> list[str]:
    """The strings of decoded ``(ids, lengths)`` (either framework's, or numpy arrays)."""
    ids, lengths = np.asarray(ids), np.asarray(lengths)
    return ["".join(alphabet[int(i)] for i in row[:int(n)]) for row, n in zip(ids, lengths, strict=True)]


class SpeechCTC(Net):
    """Bidirectional LSTM + CTC character recogniser over mel frames; size = batch."""

    name = "lstm-ctc"
    family = "rnn"
    description = ("speech recognition: 80 mel x 300 frames, 4-layer bidirectional LSTM "
                   "(320 per direction), CTC over 29 characters, greedy decoding; size = batch")
    features, hidden, layers, frames = 80, 320, 4, 300
    classes = len(ALPHABET)
    transcript = (30, 45)  # characters per utterance, inclusive
    default_sizes = ("1", "4", "16", "64")
    quick_sizes = ("1", "4")
    scale_batch = 4
    #: chipfit scale trains classifiers (cross-entropy on one label per sample), not CTC.
    data_parallel = False

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.frames, self.features)

    def sample_batch(self, batch: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Seeded float32 frames and int64 transcripts ``(batch, longest)``: classes 1.. with
        each row padded by the blank (0) after its own length."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape(batch)).astype(np.float32)
        low, high = self.transcript
        lengths = rng.integers(low, high + 1, batch)
        chars = rng.integers(1, self.classes, (batch, high))
        targets = np.where(np.arange(high) < lengths[:, None], chars, 0)
        return x, targets.astype(np.int64)

    def param_specs(self) -> dict[str, _Param]:
        h, bound = self.hidden, 1 / math.sqrt(self.hidden)  # torch's LSTM init
        specs: dict[str, _Param] = {}
        for layer in range(self.layers):
            fan_in = self.features if layer == 0 else 2 * h
            for sfx in (f"l{layer}", f"l{layer}_reverse"):
                specs |= {f"lstm.weight_ih_{sfx}": _Param((4 * h, fan_in), bound),
                          f"lstm.weight_hh_{sfx}": _Param((4 * h, h), bound),
                          f"lstm.bias_ih_{sfx}": _Param((4 * h,), bound),
                          f"lstm.bias_hh_{sfx}": _Param((4 * h,), bound)}
        bound = 1 / math.sqrt(2 * h)
        return specs | {"head.weight": _Param((self.classes, 2 * h), bound),
                        "head.bias": _Param((self.classes,), bound)}

    def _ops(self, batch: int) -> list[_Op]:
        h, t, ops = self.hidden, self.frames, []
        for layer in range(self.layers):
            fan_in = self.features if layer == 0 else 2 * h
            for _ in range(2):  # forward and backward directions
                ops.append(_dense(batch * t, fan_in, 4 * h))
                per_frame = 2.0 * batch * h * 4 * h + batch * 4 * h + 9.0 * batch * h
                ops.append(_Op(t * per_frame, t * 4 * h * h, batch * t * 4 * h,
                               batch * t * 6 * h, kernels=2 * t))
        logits = batch * t * self.classes
        return ops + [_dense(batch * t, 2 * h, self.classes, head=True),
                      _pointwise(logits, 4.0)]  # argmax/collapse, or the loss's log-softmax

    def _transfer_bytes(self, batch: int, mode: str) -> float:
        x = math.prod(self.input_shape(batch)) * 4
        if mode == "inference":  # decoded ids and their lengths come back
            return float(x + batch * (self.frames + 1) * _ID_BYTES)
        return float(x + batch * self.transcript[1] * _ID_BYTES + 4)

    def torch_module(self) -> Any:
        from chipfit.workloads._torch_speech import CTCRecognizer

        return CTCRecognizer(self.features, self.hidden, self.layers, self.classes)

    def jax_apply(self, params: dict[str, Any], x: Any) -> Any:
        from chipfit.workloads._jax_speech import blstm_ctc

        return blstm_ctc(params, x, self.layers)

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import torch

        from chipfit.workloads import _torch_nets, _torch_speech
        from chipfit.workloads.training import prepared, torch_model_call

        batch = parse_count(size)
        net = _torch_nets.load_weights(self.torch_module(), self.init_weights())
        x, targets = (torch.from_numpy(a) for a in self.sample_batch(batch))
        if mode == "inference":
            fn = torch_model_call(_torch_speech.GreedyCTC(net), mode, dtype, session.handle,
                                  loss=_identity)
            return prepared(fn, (x,), net, batch, mode)
        fn = torch_model_call(_torch_speech.WithCTCLoss(net), mode, dtype, session.handle,
                              loss=_identity, head=("net.head",), lr=LR)
        return prepared(fn, (x, targets), net, batch, mode)

    def _build_jax(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        import jax

        from chipfit.workloads._jax_speech import ctc_program

        batch = parse_count(size)
        params = jax.device_put(self.init_weights(), session.handle)
        call = ctc_program(self.jax_apply, mode, dtype, params, LR, MOMENTUM)
        x, targets = self.sample_batch(batch)
        host = (x,) if mode == "inference" else (x, targets.astype(np.int32))
        return Prepared(call, host, items=batch, details=self._details(mode))


def twins(net: SpeechCTC | None = None, seed: int = 0) -> Twins:
    """The recogniser as a torch module and JAX params from the same numpy weights (as
    :func:`chipfit.workloads.nets.twins`); ``net`` defaults to the built-in ``lstm-ctc``."""
    import jax.numpy as jnp

    from chipfit.workloads import _torch_nets

    net = net or SpeechCTC()
    weights = net.init_weights(seed)
    model = _torch_nets.load_weights(net.torch_module(), weights)
    return Twins(weights, model, {k: jnp.asarray(v) for k, v in weights.items()}, net.jax_apply)


def workloads() -> list[Workload]:
    return [SpeechCTC()]
