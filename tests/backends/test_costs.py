"""Cost extraction on real torch and JAX: counted FLOPs and bytes match analytic formulas."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _traces import costable_checks  # noqa: E402
from chipfit.cost.torch import trace_torch  # noqa: E402
from chipfit.execute.costs import extract_costs  # noqa: E402
from chipfit.workloads import builtin_workloads, get_workload  # noqa: E402

F32 = 4


def ops_of(costs, op_class):
    return [o for o in costs.ops if o.op_class == op_class]


@pytest.mark.parametrize("size, m, k, n", [("256", 256, 256, 256),
                                           ("70x30@30x70", 70, 30, 70)])
def test_matmul_workload_matches_its_analytic_cost(size, m, k, n):
    c = extract_costs("matmul", size)
    assert c.flops == 2 * m * k * n
    assert c.bytes_moved == (m * k + k * n + m * n) * F32
    assert c.kernels == 1 and c.ops[0].op_class == "matmul"
    assert c.h2d_bytes == (m * k + k * n) * F32 and c.d2h_bytes == m * n * F32
    assert c.cost().flops == get_workload("matmul").cost(size, "float32").flops
    assert c.source == "estimated" and c.method == "torch-dispatch:real"


@pytest.mark.parametrize("tensors", ["real", "fake"])
def test_linear_layer(tensors):
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(8, 64)
    with torch.inference_mode():
        c = trace_torch(layer, (x,), tensors=tensors)
    (op,) = ops_of(c, "matmul")
    assert op.flops == 2 * 8 * 64 * 32
    # reads x, W, b; writes y (the transpose of W is a view: no bytes, no kernel)
    assert op.bytes_moved == (8 * 64 + 64 * 32 + 32 + 8 * 32) * F32
    assert c.kernels == 1 and c.host_ops == 2
    assert c.module_calls == 1
    assert op.shapes == ((32,), (8, 64), (64, 32), (8, 32))  # addmm(bias, x, W^T) -> y


def test_identical_ops_merge_only_when_their_shapes_match():
    a, b = torch.randn(16, 16), torch.randn(16, 16)
    c = trace_torch(lambda a, b: (a @ b, a @ b, a.t() @ b[:, :8]), (a, b))
    mms = ops_of(c, "matmul")
    assert [(o.count, o.shapes) for o in mms] == [(2, ((16, 16), (16, 16), (16, 16))),
                                                  (1, ((16, 16), (16, 8), (16, 8)))]


@pytest.mark.parametrize("tensors", ["real", "fake"])
def test_conv_layer(tensors):
    conv = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        c = trace_torch(conv, (x,), tensors=tensors)
    (op,) = ops_of(c, "conv")
    assert op.flops == 2 * (2 * 16 * 32 * 32) * (3 * 3 * 3)
    assert op.shapes[:2] == ((2, 3, 32, 32), (16, 3, 3, 3)) and op.shapes[-1] == (2, 16, 32, 32)
    assert op.bytes_moved == (2 * 3 * 32 * 32 + 16 * 3 * 9 + 2 * 16 * 32 * 32) * F32


def test_training_step_counts_backward_matmuls():
    layer = torch.nn.Linear(64, 32)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(8, 64)

    def step(x):
        opt.zero_grad()
        layer(x).sum().backward()
        opt.step()

    c = trace_torch(step, (x,), mode="train")
    matmul = sum(o.total_flops for o in ops_of(c, "matmul"))
    # forward x@W^T plus the weight gradient (the input needs no gradient)
    assert matmul == 2 * (2 * 8 * 64 * 32)
    assert ops_of(c, "elementwise")  # the optimizer update


def test_in_place_and_copy_bytes():
    x, y = torch.randn(1000), torch.randn(1000)
    c = trace_torch(lambda a, b: a.add_(b), (x, y))
    assert c.bytes_moved == 3 * 1000 * F32  # read a, read b, write a
    c = trace_torch(lambda a, b: a.copy_(b), (x, y))
    assert c.bytes_moved == 2 * 1000 * F32  # read b, write a (a's old value is not read)
    c = trace_torch(lambda a: a.reshape(-1).view(10, 100).t(), (x.view(10, 100),))
    assert c.bytes_moved == 0 and c.kernels == 0  # views only


def test_fused_transformer_layer_is_counted_inside_and_by_formula():
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True).eval()
    x = torch.randn(2, 10, 64)
    b, length, e, f = 2, 10, 64, 128
    expected = (2 * b * e * e * 4 * length + 4 * b * length * length * e  # attention
                + 4 * b * length * e * f)                                  # feed-forward
    with torch.inference_mode():
        real = trace_torch(layer, (x,))
        fake = trace_torch(layer, (x,), tensors="fake")
    assert real.flops == pytest.approx(expected, rel=0.02)  # + elementwise convention
    assert real.kernels > 5  # the fast path's inner kernels were seen
    assert fake.flops == pytest.approx(expected, rel=0.02)
    assert any("fused kernels" in n for n in fake.notes)


def test_lstm_flops():
    lstm = torch.nn.LSTM(16, 32, batch_first=True)
    x = torch.randn(4, 10, 16)
    with torch.inference_mode():
        c = trace_torch(lstm, (x,))
    recurrent = sum(o.total_flops for o in ops_of(c, "recurrent"))
    assert recurrent == 2 * 10 * 4 * (4 * 32) * (16 + 32)
    assert c.recurrent


def test_op_mix_and_by_class():
    c = extract_costs("matmul", "128")
    assert c.op_mix() == (("matmul", 1.0),)
    assert c.by_class()["matmul"] == (2 * 128**3, 3 * 128 * 128 * F32, 1)


def test_jax_program_costs():
    pytest.importorskip("jax")
    c = extract_costs("matmul", "96", backend="jax")
    assert c.method == "xla-hlo" and c.program_calls == 1
    assert sum(o.total_flops for o in ops_of(c, "matmul")) == 2 * 96**3
    assert c.h2d_bytes == 2 * 96 * 96 * F32
    e = extract_costs("elementwise", "4096", backend="jax")
    assert e.bytes_moved == 3 * 4096 * F32 and e.kernels == 1


def test_jax_conv_and_scan():
    jax = pytest.importorskip("jax")
    from jax import lax

    from chipfit.cost import _hlo

    def f(x, w):
        y = lax.conv_general_dilated(x, w, (1, 1), "SAME")

        def body(c, _):
            return c * 2.0, None

        return lax.scan(body, y, None, length=7)[0]

    spec = (jax.ShapeDtypeStruct((1, 3, 16, 16), "float32"),
            jax.ShapeDtypeStruct((8, 3, 3, 3), "float32"))
    kernels = _hlo.entry_kernels(jax.jit(f).lower(*spec).compile().as_text())
    conv = [k for k in kernels if k.op_class == "conv"]
    assert sum(k.flops for k in conv) == 2 * (8 * 16 * 16) * 9 * 3
    assert max(k.count for k in kernels) == 7  # the scan body, seven times


def test_every_builtin_workload_can_be_costed():
    """Each registered workload, at its smallest quick size, through the same path. The model
    workloads (batch-sized, torch, inference: twelve, resnet50 to t5-small-generate) are
    traced at that size by tests/backends/test_one_answer.py, which runs these same checks
    on its (memoised) trace: tracing them twice cost this file 35 s. The rest are here."""
    models = {w.name for w in builtin_workloads() if w.axis == "batch"
              and "torch" in w.backends() and "inference" in w.modes}
    rest = [wl for wl in builtin_workloads() if wl.name not in models]
    assert {wl.name for wl in rest} >= {"matmul", "elementwise"}
    for wl in rest:
        size = wl.sizes(True)[0] if wl.sizes(True) else wl.sizes(False)[0]
        costable_checks(wl, extract_costs(wl, size, "float32", wl.modes[0], "torch"), size)


def test_pooling_and_conv_variants():
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1), torch.nn.Conv2d(16, 16, 1, stride=2),
                              torch.nn.MaxPool2d(2))
    with torch.inference_mode():
        one = trace_torch(net, (torch.randn(1, 8, 16, 16),))
        many = trace_torch(net, (torch.randn(4, 8, 16, 16),))
    convs = ops_of(one, "conv")
    assert [o.variant for o in convs] == ["1x1b1", ""]  # stride 2 takes the usual path
    assert all(o.variant == "" for o in ops_of(many, "conv"))
    (pool,) = ops_of(one, "pool")
    assert pool.flops == 16 * 4 * 4  # one per output element


def test_few_row_matmuls_take_their_own_calibrated_path():
    import torch

    from chipfit.cost.torch import matmul_variant

    assert matmul_variant(torch.empty(1, 1024)) == "gemv"
    assert matmul_variant(torch.empty(4, 128, 768)) == "skinny"
    assert matmul_variant(torch.empty(1024, 1024)) == ""
    costs = extract_costs("mlp", "1")
    variants = {o.variant for o in costs.ops if o.op_class == "matmul"}
    assert variants == {"gemv"}
