"""The small networks on real torch and real JAX (CPU): every mode runs on both, and the two
frameworks compute the same numbers from the same weights and inputs."""

from __future__ import annotations

import numpy as np
import pytest

from chipfit.backends import get_backend
from chipfit.spec import MODES, DeviceRef
from chipfit.workloads import get_workload
from chipfit.workloads.nets import LSTM, Net, twins, workloads

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

NETS = ["mlp", "cnn", "lstm", "transformer-block"]
DEVICES = {"torch": DeviceRef("torch", "cpu"), "jax": DeviceRef("jax", "cpu", 0)}


def _net(name: str) -> Net:
    """The registered network; the LSTM over 30 frames instead of 300 to keep train steps fast
    on a shared 2-core machine (same code, fewer scan steps; full size is checked above)."""
    if name != "lstm":
        return get_workload(name)
    short = LSTM()
    short.frames = 30
    return short


def _run(backend: str, name: str, mode: str, dtype: str = "float32", batch: str = "2",
         calls: int = 3) -> list[np.ndarray]:
    """Build ``name`` on ``backend`` and return the outputs of ``calls`` consecutive calls."""
    with get_backend(backend).session(DEVICES[backend]) as session:
        prepared = _net(name).build(backend, batch, dtype, mode, session)
        args = session.to_device(prepared.host_args)
        outs = [prepared.fn(*args) for _ in range(calls)]
        session.wait(outs[-1])
        return [np.asarray(o.float() if backend == "torch" else o, dtype=np.float32) for o in outs]


def test_the_four_networks_are_registered_on_both_backends_in_every_mode():
    names = {w.name for w in workloads()}
    assert names == set(NETS)
    for name in NETS:
        net = get_workload(name)
        assert isinstance(net, Net) and net.axis == "batch" and net.modes == MODES
        assert set(net.backends()) >= {"torch", "jax"}
        assert net.quick_sizes and set(net.quick_sizes) <= set(net.default_sizes)


@pytest.mark.parametrize("name", NETS)
def test_torch_and_jax_agree_in_inference_on_shared_weights(name):
    pair = twins(name)
    net = get_workload(name)
    x, _ = net.sample_batch(3)
    with torch.inference_mode():
        expected = pair.torch_model.eval()(torch.from_numpy(x)).numpy()
    got = np.asarray(jax.jit(pair.jax_apply)(pair.jax_params, x))
    assert got.shape == expected.shape == (3, net.classes)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_gate_order_mistake_would_be_caught():
    """The agreement tolerance is tight enough to see an LSTM with i and f gates swapped."""
    from chipfit.workloads._torch_nets import load_weights

    net = _net("lstm")
    weights = net.init_weights()
    model = load_weights(net.torch_module(), weights).eval()
    x, _ = net.sample_batch(2)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    right = np.asarray(jax.jit(net.jax_apply)(weights, x))
    np.testing.assert_allclose(right, expected, rtol=1e-4, atol=1e-5)
    for key in [k for k in weights if k.startswith("lstm.") and "_l0" in k]:
        i, f, g, o = np.split(weights[key], 4)
        weights[key] = np.concatenate([f, i, g, o])
    wrong = np.asarray(jax.jit(net.jax_apply)(weights, x))
    assert not np.allclose(wrong, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NETS)
def test_each_mode_runs_on_both_backends_and_takes_the_same_steps(name, mode):
    torch_out = _run("torch", name, mode)
    jax_out = _run("jax", name, mode)
    assert all(np.isfinite(o).all() for o in torch_out + jax_out)
    if mode == "inference":
        assert torch_out[0].shape == (2, get_workload(name).classes)
        np.testing.assert_allclose(jax_out[0], torch_out[0], rtol=1e-4, atol=1e-5)
        return
    # Three SGD-momentum steps from the same weights: the losses match step by step, so the
    # gradients (of all weights, or of the head only in finetune) and updates are the same.
    torch_loss = [float(o) for o in torch_out]
    jax_loss = [float(o) for o in jax_out]
    np.testing.assert_allclose(jax_loss, torch_loss, rtol=1e-5)
    assert torch_loss[2] < torch_loss[0]  # the optimizer stepped: the batch loss fell


def test_reduced_precision_train_steps_run_on_both_backends_and_stay_close():
    torch_loss = [float(o) for o in _run("torch", "mlp", "train", "bfloat16")]
    jax_loss = [float(o) for o in _run("jax", "mlp", "train", "bfloat16")]
    np.testing.assert_allclose(jax_loss, torch_loss, rtol=1e-2)


def test_jax_train_state_stays_on_the_device_between_calls():
    with get_backend("jax").session(DEVICES["jax"]) as session:
        prepared = get_workload("mlp").build("jax", "4", "float32", "train", session)
        args = session.to_device(prepared.host_args)
        before = prepared.fn.state[0]["head.weight"]
        prepared.fn(*args)
        after = prepared.fn.state[0]["head.weight"]
        assert before.is_deleted()  # donated to the step, as torch updates in place
        assert after.devices() == {session.handle}
    assert dict(prepared.details)["trainable_params"] == str(get_workload("mlp").param_count())


@pytest.mark.parametrize("name", NETS)
def test_cost_and_memory_grow_with_batch_and_mode(name):
    net = get_workload(name)
    small, big = net.cost("4", "float32"), net.cost("8", "float32")
    assert big.flops == pytest.approx(2 * small.flops, rel=0.02)  # weights are a tiny share
    infer, train, tune = (net.cost("4", "float32", m) for m in MODES)
    assert infer.flops < tune.flops < train.flops
    # backward = 2x forward; SGD with momentum = 4 FLOPs per trainable parameter
    assert train.flops == pytest.approx(3 * infer.flops + 4 * net.param_count())
    assert net.cost("4", "bfloat16").bytes_moved < infer.bytes_moved
    assert 0 < net.memory_estimate("4", "float32") < net.memory_estimate("4", "float32", "train")
    assert net.memory_estimate("4", "float32", "train") < net.memory_estimate(
        "64", "float32", "train")


def test_parameter_counts_match_the_torch_modules():
    for name in NETS:
        net = get_workload(name)
        module = net.torch_module()
        assert net.param_count() == sum(p.numel() for p in module.parameters())
        assert net.param_count(head_only=True) == sum(p.numel() for p in module.head.parameters())


def test_forward_flops_follow_the_textbook_formulas():
    # MLP: 2*in*out per dense layer and sample, plus bias and ReLU (1 FLOP per output)
    dims = (784, 1024, 1024, 1024, 10)
    dense = sum(2 * a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))
    assert get_workload("mlp").cost("1", "float32").flops == dense + 3 * 1024
    # Transformer block: 2*S*D*(4D + 2FF) for the projections and feed-forward, plus 4*S^2*D
    # for scores and the weighted sum, dominate
    s, d, ff = 128, 512, 2048
    core = 2 * s * d * (4 * d + 2 * ff) + 4 * s * s * d
    flops = get_workload("transformer-block").cost("1", "float32").flops
    assert core < flops < 1.02 * core
    # LSTM: 2*4H*(I+H) per frame and layer dominate
    h, t = 512, 300
    core = t * sum(2 * 4 * h * (i + h) for i in (80, 512, 512))
    flops = get_workload("lstm").cost("1", "float32").flops
    assert core < flops < 1.01 * core
