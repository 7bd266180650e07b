"""GPU predictions from real torch traces (CPU, meta and fake tensors; nothing timed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from chipfit.analysis.gpu_predict import estimate  # noqa: E402
from chipfit.hardware.gpu_arch import gpu_figures  # noqa: E402
from chipfit.predictors.fits import shipped_gpu_model  # noqa: E402
from chipfit.workloads.gpu_trace import trace_config, trace_for_gpu  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "gpu_kernels"
needs_data = pytest.mark.skipif(not (DATA / "models").is_dir(),
                                reason=f"the NeuSight data is not at {DATA}")

TINY_BERT = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
             "vocab_size": 1000, "max_position_embeddings": 128}


def _gru_costs(batch: int):
    with torch.device("meta"):
        gru = torch.nn.GRU(80, 512, 3)
        x = torch.empty(300, batch, 80)
    return trace_for_gpu(gru, (x,))


def test_a_gru_is_one_fused_kernel_on_gpu():
    costs = _gru_costs(1)
    launched = [o for o in costs.ops if o.kernels]
    assert [o.op for o in launched] == ["_cudnn_rnn"]
    assert launched[0].variant == "fused:gru:3:1" and launched[0].op_class == "recurrent"
    h100 = gpu_figures()["h100-sxm"]
    small = estimate(costs, h100, shipped_gpu_model())
    large = estimate(_gru_costs(256), h100, shipped_gpu_model())
    assert large.seconds > small.seconds  # batch 256 does more work than batch 1
    assert small.device_s < 0.016  # not the CPU's 1085 per-step kernels at 15 us each


def test_sdpa_is_traced_as_one_fused_attention_kernel(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_BERT))
    costs = trace_config(path, 2, 32)
    names = {o.op for o in costs.ops if o.kernels}
    assert "_scaled_dot_product_efficient_attention" in names
    assert "bmm" not in names and "_softmax" not in names
    eager = trace_config(path, 2, 32, attention="eager")
    assert {"bmm", "_softmax"} <= {o.op for o in eager.ops if o.kernels}


def test_ops_carry_shapes_for_the_kernel_models(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_BERT))
    costs = trace_config(path, 2, 32, attention="eager")
    addmm = next(o for o in costs.ops if o.op == "addmm")
    assert (64, 64) in addmm.shapes or (64, 128) in addmm.shapes
    assert all(o.shapes for o in costs.ops if o.kernels)


def test_precision_and_band_appear_in_gpu_predictions(tmp_path):
    from chipfit.pipelines.model_predict import predict_model

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_BERT))
    rows = predict_model(str(path), ["h100-sxm", "t4", "tpu-v5e"], batch=2, seq_len=32)
    by_key = {r.target.key: r.prediction for r in rows}
    h100 = by_key["h100-sxm"]
    assert h100.basis == "gpu-kernel-model" and h100.low_s < h100.seconds < h100.high_s
    assert any("FP32 lanes" in line and "allow_tf32" in line for line in h100.precision)
    assert any("bf16 peak" in line for line in by_key["tpu-v5e"].precision)
    # batch 2, tiny model: host-bound, yet the last kernel's device time is never hidden
    assert by_key["t4"].seconds > h100.seconds


def test_config_json_through_predict_json(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_BERT))
    result = cli("predict", str(path), "--batch", "4", "--seq-len", "16", "--hardware",
                 "h100-sxm,l4", "--no-measure", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"workload", "rows"}
    for row in data["rows"]:
        pred = row["prediction"]
        assert pred["seconds"] > 0 and pred["low_s"] < pred["seconds"] < pred["high_s"]
        assert pred["bound"] in ("compute", "memory", "launch", "transfer")
        assert pred["precision"]


def test_a_bad_config_is_a_one_line_error(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    result = cli("predict", str(path), "--hardware", "h100-sxm", "--no-measure")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_large_config_is_traced_without_weights(tmp_path):
    """A 1.3B-parameter GPT-2-shaped config: meta device, so no weights are allocated."""
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 2048,
              "n_layer": 24, "n_head": 16, "vocab_size": 50257, "n_positions": 2048}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    from chipfit.workloads.gpu_trace import config_model

    model, inputs, _ = config_model(path, 1, 128)
    params = sum(p.numel() for p in model.parameters())
    assert params > 1.2e9 and all(p.is_meta for p in model.parameters())
    costs = trace_config(path, 1, 128)
    est = estimate(costs, gpu_figures()["a100-pcie-40gb"], shipped_gpu_model())
    assert est.seconds > 0 and costs.flops > 2 * params * 128 * 0.9


@needs_data
@pytest.mark.parametrize("model", ["bert_large", "gpt2_large", "switchxl4"])
def test_end_to_end_labels_of_the_three_configs(model):
    """The shipped fit against the data's end-to-end labels (in-sample for the fit's GPUs;
    the leave-one-GPU-out figures are in benchmarks/gpu_predictor.py)."""
    from chipfit.pipelines.gpu_data import load_e2e_labels
    from chipfit.pipelines.gpu_validate import _trace_label

    labels = [r for r in load_e2e_labels(DATA) if r["model"] == model]
    errors = []
    for r in labels:
        costs = _trace_label(DATA, r["model"], r["seq_len"], r["batch"], r["mode"])
        est = estimate(costs, gpu_figures()[r["device"]], shipped_gpu_model())
        errors.append(abs(est.seconds - r["seconds"]) / r["seconds"])
    assert labels and sum(errors) / len(errors) < 0.35
