"""The TensorFlow backend against real TensorFlow (and Keras 3) on the real CPU: discovery,
fencing of a missing install, the bench path, thread pinning, and the shared-weight nets
agreeing with torch and JAX (forward pass and a training step)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import chipfit
from chipfit.errors import InvalidInputError
from chipfit.execute.job import run_job
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.workloads import nets

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
    pytest.skip("TensorFlow and Keras 3 are not installed", allow_module_level=True)

FAST = TimingConfig(warmup_s=0.005, min_block_s=0.001, budget_s=0.1, target_rel_ci=0.2)
CPU = DeviceRef("tensorflow", "cpu")


@pytest.fixture(scope="module")
def tf():
    from chipfit.backends.tensorflow import import_tensorflow

    return import_tensorflow()


# Tiny versions of the four nets (same code paths, a few hundred parameters).
class TinyMLP(nets.MLP):
    dims, classes = (12, 16, 16, 5), 5


class TinyCNN(nets.CNN):
    side, channels, hidden = 8, (1, 4, 6), 16


class TinyLSTM(nets.LSTM):
    features, hidden, layers, frames = 6, 8, 2, 5


class TinyEncoder(nets.TransformerBlock):
    d_model, heads, ff, seq = 16, 2, 32, 4


def test_discovery_lists_tensorflow_cpu_with_versions_and_reasons(tf):
    found = chipfit.discover(["tensorflow"])
    cpu = found.get("tensorflow:cpu")
    assert cpu is not None and cpu.kind == "cpu" and cpu.backend == "tensorflow"
    assert ("tensorflow", tf.__version__) in cpu.versions
    reasons = {p.scope: p.reason for p in found.problems}
    if not tf.config.list_physical_devices("GPU"):
        assert "tensorflow:gpu" in reasons
    if not tf.config.list_physical_devices("TPU"):
        assert "jax:tpu" in reasons["tensorflow:tpu"]


def test_missing_tensorflow_is_a_reason_with_the_extra_not_a_traceback(tf, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` -> ImportError
    found = chipfit.discover(["tensorflow"])
    assert found.devices == ()
    assert "pip install 'chipfit[tensorflow]'" in found.problems[0].reason
    from chipfit.cli import main

    assert main(["bench", "-w", "matmul", "-d", "tensorflow:cpu", "-s", "8", "--no-save"]) == 2
    out = capsys.readouterr()
    assert "tensorflow:cpu is not available here" in out.err
    assert "pip install 'chipfit[tensorflow]'" in " ".join(out.err.split())
    assert "Traceback" not in out.out + out.err


def test_chipfit_and_its_registries_import_no_tensorflow():
    code = ("import sys, chipfit, chipfit.cli\n"
            "from chipfit.backends import all_backends\n"
            "from chipfit.workloads import get_workload\n"
            "assert 'tensorflow' in [b.name for b in all_backends()]\n"
            "assert 'tensorflow' in get_workload('lstm').backends()\n"
            "print(','.join(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(("workload", "size", "dtype"), [
    ("matmul", "64", "float32"), ("elementwise", "4096", "bfloat16"), ("mlp", "2", "float32")])
def test_workloads_are_measured_on_tensorflow_cpu(tf, workload, size, dtype):
    m = run_job(Job(workload, size, CPU, dtype, timing=FAST))
    assert m.ok, m.note
    assert m.stack == "jit" and m.device == "tensorflow:cpu"
    assert m.block_times_s and min(m.block_times_s) > 0 and m.first_call_s > 0
    assert m.memory_method == "rss-growth" and m.transfer_h2d_bytes == 0


def test_session_fences_and_copies_back(tf):
    from chipfit.backends import get_backend

    with get_backend("tensorflow").session(CPU) as session:
        x = session.to_device((np.arange(6, dtype=np.float32).reshape(2, 3),))
        assert isinstance(x[0], tf.Tensor)
        out = tf.reduce_sum(x[0])
        session.wait(out)  # returns (sync_devices or a host read), never hangs on the CPU
        assert session.to_host(out) == 15.0
        assert session.is_oom(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"))


def test_thread_pin_after_start_up_is_refused_with_what_to_do(tf):
    from chipfit.backends import get_backend

    tf.constant(1.0) + 1.0  # the runtime has started in this process
    have = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.raises(InvalidInputError, match="--executor subprocess"):
        with get_backend("tensorflow").session(DeviceRef("tensorflow", "cpu", None, have + 3)):
            pass


@pytest.mark.parametrize("net", [TinyMLP(), TinyCNN(), TinyLSTM(), TinyEncoder()],
                         ids=lambda n: n.name)
def test_shared_weights_give_the_same_logits_on_torch_jax_and_tensorflow(tf, net):
    import jax.numpy as jnp
    import torch

    from chipfit.workloads import _torch_nets

    weights = net.init_weights(0)
    x, _ = net.sample_batch(3)
    module = _torch_nets.load_weights(net.torch_module(), weights).eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got_jax = np.asarray(net.jax_apply({k: jnp.asarray(v) for k, v in weights.items()},
                                       jnp.asarray(x)))
    got_tf = net.keras_model(weights)(tf.constant(x), training=False).numpy()
    assert expected.shape == got_tf.shape and expected.shape[0] == 3
    scale = float(np.abs(expected).max())
    assert scale > 0.05  # not all zeros: a swapped layout would show
    np.testing.assert_allclose(got_jax, expected, atol=1e-5 * scale + 1e-6)
    np.testing.assert_allclose(got_tf, expected, atol=1e-5 * scale + 1e-6)


def test_a_tensorflow_train_step_takes_torch_sgd_momentum_step(tf):
    """Two train steps from the same weights: Keras SGD(momentum) lands where torch's does."""
    import torch

    from chipfit.backends.tensorflow import compiled
    from chipfit.workloads import _tf_nets, _torch_nets

    net, lr = TinyMLP(), 0.1
    weights = net.init_weights(0)
    x, y = net.sample_batch(4)
    module = _torch_nets.load_weights(net.torch_module(), weights)
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=nets.MOMENTUM)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    model = net.keras_model(weights)
    step = compiled(_tf_nets.program(model, "train", lr, nets.MOMENTUM), "/CPU:0")
    losses = [float(step(tf.constant(x), tf.constant(y))) for _ in range(2)]
    assert losses[1] < losses[0]
    np.testing.assert_allclose(model.get_layer("head").get_weights()[0],
                               module.head.weight.detach().numpy().T, atol=1e-5)


def test_cli_bench_matmul_on_tensorflow_cpu_writes_json(tf, tmp_path, capsys):
    """``chipfit bench`` end to end, in this process (TensorFlow's start-up is paid once per
    module; the noise filter has its own test below)."""
    from chipfit.cli import main

    out = tmp_path / "r.json"
    assert main(["bench", "-w", "matmul", "--devices", "tensorflow:cpu", "--sizes", "64", "--quick",
                 "--budget", "0.1", "--no-save", "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "tensorflow:cpu" in printed.out and "Traceback" not in printed.err
    rows = json.loads(out.read_text())
    rows = rows.get("measurements", rows) if isinstance(rows, dict) else rows
    assert [(r["device"], r["status"], r["stack"]) for r in rows] == [("tensorflow:cpu", "ok", "jit")]


def test_tensorflow_start_up_notices_are_filtered_from_stderr_and_the_rest_kept(capfd):
    import os

    from chipfit.backends.tensorflow import _filtered_stderr

    with _filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called ...\n")
        os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 a real error\n")
    assert capfd.readouterr().err == "E0000 a real error\n"


def test_keras_on_another_framework_is_refused_in_one_line(tf, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")  # as KERAS_BACKEND=jax does
    m = run_job(Job("mlp", "1", CPU, timing=FAST))
    assert m.status == "unsupported" and "KERAS_BACKEND=tensorflow" in m.note


def test_a_keras_model_is_measured_with_counted_flops(tf):
    import keras

    from chipfit.workloads import register
    from chipfit.workloads.keras_models import KerasModel

    def dense():
        return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(5)])

    register(KerasModel("test-keras-dense", dense, (12,)))
    m = run_job(Job("test-keras-dense", "4", CPU, timing=FAST))
    assert m.ok, m.note
    assert m.flops == 2 * 4 * (12 * 16 + 16 * 5)  # the two matmuls (matrix classes only)
    assert m.bytes_moved > 4 * (12 * 16 + 16 * 5)  # at least the weights were read
    assert dict(m.metadata)["flops_source"].startswith("counted: XLA optimized HLO")


def test_costs_of_the_tensorflow_program_match_jax_and_refuse_uncountable_loops(tf):
    from chipfit.errors import UnsupportedError
    from chipfit.execute.costs import extract_costs

    net = TinyMLP()
    on_tf = extract_costs(net, "2", backend="tensorflow")
    on_jax = extract_costs(net, "2", backend="jax")
    assert on_tf.backend == "tensorflow" and on_tf.method == "xla-hlo"
    assert on_tf.flops == pytest.approx(on_jax.flops, rel=1e-3)
    assert on_tf.d2h_bytes == on_jax.d2h_bytes == 2 * 5 * 4
    with pytest.raises(UnsupportedError, match="unknown trip count"):
        extract_costs(TinyLSTM(), "1", backend="tensorflow")


def test_twins_carry_the_keras_model_on_request(tf):
    import torch

    pair = nets.twins("mlp", keras=True)
    x, _ = nets.MLP().sample_batch(2)
    with torch.no_grad():
        expected = pair.torch_model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pair.keras_model(tf.constant(x), training=False).numpy(), expected,
                               atol=1e-5)
    assert nets.twins("mlp").keras_model is None


def test_calibration_probes_run_as_compiled_programs(tf):
    from chipfit.backends import get_backend
    from chipfit.pipelines.calibrate import _probes

    with get_backend("tensorflow").session(CPU) as session:
        probes = _probes(session, "tensorflow")
        assert probes.compiled  # overhead per program call, as for JAX
        for (thunk, work), want in ((probes.matmul(8, "float32"), 2 * 8**3),
                                    (probes.matmul_rows(2, 8, "bfloat16"), 2 * 2 * 8 * 8),
                                    (probes.conv(2, 4, "float32"), 2 * 2 * 2 * 9 * 4 * 4),
                                    (probes.stream(16, "float32"), 3 * 16 * 4)):
            session.wait(thunk())
            assert work == want
        assert float(tf.reshape(probes.dispatch()(), [])) > 1.0  # x + 1 with x in [0, 1)
