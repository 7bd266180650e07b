"""``chipfit train --measure``: real training steps of a tiny decoder here, beside the plan."""

from __future__ import annotations

import json

from chipfit.workloads.llm import tiny_config


def test_measure_runs_real_steps_of_a_tiny_decoder(cli, tmp_path):
    cfg = {k: v for k, v in tiny_config("llama", layers=2).items() if not k.startswith("_")}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    result = cli("train", str(path), "--samples", "1000", "--seq-len", "64", "--hardware",
                 "l4", "--devices", "1", "--parallel", "ddp", "--measure", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    m = data["measured"]
    assert m["ok"], m["why"]
    assert m["source"] == "measured" and "mallinfo2" in m["method"]
    assert m["rss_peak_bytes"] > 0
    assert m["step_s"] > 0 and m["peak_bytes"] > 0 and m["planned_bytes"] > 0
    row = data["rows"][0]
    assert row["fits"] is True and row["step_s"] > 0 and row["memory_breakdown"]["weights"] > 0
