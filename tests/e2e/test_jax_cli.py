"""``chipfit bench`` with JAX devices, as a user runs it: JAX and torch on the same CPU."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("jax")
pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _no_pause_before_remeasuring(monkeypatch):
    """bench re-measures points taken beside a neighbour (under xdist, the other worker) after
    a pause of 1 s, then 2 s. Re-measuring still happens here; only the pause is cut: nothing
    these tests check depends on its length (``cli`` runs bench in this process)."""
    from chipfit.execute import retry

    monkeypatch.setattr(retry, "BACKOFF_S", 0.01)


def _measurements(path):
    return json.loads(path.read_text())["measurements"]


def test_bench_compares_jax_and_torch_on_the_same_cpu(cli, tmp_path):
    out = tmp_path / "run.json"
    proc = cli("bench", "--devices", "jax:cpu:0,torch:cpu", "--workloads", "matmul", "--sizes",
               "64", "--quick", "--json", str(out), check=True)
    assert "jax:cpu:0" in proc.stdout and "torch:cpu" in proc.stdout
    by_device = {m["device"]: m for m in _measurements(out)}
    assert set(by_device) == {"jax:cpu:0", "torch:cpu"}
    for m in by_device.values():
        assert m["status"] == "ok" and m["flops"] == 2 * 64**3 and m["block_times_s"]
    jax_m = by_device["jax:cpu:0"]
    per_call = min(jax_m["block_times_s"]) / jax_m["number_per_block"]
    assert jax_m["first_call_s"] > per_call  # the first call traced and compiled


def test_bench_trains_a_network_on_jax(cli, tmp_path):
    out = tmp_path / "run.json"
    cli("bench", "--devices", "jax:cpu:0", "--workloads", "mlp", "--sizes", "8", "--modes",
        "train", "--quick", "--json", str(out), check=True)
    (m,) = _measurements(out)
    assert m["status"] == "ok" and m["mode"] == "train" and m["items_per_call"] == 8
    meta = dict(m["metadata"])
    assert int(meta["trainable_params"]) == int(meta["params"]) > 0


def test_an_absent_tpu_is_a_one_line_error_with_the_reason(cli):
    proc = cli("bench", "--devices", "jax:tpu:0", "--workloads", "matmul", "--quick")
    try:
        import jax

        jax.devices("tpu")
        pytest.skip("this machine has a TPU")
    except RuntimeError:
        pass
    assert proc.returncode == 2
    assert "jax:tpu:0" in proc.stderr and "tpu" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
