"""``chipfit validate --gpu-data``'s tables from a constructed result (no fit runs): the
protocols and their breakdown by model and mode are shown, readable at 80 columns."""

from __future__ import annotations

import json

import pytest

from chipfit.analysis.gpu_kernels import DEFAULTS, GpuParams
from chipfit.analysis.gpu_predict import GpuModel, HostCosts
from chipfit.pipelines import gpu_validate as gv


def _result() -> dict:
    cases = [gv.E2eCase("bert_large", 512, 8, "t4", "inference", 1.0, 1.1, True),
             gv.E2eCase("gpt2_large", 1024, 4, "t4", "inference", 2.0, 1.9, True),
             gv.E2eCase("bert_large", 512, 8, "t4", "inference", 1.0, 1.05, False)]
    held = [c for c in cases if c.held_out]
    model = GpuModel(GpuParams.of(DEFAULTS), HostCosts((("linear", 3e-5),), 2e-6, 4e-6, "test"),
                     0.16, "test band")
    protocols = {"leave-one-GPU-out": gv.protocol_summary(held, 0.16),
                 "pascal-only (fit P4, P100; test V100, T4, A100)":
                     gv.protocol_summary(held[:1], 0.16)}
    return {"kernels_logo": {"bmm": {"t4": 0.2}}, "gpus": ["t4"], "e2e": cases, "band": 0.16,
            "band_basis": "test band", "coverage": 1.0, "model": model, "rows": {"gemm": 1},
            "sample": 10, "protocols": protocols}


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    (tmp_path / "kernels").mkdir()
    monkeypatch.setattr(gv, "run", lambda *a, **k: _result())
    return tmp_path


def test_protocol_tables_show_each_model_and_mode_within_80_columns(cli, fake_run):
    proc = cli("validate", "--gpu-data", str(fake_run), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "by protocol, model and mode" in proc.stdout
    assert "pascal-only" in proc.stdout and "gpt2_large inference" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_protocol_breakdown_is_in_the_json(cli, fake_run):
    proc = cli("validate", "--gpu-data", str(fake_run), "--json")
    assert proc.returncode == 0, proc.stderr
    protocols = json.loads(proc.stdout)["errors"]["protocols"]
    by = protocols["leave-one-GPU-out"]["by_model_mode"]
    assert by["bert_large inference"]["mean_ape"] == pytest.approx(0.1)
    assert by["gpt2_large inference"]["cases"] == 1
