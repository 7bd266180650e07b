"""Stacks from the command line: bench --stacks, predict --stack, and their mistakes."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("torch")


def test_bench_stacks_table_and_csv(cli, tmp_path):
    out = tmp_path / "r.csv"
    proc = cli("bench", "-w", "mlp", "-s", "2", "-d", "torch:cpu", "--stacks",
               "eager,int8-torch", "--quick", "--no-save", "--csv", str(out), check=True)
    assert "Software stacks" in proc.stdout and "int8-torch" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    assert [r["stack"] for r in rows] == ["eager", "int8-torch"]
    assert rows[0]["max_rel_diff"] == "" and float(rows[1]["max_rel_diff"]) >= 0
    assert float(rows[1]["compile_s"]) > 0


@pytest.mark.parametrize("args, expect", [
    (("bench", "-w", "mlp", "--stacks", "onnxrutime", "--no-save"), "did you mean"),
    (("predict", "mlp", "--stack", "tensorrt", "-H", "local"), "catalog hardware only"),
    (("predict", "mlp", "--stack", "tensorrt", "--dtype", "int4", "-H", "t4"), "precision"),
    (("bench", "--suite", "default", "--stacks", "int8", "--no-save"), "drop --suite"),
])
def test_stack_mistakes_are_one_line_errors(cli, args, expect):
    proc = cli(*args)
    assert proc.returncode == 2
    assert expect in proc.stderr and "Traceback" not in proc.stderr


TINY_BERT = {"model_type": "bert", "architectures": ["BertForSequenceClassification"],
             "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 512}


def test_predict_config_engine_prices_real_tokens_and_a_missing_peak_as_unknown(cli, tmp_path):
    """A user's BERT config under --stack tensorrt: without --seq-len the fitted share of the
    128-token window (about 37%: 48 real tokens), with it the tokens as given; a V100 (no int8 peak)
    gets no number, null in JSON with the reason, and the table says unknown."""
    import json

    path = tmp_path / "bert.json"
    path.write_text(json.dumps(TINY_BERT))
    proc = cli("predict", str(path), "--stack", "tensorrt", "-H", "t4,v100-sxm2", "--json",
               check=True)
    rows = {r["hardware"]: r["prediction"] for r in json.loads(proc.stdout)["rows"]}
    t4, v100 = rows["t4"], rows["v100-sxm2"]
    assert t4["seconds"] > 0 and t4["unknown"] == "" and t4["band"] > 0
    from chipfit.predictors.fits import shipped_engine_fit

    real = round(128 * shipped_engine_fit()[0].token_fraction)
    assert any(n.startswith(f"tokens: priced at {real} real tokens of the 128-token window")
               for n in t4["notes"])
    assert v100["unknown"] == "no int8 peak in the catalog" and v100["missing_peak"] == "int8"
    assert v100["seconds"] is None and v100["band"] is None and v100["throughput"] is None
    given = cli("predict", str(path), "--stack", "tensorrt", "-H", "t4,v100-sxm2",
                "--seq-len", "47", check=True)
    assert "priced at the 47 real tokens per sequence of --seq-len 47" in " ".join(
        given.stdout.split())
    line = next(x for x in given.stdout.splitlines() if "v100-sxm2 (no int8 peak)" in x)
    assert "unknown" in line and "ms" not in line and "us" not in line
