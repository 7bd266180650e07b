"""``chipfit feed`` as a user runs it: a subprocess, the real CPU, tiny sizes, --json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")


def test_feed_measures_the_pipeline_and_the_local_model_and_keeps_the_run(cli):
    proc = cli("feed", "cnn", "--batch", "2", "--workers", "0", "--hardware", "local",
               "--samples", "4", "--budget", "0.05", "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["pipeline"] == "images" and data["batch"] == 2
    assert "grayscale JPEGs 28x28" in data["describe"]
    (supply,) = data["supply"]
    assert supply["workers"] == 0 and supply["source"] == "measured" and supply["samples_per_s"] > 0
    (device,) = data["devices"]
    assert device["device"] == "torch:cpu" and device["source"] == "measured"
    assert device["status"] in ("starved", "fed", "borderline") and "estimated" in device["line"]
    assert data["verdict"] == "cpu-only" and data["summary"]
    kinds = {(m["workload"], m["stack"], m["source"]) for m in data["measurements"]}
    assert kinds == {("feed-images", "loader-0w", "measured"), ("cnn", "eager", "measured")}
    assert "timing the images loader with 0 workers" in proc.stderr  # progress on stderr
    run_file = Path(os.environ["CHIPFIT_HOME"]) / "runs" / f"{data['run_id']}.json"
    assert json.loads(run_file.read_text())["command"] == "feed"
    assert (Path(os.environ["CHIPFIT_HOME"]) / "chipfit.sqlite3").exists()
