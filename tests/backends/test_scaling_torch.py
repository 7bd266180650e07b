"""Data-parallel scaling with torch.distributed: 2 CPU processes over gloo, for real.

Weak scaling (1 and 2 ranks training in step, the replicas kept equal, the efficiency) runs
through the CLI in tests/e2e/test_scale.py::test_torch_ddp_scaling_through_the_cli, which
checks the same facts from its JSON; here the API's strong scaling, its callback and its
refusals."""

from __future__ import annotations

import pytest

from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.pipelines.scale_torch import scale_torch

pytest.importorskip("torch")


@pytest.mark.slow
def test_strong_scaling_finetune_splits_the_global_batch_and_a_taken_port_is_replaced(
        monkeypatch) -> None:
    """Strong scaling splits the global batch over the ranks. And the free port is found,
    closed, then bound by rank 0: another process may take it in between (seen in a parallel
    test run). Here the first launch's port is taken before rank 0 listens: that launch goes
    again on a new port (the same processes as the scaling run, so no launch of its own)."""
    import socket

    import chipfit.pipelines.scale_torch as st

    real, given, held = st._free_port, [], []

    def first_taken() -> int:
        port = real()
        if not held:  # someone else listens there now
            sock = socket.socket()
            sock.bind(("127.0.0.1", port))
            sock.listen()
            held.append(sock)
        given.append(port)
        return port

    monkeypatch.setattr(st, "_free_port", first_taken)
    seen = []
    try:
        result = st.scale_torch("mlp", counts=(2,), batch=16, scaling="strong",
                                mode="finetune", platform="cpu", warmup=1, steps=3,
                                on_point=seen.append)
    finally:
        held[0].close()
    assert (result.platform, result.scaling, result.mode, result.source) == (
        "cpu", "strong", "finetune", "measured")
    assert [(p.devices, p.global_batch, p.per_device_batch) for p in result.points] == [
        (1, 16, 16), (2, 16, 8)]
    assert list(result.points) == seen  # each point given to the callback as it was measured
    for point in result.points:
        m = point.measurement
        assert m.ok and m.source == "measured" and len(m.block_times_s) == 3
        assert m.meta["comm_backend"] == "gloo" and point.global_batch == m.items_per_call
    two = result.points[1]
    # Each rank trained on different data; DDP's gradient averaging kept the replicas equal.
    assert float(two.measurement.meta["replica_max_diff"]) == 0.0
    assert result.efficiency(result.baseline) == 1.0
    assert two.throughput == pytest.approx(16 / two.measurement.median_s)
    assert result.efficiency(two) == pytest.approx(
        result.baseline.measurement.median_s / (2 * two.measurement.median_s))
    assert result.to_dict()["points"][1]["devices"] == 2  # the JAX command's JSON shape
    # the first launch got a taken port and went again; the second launch, a port of its own
    assert len(given) == 3 and given[0] != given[1], given


@pytest.mark.parametrize("kwargs, error, message", [
    ({"workload": "matmul"}, InvalidInputError, "not a trainable network"),
    ({"counts": (0,)}, InvalidInputError, "1 or more"),
    ({"platform": "tpu"}, InvalidInputError, "cpu or cuda"),
    ({"batch": 0}, InvalidInputError, "at least 1"),
    ({"scaling": "strong", "counts": (3,), "batch": 16}, InvalidInputError, "split evenly"),
    ({"scaling": "wide"}, UnknownNameError, "scaling"),
    ({"mode": "serve"}, UnknownNameError, "mode"),
])
def test_bad_requests_are_refused(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        scale_torch(**{"workload": "mlp", "platform": "cpu", **kwargs})


def test_cuda_without_enough_gpus_is_refused() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() >= 64:
        pytest.skip("has 64 GPUs")
    with pytest.raises(InvalidInputError, match="CUDA devices"):
        scale_torch("mlp", 64, platform="cuda")
