"""Defects of ``chipfit predict`` found on the way to one predictor (issue 23, item 6).

Each test failed before its fix. Nothing is timed; models are traced on fake or meta tensors.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


# --------------------------------------------------- (a) dropout inside fused attention

def _attention_step(q, k, v):
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    out.sum().backward()
    return out


@pytest.mark.parametrize("tensors", ["fake", "real"])
def test_attention_with_dropout_traces_as_one_fused_kernel(tensors):
    """A training step's SDPA has dropout > 0; the CPU's fused kernel refuses it, so a GPU
    trace on CPU tensors (what predict does for built-in models) ended in a traceback."""
    from chipfit.cost.torch import trace_torch
    from chipfit.workloads.gpu_trace import gpu_kernels

    def make():
        return tuple(torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))

    with gpu_kernels():
        costs = trace_torch(_attention_step, make(), mode="train", tensors=tensors)
    launched = {o.op: o for o in costs.ops if o.kernels}
    fused = [o for o in launched.values() if o.op_class == "attention"]
    assert fused and "bmm" not in launched and "_softmax" not in launched
    # dropout changes which scores survive, not the work: the FLOPs of p = 0
    with gpu_kernels():
        plain = trace_torch(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
            q, k, v).sum().backward(), make(), mode="train", tensors=tensors)
    assert sum(o.total_flops for o in fused) == pytest.approx(
        sum(o.total_flops for o in plain.ops if o.op_class == "attention"))


def test_finetune_step_of_a_transformers_model_is_traced_for_a_gpu():
    """What ``predict bert-base --mode finetune -H t4`` traces (a training step with
    transformers' SDPA attention and its 0.1 attention dropout, run on real CPU tensors at a
    small batch, under :func:`gpu_kernels`), on a tiny BERT; the GPU kernel models price it."""
    import transformers

    from chipfit.analysis.gpu_predict import estimate
    from chipfit.cost.torch import trace_torch
    from chipfit.hardware.gpu_arch import gpu_figures
    from chipfit.predictors.fits import shipped_gpu_model
    from chipfit.workloads.gpu_trace import gpu_kernels

    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     attn_implementation="sdpa")
    assert config.attention_probs_dropout_prob > 0
    model = transformers.BertForSequenceClassification(config).train()
    tokens, labels = torch.randint(0, 100, (2, 16)), torch.tensor([0, 1])

    def step(tokens, labels):
        loss = model(input_ids=tokens, labels=labels).loss
        loss.backward()
        return loss

    with gpu_kernels():
        costs = trace_torch(step, (tokens, labels), mode="finetune", tensors="real")
    assert any(o.op_class == "attention" and o.kernels for o in costs.ops)
    assert estimate(costs, gpu_figures()["t4"], shipped_gpu_model()).seconds > 0


# ------------------------------------------- (b) models without SDPA: eager attention

TINY_SWITCH = {"architectures": ["SwitchTransformersForConditionalGeneration"],
               "model_type": "switch_transformers", "d_model": 32, "d_kv": 8, "d_ff": 64,
               "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "num_experts": 4,
               "expert_capacity": 8, "num_sparse_encoder_layers": 1,
               "num_sparse_decoder_layers": 1, "vocab_size": 100, "decoder_start_token_id": 0,
               "pad_token_id": 0, "eos_token_id": 1}


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_a_switch_transformers_config_is_predicted_with_eager_attention(tmp_path, mode):
    """transformers has no SDPA path for Switch Transformers: the config falls back to its
    eager attention (matmul, softmax, matmul), said so in a note, instead of failing."""
    from chipfit.pipelines.model_predict import predict_model

    path = tmp_path / "switch.json"
    path.write_text(json.dumps(TINY_SWITCH))
    (row,) = predict_model(str(path), ["t4"], batch=2, seq_len=16, mode=mode)
    assert row.prediction.seconds > 0 and row.prediction.mode.startswith(mode)
    assert any("eager attention" in n for n in row.prediction.notes)


def test_the_eager_fallback_traces_matmul_and_softmax(tmp_path):
    from chipfit.workloads.gpu_trace import trace_config

    path = tmp_path / "switch.json"
    path.write_text(json.dumps(TINY_SWITCH))
    costs = trace_config(path, 2, 16)
    launched = {o.op for o in costs.ops if o.kernels}
    assert {"bmm", "_softmax"} & launched or {"matmul", "_softmax"} & launched
    assert not any(o.op_class == "attention" for o in costs.ops)


def test_a_gpu_trace_imports_no_switch_transformers_yet_routes_one_built_inside(monkeypatch):
    """The experts' even routing needs transformers' Switch Transformers module, whose import
    cost 4-5 CPU-seconds on every GPU trace (a user's MLP in advise included): it is patched
    only once imported, before the trace or while inside it (a config's model built there)."""
    import importlib
    import sys

    import transformers.models.switch_transformers as package

    from chipfit.cost.torch import trace_torch
    from chipfit.workloads.gpu_trace import _SWITCH_MODULE, gpu_kernels

    monkeypatch.delitem(sys.modules, _SWITCH_MODULE, raising=False)  # as in a fresh process
    if "modeling_switch_transformers" in vars(package):
        monkeypatch.delattr(package, "modeling_switch_transformers")
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    with gpu_kernels():
        costs = trace_torch(mlp, (torch.randn(1, 16),), tensors="fake")
        assert costs.ops and _SWITCH_MODULE not in sys.modules
        module = importlib.import_module(_SWITCH_MODULE)  # built inside: routed evenly
        balanced = module.SwitchTransformersExperts.forward
        assert "_balanced_experts" in balanced.__qualname__
        assert module.__loader__.get_source(_SWITCH_MODULE)  # the loader answers as before
    assert module.SwitchTransformersExperts.forward is not balanced
    assert "_balanced_experts" not in module.SwitchTransformersExperts.forward.__qualname__
    with gpu_kernels():  # imported before: patched at once
        assert module.SwitchTransformersExperts.forward is not balanced
        assert "_balanced_experts" in module.SwitchTransformersExperts.forward.__qualname__
    assert not any(type(f).__name__ == "_OnImport" for f in sys.meta_path)


# ------------------------------------------- (g) GPU breakdown rows carry FLOPs and bytes

TINY_BERT = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
             "vocab_size": 1000, "max_position_embeddings": 128}


def test_gpu_kernel_model_breakdown_carries_flops_and_bytes_per_class(tmp_path):
    from chipfit.predictors import predict_catalog
    from chipfit.workloads.gpu_trace import trace_config

    path = tmp_path / "bert.json"
    path.write_text(json.dumps(TINY_BERT))
    costs = trace_config(path, 2, 32)
    pred = predict_catalog(costs, "t4")
    assert pred.route == "gpu-kernel-model"
    traced = costs.by_class()
    rows = {c.op_class: c for c in pred.breakdown}
    assert set(rows) == {c for c, (_, _, kernels) in traced.items() if kernels}
    for op_class, row in rows.items():
        flops, nbytes, kernels = traced[op_class]
        assert (row.flops, row.bytes_moved, row.kernels) == (flops, nbytes, kernels)
        assert row.ops == sum(o.count for o in costs.ops if o.op_class == op_class and o.kernels)
    assert sum(r.flops for r in rows.values()) == pytest.approx(costs.flops)
    assert rows["matmul"].flops > 0 and all(r.bytes_moved > 0 for r in rows.values())
    assert sum(r.compute_s + r.memory_s for r in rows.values()) == pytest.approx(
        pred.compute_s + pred.memory_s)


# ---------------------------------------------------- (c) every row gets a fit check

def test_a_config_too_large_for_the_device_is_flagged_in_table_and_json(cli, tmp_path):
    path = tmp_path / "bert.json"
    path.write_text(json.dumps(TINY_BERT))
    args = ("predict", str(path), "--batch", "100000", "--seq-len", "32", "--mode", "train",
            "--hardware", "t4,h100-sxm", "--no-measure")
    result = cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["hardware"]: r["prediction"] for r in json.loads(result.stdout)["rows"]}
    t4, h100 = rows["t4"], rows["h100-sxm"]
    assert t4["fits"] is False and t4["memory_need_bytes"] > t4["memory_have_bytes"] == 16e9
    assert h100["memory_need_bytes"] == t4["memory_need_bytes"]
    assert h100["fits"] is (h100["memory_need_bytes"] <= 80e9)
    table = cli(*args)
    assert table.returncode == 0 and "t4 (does not fit:" in table.stdout
    assert "GiB >" in table.stdout  # need > capacity, on the row


def test_the_memory_a_traced_call_needs_grows_with_the_batch(tmp_path):
    from chipfit.workloads.gpu_trace import trace_config

    path = tmp_path / "bert.json"
    path.write_text(json.dumps(TINY_BERT))
    small, large = (trace_config(path, b, 32, mode="train") for b in (1, 64))
    weights = 4 * sum(p for p in (1000 * 64, 128 * 64))  # at least the embeddings, float32
    assert small.memory_bytes > weights
    assert large.memory_bytes > small.memory_bytes
    assert trace_config(path, 64, 32).memory_bytes < large.memory_bytes  # no backward


# ------------------------------------------- (d) --no-measure never measures or calibrates

@pytest.fixture
def no_calibrating(monkeypatch):
    """Calibrating or measuring here fails the test at once (instead of taking minutes)."""
    import chipfit.execute._worker as worker
    import chipfit.pipelines.calibrate as calibrate

    def refuse(*args, **kwargs):
        raise AssertionError("--no-measure measured or calibrated")

    monkeypatch.setattr(calibrate, "calibrate", refuse)
    monkeypatch.setattr(worker, "run_here", refuse)


def test_no_measure_on_an_uncalibrated_local_device_says_so_in_one_line(cli, no_calibrating):
    result = cli("predict", "matmul", "-s", "64", "-H", "torch:cpu", "--no-measure")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("chipfit: error")]
    assert len(lines) == 1 and "torch:cpu is not calibrated" in lines[0]
    assert "chipfit calibrate --devices torch:cpu" in lines[0]


def test_no_measure_predicts_a_calibrated_local_device_from_its_calibration(no_calibrating):
    from chipfit.analysis.calibration import Calibration, CalPoint
    from chipfit.pipelines.calibrate import save_calibration
    from chipfit.pipelines.predict import predict_workload

    save_calibration(Calibration(
        device="torch:cpu", name="cpu", kind="cpu", backend="torch", created_at="now",
        chipfit_version="0", machine=(("cpu", "x"),),
        points=(CalPoint("matmul", "float32", "96", 1.7e6, 2e-5, 2.1e-5, 0.01),),
        matmul=(("float32", ((1.7e6, 9e10), (1e9, 1.2e11))),), conv=(),
        bandwidth=((1e4, 5e10), (1e8, 1e10)), host_per_op_s=3e-6,
        checks=(("matmul 320", 1e-3, 1.05e-3),)))
    (row,) = predict_workload("matmul", ["64"], ["torch:cpu"], measure=False)
    assert row.measurement is None and row.prediction.basis == "calibrated"
    assert row.prediction.seconds > 0
