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
    from chipfit.pipelines.gpu_prediction import shipped_gpu_model
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
