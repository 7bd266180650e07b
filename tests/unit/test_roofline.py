"""Roofline arithmetic, catalog roofs, HLO kernel parsing and the validation statistics.

Pure: hand-built costs and rates, no framework, no timing.
"""

from __future__ import annotations

import json
import math

import pytest

from chipfit.analysis.calibration import Calibration, CalPoint, roofs_from_calibration
from chipfit.analysis.roofline import Roofs, catalog_roofs, curve_rate, predict, scaled
from chipfit.analysis.validation import ReferenceCase, leave_one_out, mape
from chipfit.cost import _hlo
from chipfit.cost.records import OpCost, WorkloadCosts, merge_ops
from chipfit.errors import SchemaError, UnsupportedError
from chipfit.hardware.catalog import load_catalog
from chipfit.pipelines.calibrate import load_calibration, save_calibration
from chipfit.pipelines.validate import load_validation

GFLOP = 1e9


def roofs(**kw):
    base = dict(key="dev", name="dev", kind="cpu", basis="calibrated",
                matmul=(("float32", ((1.0, 100 * GFLOP),)),), bandwidth=((1.0, 10e9),),
                vector_flops=50 * GFLOP, band=0.2)
    base.update(kw)
    return Roofs(**base)


def costs(*ops, **kw):
    base = dict(workload="w", size="1", dtype="float32", mode="inference", backend="torch",
                method="test", ops=tuple(ops))
    base.update(kw)
    return WorkloadCosts(**base)


def mm(flops, nbytes, count=1):
    return OpCost("mm", "matmul", "float32", flops, nbytes, 1, count)


# ------------------------------------------------------------------------- curves

def test_curve_rate_interpolates_in_log_log_and_clamps():
    curve = ((1e3, 1e9), (1e6, 1e11))
    assert curve_rate(curve, 1e3) == pytest.approx(1e9)
    assert curve_rate(curve, 1e6) == pytest.approx(1e11)
    # halfway in log(size) is halfway in log(rate): the geometric mean
    assert curve_rate(curve, math.sqrt(1e3 * 1e6)) == pytest.approx(1e10)
    assert curve_rate(curve, 1.0) == pytest.approx(1e9)
    assert curve_rate(curve, 1e12) == pytest.approx(1e11)
    assert curve_rate(((5.0, 7.0),), 1e9) == 7.0
    assert math.isnan(curve_rate((), 1.0))


# ------------------------------------------------------------------------ predict

def test_compute_bound_matmul_is_flops_over_rate():
    p = predict(costs(mm(2e9, 1e6)), roofs())
    assert p.seconds == pytest.approx(2e9 / 100e9)
    assert p.bound == "compute" and p.compute_s == pytest.approx(p.seconds)
    assert p.memory_s == 0 and p.launch_s == pytest.approx(0)
    assert p.source == "predicted" and p.basis == "calibrated"


def test_memory_bound_op_is_bytes_over_bandwidth():
    add = OpCost("add", "elementwise", "float32", 1e6, 12e6)
    p = predict(costs(add), roofs())
    assert p.seconds == pytest.approx(12e6 / 10e9)
    assert p.bound == "memory"


def test_each_op_takes_the_max_of_its_roofs_then_they_add():
    a = mm(1e9, 1e6)        # compute 10 ms, memory 0.1 ms
    b = OpCost("add", "elementwise", "float32", 1e3, 1e8)  # memory 10 ms
    p = predict(costs(a, b), roofs())
    assert p.seconds == pytest.approx(0.01 + 0.01)
    assert p.compute_s == pytest.approx(0.01) and p.memory_s == pytest.approx(0.01)


def test_counts_multiply():
    p1 = predict(costs(mm(1e9, 1e3)), roofs())
    p3 = predict(costs(mm(1e9, 1e3, count=3)), roofs())
    assert p3.seconds == pytest.approx(3 * p1.seconds)


def test_sync_device_adds_host_overhead():
    r = roofs(host_per_op_s=5e-6, host_per_view_s=1e-6, host_per_module_s=2e-6)
    view = OpCost("t", "view", "float32", 0.0, 0.0, kernels=0)
    c = costs(mm(1e6, 1e3), view, module_calls=4)
    p = predict(c, r)
    roof = 1e6 / 100e9
    assert p.seconds == pytest.approx(roof + 5e-6 + 1e-6 + 4 * 2e-6)
    assert p.launch_s == pytest.approx(5e-6 + 1e-6 + 8e-6)
    assert p.bound == "launch"
    assert {c.op_class for c in p.breakdown} == {"matmul", "view", "python"}
    assert sum(c.seconds for c in p.breakdown) == pytest.approx(p.seconds)


def test_async_device_overlaps_host_and_device():
    r = roofs(kind="gpu", asynchronous=True, host_per_op_s=15e-6, kernel_floor_s=5e-6)
    tiny = costs(mm(1e3, 1e3, count=100))   # host-bound: 100 x 15 us
    p = predict(tiny, r)
    assert p.seconds == pytest.approx(100 * 15e-6)
    assert p.bound == "launch"
    big = costs(mm(1e10, 1e3, count=2))     # device-bound: 2 x (5 us + 0.1 s)
    q = predict(big, r)
    assert q.seconds == pytest.approx(2 * (5e-6 + 0.1))
    assert q.bound == "compute"


def test_jit_program_pays_one_dispatch_per_call():
    r = roofs(host_per_call_s=20e-6)
    p = predict(costs(mm(1e3, 1e3, count=10), program_calls=1), r)
    assert p.seconds == pytest.approx(20e-6 + 10 * max(1e3 / 100e9, 1e3 / 10e9))


def test_transfer_time_and_transfer_bound():
    r = roofs(kind="gpu", asynchronous=True, h2d_bw=10e9, d2h_bw=5e9)
    c = costs(mm(1e6, 1e3), h2d_bytes=1e8, d2h_bytes=1e8)
    p = predict(c, r)
    assert p.transfer_s == pytest.approx(1e8 / 10e9 + 1e8 / 5e9)
    assert p.end_to_end_s == pytest.approx(p.seconds + p.transfer_s)
    assert p.bound == "transfer" and p.resident_bound == "compute"
    assert predict(c, roofs()).transfer_s == 0.0  # host memory: no copies


def test_band_and_throughput():
    p = predict(costs(mm(1e9, 1e3), items=32), roofs(band=0.25))
    assert p.low_s == pytest.approx(p.seconds / 1.25)
    assert p.high_s == pytest.approx(p.seconds * 1.25)
    assert p.throughput == pytest.approx(32 / p.seconds)


def test_dtype_and_class_pick_their_curve():
    r = roofs(matmul=(("float32", ((1.0, 1e11),)), ("bfloat16", ((1.0, 4e11),))),
              conv=(("float32", ((1.0, 5e10),)),))
    bf = OpCost("mm", "matmul", "bfloat16", 4e11, 1.0)
    conv = OpCost("convolution", "conv", "float32", 5e10, 1.0)
    f64 = OpCost("mm", "matmul", "float64", 1e11, 1.0)  # no curve: falls back to float32
    assert predict(costs(bf), r).seconds == pytest.approx(1.0)
    assert predict(costs(conv), r).seconds == pytest.approx(1.0)
    assert predict(costs(f64), r).seconds == pytest.approx(1.0)


def test_non_matrix_ops_without_vector_rate_are_memory_only():
    add = OpCost("add", "elementwise", "float32", 1e12, 1e3)
    assert predict(costs(add), roofs(vector_flops=None)).seconds == pytest.approx(1e3 / 10e9)


def test_scaled_multiplies_rates():
    r2 = scaled(roofs(), 2)
    assert predict(costs(mm(2e9, 1e3)), r2).seconds == pytest.approx(1e9 / 100e9)
    assert r2.key == "2x dev"


def test_merge_ops_folds_duplicates():
    merged = merge_ops([mm(1, 2), mm(1, 2), mm(3, 4)])
    assert [(o.flops, o.count) for o in merged] == [(1, 2), (3, 1)]


# ----------------------------------------------------------------- catalog roofs

def test_catalog_roofs_apply_documented_efficiencies():
    h100 = load_catalog()["h100-sxm"]
    r = catalog_roofs(h100, "torch")
    assert r.basis == "catalog" and r.asynchronous
    eff = h100.efficiency("matmul").value
    assert dict(r.matmul)["float32"][0][1] == pytest.approx(67e12 * eff)      # torch: no TF32
    assert dict(r.conv)["float32"][0][1] == pytest.approx(494.5e12 * eff)     # cuDNN: TF32
    assert dict(r.matmul)["bfloat16"][0][1] == pytest.approx(989e12 * eff)
    assert r.bandwidth[0][1] == pytest.approx(3.35e12 * h100.efficiency("memory").value)
    pageable = h100.efficiency("pageable").value
    assert r.h2d_bw == pytest.approx(63e9 * h100.efficiency("host_copy").value * pageable)
    jax = catalog_roofs(h100, "jax")
    assert dict(jax.matmul)["float32"][0][1] == pytest.approx(494.5e12 * eff)  # XLA: TF32
    assert jax.host_per_op_s == 0 and jax.host_per_call_s > 0


def test_catalog_roofs_fallbacks_are_noted():
    cat = load_catalog()
    tpu = catalog_roofs(cat["tpu-v5e"], "jax")
    assert dict(tpu.matmul)["float32"][0][1] == pytest.approx(
        197e12 * cat["tpu-v5e"].efficiency("matmul").value)
    assert any("bfloat16 pass" in n for n in tpu.notes)
    assert tpu.vector_flops is None
    t4 = catalog_roofs(cat["t4"], "torch", dtypes=("bfloat16",))
    assert any("bf16 peak n/a" in n for n in t4.notes)
    apple = catalog_roofs(cat["apple-m3-max-gpu"], "torch")
    assert apple.h2d_bw is None  # unified memory: no copies


def test_catalog_roofs_refuse_unsourced_bandwidth():
    with pytest.raises(UnsupportedError, match="chipfit calibrate"):
        catalog_roofs(load_catalog()["epyc-genoa-2vcpu"])


# ----------------------------------------------------------------------- HLO text

# A trimmed optimized module as jax's compiled.as_text() prints it.
HLO = "\n".join([
    'HloModule jit_f, is_scheduled=true',
    '',
    '%fused_computation (param_0: f32[64,32], param_1: f32[32,16]) -> f32[64,16] {',
    '  %param_0 = f32[64,32]{1,0} parameter(0)',
    '  %param_1 = f32[32,16]{1,0} parameter(1)',
    '  ROOT %dot.0 = f32[64,16]{1,0} dot(%param_0, %param_1), '
    'lhs_contracting_dims={1}, rhs_contracting_dims={0}',
    '}',
    '',
    '%fused_computation.1 (param_0.1: f32[64,16]) -> f32[64] {',
    '  %param_0.1 = f32[64,16]{1,0} parameter(0)',
    '  %tanh.0 = f32[64,16]{1,0} tanh(%param_0.1)',
    '  %constant.1 = f32[] constant(0)',
    '  ROOT %reduce.1 = f32[64]{0} reduce(%tanh.0, %constant.1), '
    'dimensions={1}, to_apply=%add',
    '}',
    '',
    '%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {',
    '  %p = (s32[], f32[8]{0}) parameter(0)',
    '  %g = f32[8]{0} get-tuple-element(%p), index=1',
    '  %m = f32[8]{0} multiply(%g, %g)',
    '  ROOT %t = (s32[], f32[8]{0}) tuple(%i, %m)',
    '}',
    '',
    'ENTRY %main (x: f32[64,32], w: f32[32,16], k: f32[2,16,16,3], '
    'f: f32[3,3,3,8]) -> f32[64] {',
    '  %x = f32[64,32]{1,0} parameter(0)',
    '  %w = f32[32,16]{1,0} parameter(1)',
    '  %k = f32[2,16,16,3]{3,2,1,0} parameter(2)',
    '  %f = f32[3,3,3,8]{3,2,1,0} parameter(3)',
    '  %mm = f32[64,16]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_computation',
    '  %conv = f32[2,16,16,8]{3,2,1,0} convolution(%k, %f), '
    'window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f',
    '  %loop = (s32[], f32[8]{0}) while(%init), condition=%cond, body=%body, '
    'backend_config={"known_trip_count":{"n":"5"}}',
    '  ROOT %red = f32[64]{0} fusion(%mm), kind=kLoop, calls=%fused_computation.1',
    '}',
    '',
])


def test_hlo_entry_kernels():
    kernels = {k.name: k for k in _hlo.entry_kernels(HLO)}
    assert set(kernels) == {"mm", "conv", "m", "red"}
    assert kernels["mm"].op_class == "matmul"
    assert kernels["mm"].flops == 2 * 64 * 16 * 32
    assert kernels["mm"].bytes_moved == 4 * (64 * 32 + 32 * 16 + 64 * 16)
    assert kernels["conv"].op_class == "conv"
    assert kernels["conv"].flops == 2 * (2 * 16 * 16 * 8) * 9 * 3
    assert kernels["red"].op_class == "reduction"
    assert kernels["m"].count == 5  # a while body runs known_trip_count times
    assert kernels["m"].in_loop and not kernels["mm"].in_loop
    assert _hlo.entry_kernels("not hlo") == []
    once = HLO.replace('{"known_trip_count":{"n":"5"}}', '{"known_trip_count":{"n":"1"}}')
    assert not {k.name: k for k in _hlo.entry_kernels(once)}["m"].in_loop  # runs once


def test_a_compiled_loops_operands_stay_cached_whatever_the_working_set():
    """The last-level-cache spill prices a model's operators as reading from memory; an
    operator repeated every iteration of a compiled loop re-reads its weights from the cache
    (a batch-1 scan over 300 steps: +52% before), unless they alone exceed the cache."""
    from dataclasses import replace

    curve = ((1e4, 50e9), (1e7, 150e9), (1e8, 10e9))
    r = roofs(bandwidth=curve, llc_bytes=32e6)
    step = OpCost("fusion", "elementwise", "float32", 1.0, 2e6, 1, 300, in_loop=True)
    plain = replace(step, in_loop=False)
    big = replace(step, bytes_moved=40e6)  # more than the cache by itself
    spilled = dict(working_set_bytes=400e6)
    assert predict(costs(step, **spilled), r).memory_s == pytest.approx(
        predict(costs(step), r).memory_s)
    assert predict(costs(plain, **spilled), r).memory_s > 2 * predict(costs(plain), r).memory_s
    assert predict(costs(big, **spilled), r).memory_s > predict(costs(big), r).memory_s
    # merged as different operators: the same shape inside and outside a loop
    assert len(merge_ops([step, plain])) == 2


def test_hlo_type_bytes():
    assert _hlo.type_bytes("bf16[4,4]{1,0}") == 32
    assert _hlo.type_bytes("(f32[2], s8[3], pred[])") == 8 + 3 + 1


# --------------------------------------------------------------- validation maths

def test_mape_is_the_median_absolute_error():
    assert mape([0.1, -0.3, 0.2]) == pytest.approx(0.2)
    assert mape([0.1, -0.3]) == pytest.approx(0.2)
    assert math.isnan(mape([]))
    assert mape([float("nan"), 0.5]) == pytest.approx(0.5)


def ref(id_, model, published, predicted, scenario="mlperf-offline", metric="throughput"):
    return ReferenceCase(id_, model, scenario, "TensorRT", "t4", 1, 256, "int8", metric,
                         "samples/s", published, predicted, "compute", "src")


def test_leave_one_out_scales_by_the_others_median_ratio():
    cases = [ref("a", "m", 100, 200), ref("b", "m", 100, 100), ref("c", "m", 100, 50)]
    out = {c.id: c for c in leave_one_out(cases)}
    # a: others' published/predicted ratios are 1 and 2 -> median (geometric) sqrt(2)
    assert out["a"].loo_predicted == pytest.approx(200 * math.sqrt(2))
    assert out["b"].loo_predicted == pytest.approx(100 * math.sqrt(0.5 * 2))
    lat = [ref("x", "m", 2.0, 1.0, "mlperf-ss", "latency"), ref("y", "m", 4.0, 2.0, "mlperf-ss",
           "latency"), ref("z", "m", 1.0, 1.0, "mlperf-ss", "latency")]
    out = {c.id: c for c in leave_one_out(lat)}
    # latency: y and z have speed ratios 0.5 and 1 -> factor sqrt(0.5); latency divides
    assert out["x"].loo_predicted == pytest.approx(1.0 / math.sqrt(0.5))
    assert out["x"].error == pytest.approx(-0.5)


# --------------------------------------------------------------- stored formats

def calibration():
    return Calibration(
        device="torch:cpu", name="cpu", kind="cpu", backend="torch", created_at="now",
        chipfit_version="0", machine=(("cpu", "x"),),
        points=(CalPoint("matmul", "float32", "96", 1.7e6, 2e-5, 2.1e-5, 0.01),),
        matmul=(("float32", ((1.7e6, 9e10), (1e9, 1.2e11))),), conv=(),
        bandwidth=((1e4, 5e10), (1e8, 1e10)), host_per_op_s=3e-6,
        checks=(("matmul 320", 1e-3, 1.1e-3), ("x", 1.0, 1.0), ("y", 1.3, 1.0)))


def test_calibration_roundtrip_and_band(tmp_path):
    cal = calibration()
    path = save_calibration(cal, tmp_path / "c.json")
    back = load_calibration(path=path)
    assert back.matmul == cal.matmul and back.bandwidth == cal.bandwidth
    assert back.points[0].seconds == cal.points[0].seconds and back.source == "measured"
    assert back.check_mape == pytest.approx(abs(1e-3 - 1.1e-3) / 1.1e-3)
    r = roofs_from_calibration(back)
    assert r.basis == "calibrated" and r.band == pytest.approx(back.check_mape)
    assert "held-out" in r.band_basis
    assert roofs_from_calibration(back, 0.3, "validate").band == 0.3
    assert load_calibration(path=tmp_path / "missing.json") is None


def test_newer_calibration_or_validation_is_refused(tmp_path):
    path = save_calibration(calibration(), tmp_path / "c.json")
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match="newer"):
        load_calibration(path=path)
    val = tmp_path / "v.json"
    val.write_text(json.dumps({"format": "chipfit-validation", "schema_version": 99}))
    with pytest.raises(SchemaError):
        load_validation(val)


def test_curve_with_repeated_sizes_is_safe():
    from chipfit.analysis.calibration import fit_curve

    points = [CalPoint("conv1x1", "float32", "a", 1e6, 1e-4), CalPoint("conv1x1", "float32",
              "b", 1e6, 4e-4), CalPoint("conv1x1", "float32", "c", 4e6, 4e-4)]
    curve = fit_curve(points, 0.0)
    assert [x for x, _ in curve] == [1e6, 4e6]
    assert curve[0][1] == pytest.approx(math.sqrt(1e10 * 2.5e9))  # geometric mean of rates
    assert curve_rate(((1.0, 2.0), (1.0, 3.0), (5.0, 4.0)), 1.0) == 2.0


def test_a_call_larger_than_the_last_level_cache_reads_its_operands_from_memory():
    """Beyond the LLC each operator's operands come back from memory in proportion to what
    the cache cannot hold (the calibration times operators alone, operands cached)."""
    from dataclasses import replace

    from chipfit.analysis.roofline import Roofs, predict, spill_bandwidth
    from chipfit.cost.records import OpCost, WorkloadCosts

    curve = ((1e4, 50e9), (1e7, 150e9), (1e8, 10e9))
    roofs = Roofs("cpu", "cpu", "cpu", "calibrated", (("float32", ((1e9, 1e11),)),), curve,
                  llc_bytes=32e6)
    assert spill_bandwidth(roofs, 16e6) is None  # fits: the cached rates stand
    assert spill_bandwidth(replace(roofs, llc_bytes=None), 1e9) is None  # cache unknown
    assert spill_bandwidth(roofs, None) is None  # working set unknown
    half = spill_bandwidth(roofs, 64e6)  # half the bytes spill
    assert half == pytest.approx(1 / (0.5 / 10e9 + 0.5 / 150e9))
    assert spill_bandwidth(roofs, 1e12) == pytest.approx(10e9, rel=1e-3)  # all from memory
    op = OpCost("add", "elementwise", "float32", 1e6, 4e6)
    costs = WorkloadCosts("w", "1", "float32", "inference", "torch", "t", (op,))
    cached = predict(costs, roofs)
    spilled = predict(replace(costs, working_set_bytes=64e6), roofs)
    assert spilled.memory_s == pytest.approx(4e6 / half)
    assert spilled.memory_s > cached.memory_s
    assert any("last-level cache" in n for n in spilled.notes)
    assert not any("last-level cache" in n for n in cached.notes)


def _lstm_layer(steps, batch, inputs, hidden, count=1, two_dim=False):
    """A traced oneDNN LSTM layer: input, w_ih, w_hh, b_ih, b_hh, hx, cx (torch's order)."""
    gated = 4 * hidden
    x = (steps * batch, inputs) if two_dim else (steps, batch, inputs)
    shapes = (x, (gated, inputs), (gated, hidden), (gated,), (gated,), (1, batch, hidden),
              (1, batch, hidden))
    flops = 2.0 * steps * batch * gated * (inputs + hidden)
    return OpCost("mkldnn_rnn_layer", "recurrent", "float32", flops, 0.0, 1, count,
                  shapes=shapes)


def test_a_fused_cpu_lstm_layer_runs_its_steps_one_after_another():
    """oneDNN's LSTM layer: the input projection as one GEMM, then every step streams the
    recurrent weights (or computes at the best rate) and pays the calibrated step floor; its
    FLOPs alone would price 300 dependent batch-1 steps as one large GEMM."""
    from dataclasses import replace

    from chipfit.analysis.roofline import cpu_recurrent_seconds

    curve = ((1e6, 20 * GFLOP), (1e9, 200 * GFLOP))
    r = roofs(matmul=(("float32", curve),), bandwidth=((1e3, 5e9), (1e7, 100e9)),
              rnn_step_s=4e-6)
    op = _lstm_layer(300, 1, 512, 512)
    x_flops, h_flops, w_bytes = 2 * 300 * 2048 * 512, 2 * 2048 * 512, 2048 * 512 * 4
    step = max(w_bytes / r.bandwidth_at(w_bytes), h_flops / 200e9) + 4e-6
    expected = x_flops / r.matmul_rate("float32", x_flops) + 300 * step
    compute, memory = cpu_recurrent_seconds(op, r)
    assert compute == 0.0 and memory == pytest.approx(expected)  # streaming dominates
    flops_only = op.flops / r.matmul_rate("float32", op.flops)
    assert memory > 2 * flops_only
    pred = predict(costs(op), r)
    assert pred.seconds == pytest.approx(expected) and pred.bound == "memory"
    # at batch 64 a step computes longer than it streams: the compute part carries it
    wide = cpu_recurrent_seconds(_lstm_layer(300, 64, 512, 512), r)
    assert wide[1] == 0.0 and wide[0] > memory
    # the batch comes from the hidden state, not the input's layout
    assert cpu_recurrent_seconds(_lstm_layer(300, 1, 512, 512, two_dim=True), r) == (
        compute, memory)
    # beyond the last-level cache only the weights' first read comes from memory
    spilled = cpu_recurrent_seconds(op, r, spill=10e9)
    assert sum(spilled) == pytest.approx(expected + w_bytes / 10e9)
    # no floor measured: streaming and computing only
    assert sum(cpu_recurrent_seconds(op, replace(r, rnn_step_s=0.0))) == pytest.approx(
        expected - 300 * 4e-6)
    # other operators, an accelerator's roofs and unreadable shapes keep the roofline
    assert cpu_recurrent_seconds(mm(1e9, 1e6), r) is None
    assert cpu_recurrent_seconds(op, replace(r, kind="gpu")) is None
    assert cpu_recurrent_seconds(replace(op, shapes=((300,),)), r) is None
    assert cpu_recurrent_seconds(replace(op, op="mkldnn_rnn_layer_backward"), r) is None


def test_the_recurrent_step_floor_is_what_calibration_measured_beyond_the_model():
    """The floor is the median over the calibration's LSTM points of (measured - modelled
    without a floor) / steps, never negative; none measured: 0."""
    from chipfit.analysis.calibration import recurrent_step_floor
    from chipfit.analysis.roofline import cpu_recurrent_seconds

    r = roofs(matmul=(("float32", ((1e6, 20 * GFLOP), (1e9, 200 * GFLOP))),),
              bandwidth=((1e3, 5e9), (1e7, 100e9)))

    def point(hidden, steps, extra_per_step):
        op = _lstm_layer(steps, 1, hidden, hidden)
        modelled = sum(cpu_recurrent_seconds(op, r))
        return CalPoint("recurrent", "float32", f"{hidden}h{steps}", op.flops,
                        modelled + steps * extra_per_step)

    base = dict(device="torch:cpu", name="cpu", kind="cpu", backend="torch", created_at="t",
                chipfit_version="0", machine=(), matmul=r.matmul, conv=(),
                bandwidth=r.bandwidth)
    cal = Calibration(points=(point(128, 64, 3e-6), point(256, 64, 5e-6),
                              point(192, 32, 9e-6)), **base)
    assert recurrent_step_floor(cal, r) == pytest.approx(5e-6)
    assert roofs_from_calibration(cal).rnn_step_s == pytest.approx(5e-6)
    assert any("recurrent step floor" in row[0] for row in roofs_from_calibration(cal).efficiency)
    faster = Calibration(points=(point(128, 64, -2e-6),), **base)  # faster than the model
    assert recurrent_step_floor(faster, r) == 0.0
    assert recurrent_step_floor(Calibration(points=(), **base), r) == 0.0
    odd = Calibration(points=(CalPoint("recurrent", "float32", "bad", 1.0, 1.0),), **base)
    assert recurrent_step_floor(odd, r) == 0.0


def test_a_few_row_matmul_reads_both_row_curves_for_its_own_weight_matrix():
    """Calibration measures few-row products at 1 row (gemv) and 128 rows (skinny); a
    64-row product lies between them for the same weights, on log rows, not at the 128-row
    rate of its FLOPs (30% too fast for a batch-64 MLP)."""
    from chipfit.analysis.roofline import few_rows_rate

    gemv = ((1e5, 20 * GFLOP), (1e7, 30 * GFLOP))
    skinny = ((1e7, 100 * GFLOP), (1e9, 200 * GFLOP))
    r = roofs(matmul=(("float32", ((1.0, 300 * GFLOP),)), ("float32/gemv", gemv),
                      ("float32/skinny", skinny)))

    def linear(rows, k=1024, n=1024):
        variant = "gemv" if rows <= 8 else "skinny"
        return OpCost("addmm", "matmul", "float32", 2.0 * rows * k * n, 0.0, variant=variant,
                      shapes=((n,), (rows, k), (k, n), (rows, n)))

    one, full, half = linear(1), linear(128), linear(64)
    assert few_rows_rate(one, r) == pytest.approx(curve_rate(gemv, one.flops))
    assert few_rows_rate(full, r) == pytest.approx(curve_rate(skinny, full.flops))
    low, high = curve_rate(gemv, half.flops / 64), curve_rate(skinny, half.flops * 2)
    assert few_rows_rate(half, r) == pytest.approx(math.exp(
        math.log(low) + 6 / 7 * (math.log(high) - math.log(low))))
    assert few_rows_rate(half, r) < curve_rate(skinny, half.flops)  # slower than the old rule
    assert few_rows_rate(linear(256), r) == pytest.approx(curve_rate(skinny, 2 ** 28))
    assert predict(costs(half), r).compute_s == pytest.approx(half.flops / few_rows_rate(half, r))
    # no curve for either path, no output shape, or not a few-row matmul: the old rule
    assert few_rows_rate(half, roofs()) is None
    assert few_rows_rate(OpCost("addmm", "matmul", "float32", 1e8, 0.0, variant="skinny"),
                         r) is None
    assert few_rows_rate(mm(1e9, 1e6), r) is None


def test_an_xla_dot_with_few_output_rows_takes_the_few_row_path():
    """A dot with at most GEMV_ROWS output rows (a matrix-vector product's rank-1 output is
    one row) is marked ``gemv`` with its output shape, so a calibrated CPU prices it between
    its 1- and 128-row curves; wider dots keep the square curve."""
    hlo = "\n".join([
        "HloModule m",
        "",
        "ENTRY %main (v: f32[32], x: f32[4,32], y: f32[64,32], w: f32[32,16]) -> f32[16] {",
        "  %v = f32[32]{0} parameter(0)",
        "  %x = f32[4,32]{1,0} parameter(1)",
        "  %y = f32[64,32]{1,0} parameter(2)",
        "  %w = f32[32,16]{1,0} parameter(3)",
        "  %one = f32[16]{0} dot(%v, %w), lhs_contracting_dims={0}, rhs_contracting_dims={0}",
        "  %four = f32[4,16]{1,0} dot(%x, %w), lhs_contracting_dims={1}, "
        "rhs_contracting_dims={0}",
        "  ROOT %wide = f32[64,16]{1,0} dot(%y, %w), lhs_contracting_dims={1}, "
        "rhs_contracting_dims={0}",
        "}",
    ])
    kernels = {k.name: k for k in _hlo.entry_kernels(hlo)}
    assert (kernels["one"].variant, kernels["one"].out_shape) == ("gemv", (1, 16))
    assert (kernels["four"].variant, kernels["four"].out_shape) == ("gemv", (4, 16))
    assert (kernels["wide"].variant, kernels["wide"].out_shape) == ("", ())
    ops = {o.flops: o for o in _hlo.op_costs(kernels.values())}
    assert ops[2 * 4 * 16 * 32].shapes == ((4, 16),) and ops[2 * 4 * 16 * 32].variant == "gemv"
    assert ops[2 * 64 * 16 * 32].shapes == ()
