"""Calibrate on the real CPU, then predict: close to what the timer measures.

The tolerance is generous on purpose (the CPU may be shared while tests run); the tighter
figures come from ``chipfit validate`` on a quiet machine.
"""

from __future__ import annotations

import pytest

from chipfit.analysis.calibration import contention_of, roofs_from_calibration
from chipfit.analysis.roofline import predict
from chipfit.analysis.trust import MAX_CHECK_ERROR
from chipfit.errors import UnreliableError
from chipfit.execute.costs import extract_costs
from chipfit.execute.job import run_job
from chipfit.pipelines.calibrate import calibrate, load_calibration
from chipfit.pipelines.calibrate import save_calibration as save
from chipfit.spec import DeviceRef, Job, TimingConfig

torch = pytest.importorskip("torch")

FAST = TimingConfig(warmup_s=0.01, min_block_s=0.002, min_samples=5, target_rel_ci=0.1,
                    budget_s=0.15)
MEASURE = TimingConfig(warmup_s=0.02, min_block_s=0.004, min_samples=5, target_rel_ci=0.05,
                       budget_s=0.5)
TOLERANCE = 3.0  # predicted within a factor of 3 of measured


@pytest.fixture(scope="module")
def torch_cal(cpu_calibration):
    """This CPU's real calibration, measured once per test run and shared with
    tests/e2e/test_predict_cli.py (conftest's ``cpu_calibration``: about 25 CPU-seconds);
    read back here as measured, refused or not."""
    from tests.conftest import CALIBRATED_CPU

    return load_calibration(CALIBRATED_CPU, path=cpu_calibration["measured"])


def within(pred: float, measured: float, factor: float = TOLERANCE) -> bool:
    return measured / factor <= pred <= measured * factor


def measured(workload: str, size: str, device: str) -> float:
    m = run_job(Job(workload, size, DeviceRef.parse(device), timing=MEASURE))
    assert m.ok, m.note
    return m.median_s


def test_calibration_measures_this_cpu(torch_cal):
    cal = torch_cal
    assert cal.source == "measured" and cal.device == "torch:cpu@1t" and cal.kind == "cpu"
    assert 1e-8 < cal.host_per_op_s < 1e-3
    curve = dict(cal.matmul)["float32"]
    assert [x for x, _ in curve] == sorted(x for x, _ in curve)
    assert all(1e8 < rate < 1e13 for _, rate in curve)  # 0.1 GFLOP/s .. 10 TFLOP/s
    assert all(1e8 < bw < 1e13 for _, bw in cal.bandwidth)
    assert {p.probe for p in cal.points} >= {"dispatch", "view", "module", "matmul", "conv",
                                             "stream", "recurrent"}
    assert len(cal.checks) == 4 and cal.check_mape is not None
    assert cal.h2d_bw is None  # host memory: nothing to copy


def test_a_batch_1_lstm_is_priced_step_by_step_from_the_calibrated_floor(torch_cal):
    """The calibration's one-layer LSTM probes count FLOPs as the tracer does and give a
    step floor; the built-in LSTM (layers of another width than the probes') is priced by
    the step model, not as one GEMM of its FLOPs."""
    from chipfit.analysis.roofline import cpu_recurrent_seconds
    from chipfit.cost.torch import trace_torch
    from chipfit.pipelines.calibrate import RECURRENT_SHAPES

    probes = {p.size: p for p in torch_cal.points if p.probe == "recurrent"}
    assert set(probes) == {f"{h}h{s}" for h, s in RECURRENT_SHAPES}
    hidden, steps = RECURRENT_SHAPES[0]
    with torch.inference_mode():
        traced = trace_torch(torch.nn.LSTM(hidden, hidden), (torch.rand(steps, 1, hidden),))
    layer = [o for o in traced.ops if o.op == "mkldnn_rnn_layer"]
    assert len(layer) == 1 and layer[0].flops == probes[f"{hidden}h{steps}"].work
    roofs = roofs_from_calibration(torch_cal)
    assert 0.0 <= roofs.rnn_step_s < 1e-3
    costs = extract_costs("lstm", "1", "float32", "inference", "torch")
    fused = [o for o in costs.ops if o.op == "mkldnn_rnn_layer"]
    assert fused and all(int(o.shapes[2][1]) not in dict(RECURRENT_SHAPES) for o in fused)
    stepped = sum(o.count * sum(cpu_recurrent_seconds(o, roofs)) for o in fused)
    best = max(r for _, r in dict(roofs.matmul)["float32"])
    assert stepped > sum(o.total_flops for o in fused) / best
    recurrent = next(c for c in predict(costs, roofs).breakdown if c.op_class == "recurrent")
    assert recurrent.compute_s + recurrent.memory_s == pytest.approx(stepped)


def test_saved_calibration_is_used(torch_cal):
    if torch_cal.check_mape > MAX_CHECK_ERROR:  # the shared machine disturbed it: refused
        with pytest.raises(UnreliableError, match="misses its own held-out checks"):
            save(torch_cal)
        assert load_calibration("torch:cpu@1t") is None
        return
    if contention_of(torch_cal)[0]:  # measured while the machine was shared: refused too
        with pytest.raises(UnreliableError, match="measured while the machine was shared"):
            save(torch_cal)
        assert load_calibration("torch:cpu@1t") is None
        return
    path = save(torch_cal)
    assert path.exists()
    back = load_calibration("torch:cpu@1t")
    assert back.matmul == torch_cal.matmul and back.contended == torch_cal.contended


@pytest.mark.parametrize("size", ["256", "1000"])
def test_calibrated_matmul_prediction_is_close_to_measured(torch_cal, size):
    pred = predict(extract_costs("matmul", size), roofs_from_calibration(torch_cal))
    assert pred.basis == "calibrated" and pred.bound in ("compute", "memory", "launch")
    assert within(pred.seconds, measured("matmul", size, "torch:cpu@1t"))


def test_calibrated_elementwise_prediction_is_close_to_measured(torch_cal):
    size = str(2**20)
    pred = predict(extract_costs("elementwise", size), roofs_from_calibration(torch_cal))
    assert within(pred.seconds, measured("elementwise", size, "torch:cpu@1t"))


def test_jax_calibrate_then_predict(monkeypatch):
    pytest.importorskip("jax")
    import chipfit.pipelines.calibrate as calibrate_module

    # a first attempt refused (measured beside the other xdist worker) is measured again
    # after a 2 s pause; the second attempt still runs, without the wait: nothing here
    # depends on its length
    monkeypatch.setattr(calibrate_module, "CALIBRATION_BACKOFF_S", 0.01)
    cal = calibrate("jax:cpu:0", timing=FAST)
    assert cal.host_per_call_s > 0 and cal.backend == "jax"
    pred = predict(extract_costs("matmul", "384", backend="jax"), roofs_from_calibration(cal))
    assert within(pred.seconds, measured("matmul", "384", "jax:cpu:0"))
