"""Training plans for a traced (non-LLM) model: a user's factory, one real trace."""

from __future__ import annotations

FACTORY = '''
import torch


def make():
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 10))
'''


def test_a_factory_is_traced_and_priced_on_every_device(tmp_path, monkeypatch):
    from chipfit.pipelines.train import train

    (tmp_path / "train_traced_mlp.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    report = train("train_traced_mlp:make", samples=1e6, inputs=("1x64",),
                   hardware=["l4", "h100-sxm"], devices=1, parallel="ddp", precision="fp32")
    assert report.kind == "traced" and report.params == 64 * 256 + 256 + 256 * 10 + 10
    assert {r.hardware for r in report.rows} == {"l4", "h100-sxm"}
    for row in report.rows:
        assert row.fits and row.step_s > 0 and row.total_s > 0
        assert row.memory.activations > 0
        assert row.provenance["step_s"].startswith("predicted")
    # activations per sample: at least the hidden layer's output, well under a megabyte
    row = report.rows[0]
    per_sample = row.memory.activations / row.batch
    assert 256 * 4 <= per_sample < 1e6
    assert report.verdict.startswith("Train on 1x")


def test_an_encoder_config_is_traced_on_meta(tmp_path):
    import json

    from chipfit.pipelines.train import train

    path = tmp_path / "tiny-bert.json"
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "intermediate_size": 128,
                                "vocab_size": 100, "max_position_embeddings": 64}))
    report = train(str(path), samples=1e5, hardware=["l4"], devices=1, parallel="zero2",
                   seq_len=64, batch=8, measure=True)
    row = report.rows[0]
    assert report.kind == "traced" and row.fits and row.step_s > 0
    assert row.memory.activations > 8 * 64 * 64 * 4  # at least one hidden state per token
    assert not report.measured.ok and "factory" in report.measured.why
