"""``chipfit scale``: data-parallel sharding over 4 simulated JAX CPU devices.

XLA fixes the device count when JAX starts, so every test runs in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (or ``--simulate``). The calls made
with those flags share one (the ``four`` fixture, as conftest's ``run_cli_batch``): the
sharded train-step check, the weak-scaling run, then the usage errors, each refused before
anything is measured.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import _BATCH_CHILD

pytest.importorskip("jax")

FOUR = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
TESTS = str(Path(__file__).resolve().parents[1])  # where conftest.py is, for the child


def _points(path):
    data = json.loads(path.read_text())
    assert data["format"] == "chipfit-scaling" and data["schema_version"] == 1
    return data, data["points"]


#: (arguments, what the one-line error says): refused before anything is measured.
USAGE_ERRORS = [
    (("scale", "--devices", "8", "--quick"), ("JAX sees 4", "--simulate")),
    (("scale", "--devices", "4", "--scaling", "strong", "--batch", "6"),
     ("does not split evenly",)),
    (("scale", "--devices", "2", "--workload", "matmul"), ("mlp",)),
    (("scale", "--backend", "torch", "--simulate", "--devices", "2"), ("--simulate is for JAX",)),
]


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory):
    """One fresh process with 4 XLA CPU devices: (the weak-scaling run, its JSON file, the
    usage errors' results, the sharded-step check's result). The process first runs
    ``_SHARDED_EQUALS_SINGLE`` (its answer, or its traceback, into a file), then the CLI calls
    one after another as conftest's ``run_cli_batch`` does: one interpreter start and one
    import of JAX and torch for all of them."""
    tmp = tmp_path_factory.mktemp("scale")
    out, sharded, answer = tmp / "scale.json", tmp / "sharded.json", tmp / "calls.json"
    weak = ("scale", "--backend", "jax", "--devices", "4", "--workload", "mlp", "--batch", "8",
            "--quick", "--json", str(out))
    calls = [weak, *[args for args, _ in USAGE_ERRORS]]
    jobs = [[list(args), {"COLUMNS": "200"}, 300] for args in calls]
    proc = subprocess.run([sys.executable, "-c", _sharded_child() + _BATCH_CHILD, TESTS,
                           str(answer), str(sharded)], input=json.dumps(jobs),
                          capture_output=True, text=True, timeout=300 * (len(jobs) + 1),
                          env={**os.environ, "CHIPFIT_HOME": str(tmp / "home"), **FOUR})
    assert proc.returncode == 0 and answer.exists(), proc.stderr[-4000:]
    found = [subprocess.CompletedProcess(["chipfit", *args], code, stdout, stderr)
             for args, (code, stdout, stderr, _) in zip(
                 calls, json.loads(answer.read_text(encoding="utf-8")), strict=True)]
    return found[0], out, found[1:], json.loads(sharded.read_text(encoding="utf-8"))


def test_weak_scaling_over_four_simulated_devices(four):
    proc, out, _, _ = four
    assert proc.returncode == 0, proc.stderr
    data, points = _points(out)
    assert data["scaling"] == "weak" and data["simulated"] and data["source"] == "measured"
    assert [p["devices"] for p in points] == [1, 2, 4]
    assert [p["global_batch"] for p in points] == [8, 16, 32]
    assert all(p["per_device_batch"] == 8 and p["measurement"]["status"] == "ok" for p in points)
    assert points[0]["efficiency"] == pytest.approx(1.0)
    for p in points:  # efficiency = (T1 * B_N / B_1) / (N * T_N), as the table's caption says
        t1, tn = points[0]["median_s"], p["median_s"]
        expected = t1 * (p["global_batch"] / 8) / (p["devices"] * tn)
        assert p["efficiency"] == pytest.approx(expected) and math.isfinite(p["efficiency"])
    assert points[-1]["measurement"]["device"] == "jax:cpu:0-3"
    assert "efficiency" in proc.stdout and "Simulated CPU devices" in proc.stdout


def test_more_devices_than_present_an_uneven_batch_or_a_wrong_backend_are_usage_errors(four):
    for (args, says), proc in zip(USAGE_ERRORS, four[2], strict=True):
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        for words in says:
            assert words in proc.stderr, (args, proc.stderr)


def test_strong_scaling_with_simulate_and_no_xla_flags(cli, tmp_path):
    out = tmp_path / "scale.json"
    cli("scale", "--devices", "4", "--simulate", "--scaling", "strong", "--workload",
        "transformer-block", "--batch", "4", "--mode", "inference", "--quick", "--json",
        str(out), check=True)
    data, points = _points(out)
    assert data["scaling"] == "strong" and data["mode"] == "inference"
    assert [p["global_batch"] for p in points] == [4, 4, 4]
    assert [p["per_device_batch"] for p in points] == [4, 2, 1]


_SHARDED_EQUALS_SINGLE = textwrap.dedent("""
    import json
    import jax
    from chipfit.workloads import _jax_nets, get_workload
    from chipfit.workloads.nets import LR, MOMENTUM
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    net = get_workload("mlp")
    x, y = net.sample_batch(16)
    losses, heads, shardings = [], [], []
    for n in (1, 4):
        mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
        params = jax.device_put(net.init_weights(), NamedSharding(mesh, P()))
        call = _jax_nets.program(net.jax_apply, "train", "float32", params, LR, MOMENTUM)
        args = jax.device_put((x, y.astype(np.int32)), NamedSharding(mesh, P("data")))
        losses.append([float(call(*args)) for _ in range(3)])
        head = call.state[0]["head.weight"]
        heads.append(np.asarray(head))
        shardings.append([len(head.devices()), head.sharding.is_fully_replicated,
                          len(args[0].addressable_shards)])
    diff = float(np.max(np.abs(heads[0] - heads[1])) / np.max(np.abs(heads[0])))
    print(json.dumps({"losses": losses, "head_rel_diff": diff, "shardings": shardings}))
""")


def _sharded_child() -> str:
    """``_SHARDED_EQUALS_SINGLE`` as the start of ``four``'s process: what it prints, or its
    traceback, into the file named by ``sys.argv[3]``; the CLI calls run after it either way."""
    body = textwrap.indent(_SHARDED_EQUALS_SINGLE, " " * 12)
    return ("import contextlib, io, json, sys, traceback\n"
            "def _sharded():\n"
            "    printed = io.StringIO()\n"
            "    try:\n"
            "        with contextlib.redirect_stdout(printed):\n"
            f"{body}\n"
            "        answer = {'ok': True, 'stdout': printed.getvalue()}\n"
            "    except BaseException:\n"
            "        answer = {'ok': False, 'error': traceback.format_exc()}\n"
            "    with open(sys.argv[3], 'w', encoding='utf-8') as fh:\n"
            "        json.dump(answer, fh)\n"
            "_sharded()\n")


def test_a_sharded_train_step_computes_what_one_device_computes(four):
    answer = four[3]
    assert answer["ok"], answer["error"]
    data = json.loads(answer["stdout"])
    one, four = data["losses"]
    assert one == pytest.approx(four, rel=1e-5)  # same data-parallel SGD steps
    assert data["head_rel_diff"] < 1e-5  # and the same updated weights
    # weights replicated on all 4 devices; the batch split into 4 shards
    assert data["shardings"] == [[1, True, 1], [4, True, 4]]


@pytest.mark.slow
def test_torch_ddp_scaling_through_the_cli(cli, tmp_path):
    out = tmp_path / "scale.json"
    # a short budget per point: the steps are timed all the same (5 at least), and nothing
    # here depends on how many
    args = ("scale", "--backend", "torch", "--devices", "2", "--workload", "mlp", "--batch", "16",
            "--budget", "0.1", "--json", str(out))
    proc = cli(*args)
    if proc.returncode == 1 and "a process died (exit code -6)" in proc.stderr:
        # Known flake (1 run in ~3 once, 2026-11-29): a gloo rank aborts at exit with
        # "terminate called without an active exception". Reported as a one-line error (as
        # it should be); the cause is not found yet, so the run is tried once more.
        proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    data, points = _points(out)
    assert (data["scaling"], data["mode"], data["source"]) == ("weak", "train", "measured")
    assert [p["devices"] for p in points] == [1, 2]
    for p in points:  # 2 CPU processes trained in step over gloo, 16 items each
        m = p["measurement"]
        meta = dict(m["metadata"])
        assert m["status"] == "ok" and m["source"] == "measured" and m["block_times_s"]
        assert meta["comm_backend"] == "gloo" and meta["per_device_batch"] == "16"
        assert p["global_batch"] == 16 * p["devices"] == m["items_per_call"]
        assert m["first_call_s"] > 0 and m["flops"] > 0
        expected = points[0]["median_s"] * (p["global_batch"] / 16) / (p["devices"] *
                                                                        p["median_s"])
        assert p["efficiency"] == pytest.approx(expected) and math.isfinite(p["efficiency"])
    # Each rank trained on different data; DDP's gradient averaging kept the replicas equal.
    assert float(dict(points[1]["measurement"]["metadata"])["replica_max_diff"]) == 0.0
    assert "on torch" in proc.stdout
