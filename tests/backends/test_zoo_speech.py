"""The CTC speech recogniser (lstm-ctc) on real torch and real JAX (CPU): greedy decoding of a
known logit sequence, the two frameworks computing the same logits, loss and train steps from
the same weights, and training lowering the CTC loss. On a tiny recogniser of the same code
(2 layers of 16 cells, 24 frames of 8 features)."""

from __future__ import annotations

import numpy as np
import pytest

from chipfit.backends import get_backend
from chipfit.errors import InvalidInputError
from chipfit.spec import MODES, DeviceRef
from chipfit.workloads import get_workload
from chipfit.workloads.speech import ALPHABET, SpeechCTC, ctc_text, twins

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

DEVICES = {"torch": DeviceRef("torch", "cpu"), "jax": DeviceRef("jax", "cpu", 0)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest


class TinyCTC(SpeechCTC):
    name = "lstm-ctc-tiny-test"
    features, hidden, layers, frames = 8, 16, 2, 24
    transcript = (3, 6)


class OneLayerCTC(TinyCTC):
    layers = 1  # JAX compiles a train step per scan: one layer keeps the compile short


def _steps(backend: str, mode: str, calls: int, net: SpeechCTC | None = None) -> list:
    with get_backend(backend).session(DEVICES[backend]) as session:
        built = (net or TinyCTC()).build(backend, "3", "float32", mode, session)
        args = session.to_device(built.host_args)
        return [built.fn(*args) for _ in range(calls)]


def test_greedy_decoding_collapses_repeats_and_drops_blanks():
    from chipfit.workloads import _jax_speech, _torch_speech

    frames = "hh_el_ll_oo_"  # '_' is the blank: "l_l" keeps both l's, "hh" and "oo" collapse
    logits = np.full((2, len(frames), len(ALPHABET)), -3.0, np.float32)
    logits[0, np.arange(len(frames)), [ALPHABET.index(c) for c in frames]] = 3.0
    logits[1, :, 0] = 3.0  # silence: blanks only
    for decode in (_torch_speech.greedy_ctc, _jax_speech.greedy_ctc):
        ids, lengths = decode(torch.from_numpy(logits) if decode is _torch_speech.greedy_ctc
                              else jax.numpy.asarray(logits))
        assert ctc_text(ids, lengths) == ["hello", ""]
        assert np.asarray(ids)[0, 5:].tolist() == [0] * (len(frames) - 5)  # padded with blank


def test_torch_and_jax_compute_the_same_logits_and_ctc_loss():
    from chipfit.workloads import _jax_speech, _torch_speech

    pair = twins(TinyCTC())
    x, targets = TinyCTC().sample_batch(3)
    assert ((targets > 0).sum(1) >= 3).all() and (targets[:, :3] > 0).all()
    with torch.no_grad():
        logits = pair.torch_model.eval()(torch.from_numpy(x))
        loss = _torch_speech.WithCTCLoss(pair.torch_model)(torch.from_numpy(x),
                                                            torch.from_numpy(targets))
    jax_logits = jax.jit(pair.jax_apply)(pair.jax_params, jax.numpy.asarray(x))
    np.testing.assert_allclose(np.asarray(jax_logits), logits.numpy(), atol=1e-5)
    jax_loss = jax.jit(_jax_speech.ctc_loss)(jax_logits, jax.numpy.asarray(targets.astype(np.int32)))
    assert float(jax_loss) == pytest.approx(float(loss), rel=1e-5)


def test_training_lowers_the_loss_on_both_frameworks_with_the_same_steps():
    torch_losses = [float(v) for v in _steps("torch", "train", 5)]
    assert all(b < a for a, b in zip(torch_losses, torch_losses[1:], strict=False))
    one = [float(v) for v in _steps("torch", "train", 3, OneLayerCTC())]
    jax_losses = [float(v) for v in _steps("jax", "train", 3, OneLayerCTC())]
    assert jax_losses[2] < jax_losses[0]
    np.testing.assert_allclose(jax_losses, one, rtol=1e-4)


def test_inference_decodes_and_finetune_trains_the_output_layer_only():
    ids, lengths = _steps("torch", "inference", 1)[0]
    assert ids.shape == (3, 24) and ((lengths >= 0) & (lengths <= 24)).all()
    assert all(set(t) <= set(ALPHABET[1:]) for t in ctc_text(ids, lengths))
    losses = [float(v) for v in _steps("torch", "finetune", 3)]
    assert losses[2] < losses[0]
    net = TinyCTC()
    with get_backend("torch").session(DEVICES["torch"]) as session:
        details = dict(net.build("torch", "3", "float32", "finetune", session).details)
    assert int(details["trainable_params"]) == net.param_count(head_only=True) == 29 * 32 + 29


def test_the_built_in_recogniser_is_registered_costed_and_not_offered_to_scale():
    from chipfit.cost.torch import trace_torch
    from chipfit.pipelines.scale_torch import _network

    net = get_workload("lstm-ctc")
    assert isinstance(net, SpeechCTC) and net.modes == MODES and net.classes == 29
    assert set(net.backends()) == {"torch", "jax"}
    assert net.param_count() == 8_435_869
    tiny = TinyCTC()
    with get_backend("torch").session(DEVICES["torch"]) as session:
        built = tiny.build("torch", "2", "float32", "inference", session)
        traced = trace_torch(built.fn, built.host_args)
    assert traced.matrix_flops == pytest.approx(tiny.cost("2", "float32").flops, rel=0.2)
    assert tiny.memory_estimate("2", "float32", "train") > tiny.memory_estimate("2", "float32")
    with pytest.raises(InvalidInputError, match="lstm-ctc trains with its own loss"):
        _network("lstm-ctc")


def test_the_cli_lists_the_new_workloads_and_refuses_to_scale_the_recogniser(cli):
    import json

    listed = {w["name"]: w for w in json.loads(cli("workloads", "--json", check=True).stdout)}
    for name in ("detr-resnet50", "t5-small-generate", "lstm-ctc"):
        assert listed[name]["size"] == "batch", name
    assert listed["t5-small-generate"]["modes"] == ["inference"]
    proc = cli("scale", "--backend", "torch", "-w", "lstm-ctc", "--devices", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "lstm-ctc trains with its own loss" in proc.stderr
