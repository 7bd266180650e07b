"""The JAX backend against real JAX on the real CPU: discovery, fencing, compile vs steady state,
copies, memory, and XLA's cost analysis."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

import chipfit
from chipfit.backends import get_backend
from chipfit.backends.jax import _info
from chipfit.errors import InvalidInputError
from chipfit.execute.costs import extract_costs
from chipfit.execute.job import run_job
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.timing.timer import measure
from chipfit.workloads import get_workload

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

FAST = TimingConfig(warmup_s=0.01, min_block_s=0.002, budget_s=0.5, target_rel_ci=0.05)
CPU0 = DeviceRef("jax", "cpu", 0)


def test_discovery_finds_jax_cpu_and_keeps_reasons_for_missing_gpu_and_tpu():
    found = chipfit.discover(["jax"])
    cpu = found.get("jax:cpu:0")
    assert cpu is not None and cpu.kind == "cpu" and cpu.backend == "jax"
    assert cpu.cores == psutil.cpu_count(logical=False)
    assert ("jax", jax.__version__) in cpu.versions
    reasons = {p.scope: p.reason for p in found.problems}
    for platform in ("gpu", "tpu"):
        try:
            present = bool(jax.devices(platform))
        except RuntimeError:
            present = False
        if not present:
            assert reasons.get(f"jax:{platform}"), f"no reason kept for jax:{platform}"


class _FakeTpu:
    """The attributes JAX exposes on a TPU device (only for the pure mapping below)."""

    platform = "tpu"
    device_kind = "TPU v4"
    num_cores = 2
    coords = (1, 0, 0)
    core_on_chip = 0

    class client:  # noqa: N801 - mirrors jax's attribute name
        platform_version = "PJRT C API\nTFRT TPU v4"

    def memory_stats(self):
        return {"bytes_limit": 32 * 2**30, "bytes_in_use": 0}


def test_tpu_facts_come_from_the_device_attributes():
    info = _info(_FakeTpu(), "tpu", 3, 4, (("jax", "x"),))
    assert info.ref == "jax:tpu:3" and info.kind == "tpu"
    assert info.name == "TPU v4" and info.compute_units == 2
    assert info.memory_bytes == 32 * 2**30
    details = dict(info.details)
    assert details["coords"] == "(1, 0, 0)" and details["core_on_chip"] == "0"
    assert details["runtime"] == "PJRT C API"


def test_wait_is_block_until_ready_on_the_output():
    a = jnp.ones((1500, 1500), jnp.float32)
    heavy = jax.jit(lambda a: (a @ a @ a @ a).sum())
    heavy(a).block_until_ready()  # compile outside the check
    with get_backend("jax").session(CPU0) as session:
        out = heavy(a)
        assert not out.is_ready()  # JAX dispatched asynchronously: the call returned early
        session.wait(out)
        assert out.is_ready()


def test_the_timer_fences_every_block_on_the_jitted_output(monkeypatch):
    seen = []
    real = jax.block_until_ready
    monkeypatch.setattr(jax, "block_until_ready", lambda x: (seen.append(x), real(x))[1])
    fn = jax.jit(lambda x: x * 2.0 + 1.0)
    x = jnp.ones(1024)
    outputs = []
    with get_backend("jax").session(CPU0) as session:
        result, last = measure(lambda: outputs.append(fn(x)) or outputs[-1], session.wait, FAST)
    produced = {id(o) for o in outputs}
    assert all(id(s) in produced for s in seen)  # it only ever waits on the program's outputs
    assert seen[-1] is last  # the trailing fence of the last block waited on its output
    # both edges of every timed block are fenced: the leading fence waits on the previous
    # block's output, the trailing one on this block's last output
    assert len(seen) >= 2 * len(result.block_times_s)


def test_first_call_includes_compilation_and_steady_state_does_not():
    fn = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b)
    a = jnp.ones((128, 128), jnp.float32)
    with get_backend("jax").session(CPU0) as session:
        result, _ = measure(lambda: fn(a, a), session.wait, FAST)
    steady = float(np.median(np.array(result.block_times_s) / result.number_per_block))
    assert fn._cache_size() == 1  # compiled once, on the first call
    assert result.first_call_s > 5 * steady  # tracing + XLA compile dwarf one call


def test_run_job_on_jax_records_compile_apart_and_no_copies_on_cpu():
    m = run_job(Job("matmul", "256", CPU0, timing=FAST))
    assert m.ok and m.device == "jax:cpu:0" and m.flops == 2 * 256**3
    assert m.first_call_s is not None and m.first_call_s > m.median_s
    assert m.transfer_h2d_s == 0.0 and m.meta["copies"] == "none: host memory"
    assert m.memory_method == "rss-growth" and m.peak_memory_bytes is not None


def test_copies_are_device_put_and_device_get():
    host = (np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32))
    with get_backend("jax").session(CPU0) as session:
        placed = session.to_device(host)
        session.wait(placed)
        assert all(isinstance(a, jax.Array) and a.devices() == {session.handle} for a in placed)
        back = session.to_host(placed)
    assert all(isinstance(b, np.ndarray) for b in back)
    np.testing.assert_array_equal(back[0], host[0])


def test_thread_pinning_is_refused_with_a_next_step():
    with pytest.raises(InvalidInputError, match="XLA_FLAGS"):
        with get_backend("jax").session(DeviceRef("jax", "cpu", 0, 1)):
            pass


def test_matmul_cost_from_xla_equals_the_analytic_count():
    xla = extract_costs("matmul", "256", backend="jax")
    analytic = get_workload("matmul").cost("256", "float32")
    assert xla.flops == analytic.flops == 2 * 256**3
    assert xla.transfer_bytes == analytic.transfer_bytes and xla.kernels == 1


@pytest.mark.parametrize("mode", ["inference", "train", "finetune"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer-block"])
def test_nets_analytic_matrix_flops_are_within_15_percent_of_xla(name, mode):
    size = "4" if name == "transformer-block" else "32"
    xla = extract_costs(name, size, "float32", mode, backend="jax")
    analytic = get_workload(name).cost(size, "float32", mode)
    assert xla.matrix_flops == pytest.approx(analytic.flops, rel=0.15)
    assert xla.transfer_bytes == pytest.approx(analytic.transfer_bytes, rel=0.05)
