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
