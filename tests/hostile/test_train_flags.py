"""``chipfit train``: every new flag refuses garbage in one line with exit code 2."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.commands.train import count, duration, money

BAD = [
    ("--samples", "-5"), ("--samples", "0"), ("--samples", "1e999"), ("--samples", "nan"),
    ("--samples", "[red]x[/red]"), ("--samples", "1e20"), ("--tokens", "abc"),
    ("--epochs", "-1"), ("--lora-rank", "0"), ("--lora-rank", "x"), ("--lora-targets", "qkv"),
    ("--method", "dora"), ("--optimizer", "lion"), ("--precision", "int4"),
    ("--parallel", "tp=0"), ("--parallel", "zero9"), ("--parallel", "<b>"),
    ("--devices", "0"), ("--devices", "-3"), ("--devices", "99999999"), ("--batch", "0"),
    ("--seq-len", "0"), ("--seq-len", "99999999999"), ("--deadline", "yesterday"),
    ("--deadline", "-2h"), ("--deadline", "1e400h"), ("--budget", "-5"), ("--budget", "$x"),
    ("--hardware", "no-such-gpu"), ("--hardware", "[bold]h100[/bold]"),
]


@pytest.mark.parametrize(("flag", "value"), BAD)
def test_bad_values_are_one_line_exit_2(cli, flag, value):
    args = ["train", "llama-3.1-8b", flag, value]
    if flag not in ("--samples", "--tokens"):
        args += ["--tokens", "1e6"]
    result = cli(*args)
    assert result.returncode == 2, (flag, value, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "[/" not in result.stdout


def test_amount_is_required_and_single(cli):
    assert cli("train", "llama-3.1-8b").returncode == 2
    assert cli("train", "llama-3.1-8b", "--samples", "1", "--tokens", "1").returncode == 2
    both = cli("train", "llama-3.1-8b", "--tokens", "1e6", "--deadline", "1h", "--budget", "5")
    assert both.returncode == 2


def test_unknown_model_is_one_line(cli):
    result = cli("train", "<script>x</script>", "--samples", "10")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_json_rows_carry_what_the_issue_names(cli):
    result = cli("train", "llama-3.1-8b", "--tokens", "1e7", "--method", "qlora",
                 "--hardware", "l4,h100-sxm", "--devices", "1", "--parallel", "ddp", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "llama-3.1-8b" and data["rows"]
    for row in data["rows"]:
        for key in ("hardware", "devices", "fits", "memory_bytes_per_device",
                    "memory_breakdown", "step_s", "total_s", "usd", "kwh", "parallel", "mfu",
                    "band", "provenance"):
            assert key in row, key
    assert data["verdict"].startswith("Fine-tune with QLoRA on 1x")
    assert "full fine-tuning needs" in data["verdict"]


def test_the_table_is_readable_at_80_columns(cli):
    result = cli("train", "llama-3.1-70b", "--tokens", "1e9", "--deadline", "3d",
                 env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30))
def test_parsers_accept_or_refuse_cleanly(text):
    import argparse

    for parse in (duration, count, money):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert value > 0 and value == value and value != float("inf")


def test_bad_models_are_one_line_before_anything_is_traced(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "llama", "hidden_size": "[red]x[/red]"}')
    cases = [(str(bad), "--samples", "5"),
             ("no_such_module_here:make", "--input", "1x3", "--samples", "5"),
             ("resnet50", "--samples", "5", "--parallel", "tp=2"),
             ("resnet50", "--tokens", "5")]
    for args in cases:
        result = cli("train", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert "tracing" not in result.stderr  # refused before the model was traced


def test_a_fixed_model_parallel_layout_is_searched_over_strategies_and_counts(cli):
    result = cli("train", "llama-3.1-70b", "--tokens", "1e9", "--parallel", "tp=2,pp=2",
                 "--checkpointing", "-H", "h100-sxm", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["rows"][0]
    assert row["parallel"].endswith("tp=2,pp=2") and row["devices"] % 4 == 0 and row["fits"]
