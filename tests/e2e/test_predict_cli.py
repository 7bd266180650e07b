"""catalog, calibrate, predict and validate as a user runs them (subprocesses, real CPU)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

CPU1 = "torch:cpu@1t"


@pytest.fixture(scope="module")
def home(tmp_path_factory, cpu_calibration):
    """One data directory for the module, holding a real calibration of this CPU (what
    ``chipfit calibrate`` measures), measured once per test run and shared with
    test_calibrate_predict.py (conftest's ``cpu_calibration``)."""
    from tests.conftest import calibrated_home

    path = calibrated_home(cpu_calibration, tmp_path_factory.mktemp("predict-home"))
    return {"CHIPFIT_HOME": str(path)}


def test_catalog_lists_and_shows_sources(cli):
    proc = cli("catalog", check=True)
    for key in ("h100-sxm", "tpu-v5e", "mi300x", "epyc-genoa-2vcpu"):
        assert key in proc.stdout
    assert "source: catalog" in proc.stdout
    show = cli("catalog", "show", "h100-sxm", check=True).stdout
    assert "Epoch AI ML Hardware dataset" in show and "989 TFLOP/s" in show
    entry = json.loads(cli("catalog", "show", "h100-sxm", "--json", check=True).stdout)
    matmul = next(e for e in entry["efficiencies"] if e["name"] == "matmul")
    assert matmul["value"] == 0.803 and "Maximum Achievable Matmul FLOPS" in matmul["sources"][0]
    data = json.loads(cli("catalog", "--kind", "tpu", "--json", check=True).stdout)
    assert {d["key"] for d in data["devices"]} == {"tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "tpu-v7"}
    assert all(d["source"] == "catalog" for d in data["devices"])


@pytest.mark.parametrize("args, expect", [
    (["catalog", "show", "h100"], "did you mean 'h100-sxm' or 'h100-pcie'"),
    (["catalog", "show"], "needs a KEY"),
    (["predict", "matmul", "--hardware", "h100-sxn", "--no-measure"], "did you mean 'h100-sxm'"),
    (["predict", "matmull", "--hardware", "h100-sxm"], "did you mean 'matmul'"),
    (["predict", "matmul", "--hardware", "torch:cuda:0"], "not available here"),
    (["predict", "matmul", "--hardware", "h100-sxm", "--batch", "7x"], "malformed"),
    (["validate", "--budget", "0"], "--budget must be positive"),
    (["calibrate", "--devices", "torch:cpux"], "did you mean 'torch:cpu'"),
    (["predict", "mlp", "-H", "t4", "--no-measure", "--host-speed", "0"], "host speed must be"),
    (["predict", "mlp", "-H", "t4", "--no-measure", "--host-speed", "nan"], "host speed must be"),
    (["predict", "mlp", "-H", "t4", "--no-measure", "--host-speed", "1e999"], "host speed must"),
    (["predict", "mlp", "-H", "t4", "--no-measure", "--host-speed", "fast"], "must be a number"),
    (["advise", "mlp", "--no-measure", "--host-speed", "-2"], "host speed must be"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, expect):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_calibrate_show(cli, home):
    data = json.loads(cli("calibrate", "--devices", CPU1, "--show", "--json", env=home,
                          check=True).stdout)
    (cal,) = data
    assert cal["format"] == "chipfit-calibration" and cal["device"] == CPU1
    assert cal["source"] == "measured" and cal["matmul"]["float32"]


def test_predict_catalog_and_local_side_by_side(cli, home):
    proc = cli("predict", "matmul", "--hardware", f"h100-sxm,tpu-v5e,{CPU1}", "--batch",
               "64,512", "--json", env=home, check=True)
    rows = json.loads(proc.stdout)["rows"]
    assert [(r["hardware"], r["prediction"]["size"]) for r in rows] == [
        ("h100-sxm", "64"), ("h100-sxm", "512"), ("tpu-v5e", "64"), ("tpu-v5e", "512"),
        (CPU1, "64"), (CPU1, "512")]
    for r in rows:
        p = r["prediction"]
        assert p["source"] == "predicted" and p["seconds"] > 0
        assert p["low_s"] < p["seconds"] < p["high_s"]
        assert p["bound"] in ("compute", "memory", "launch", "transfer")
        expected = {"h100-sxm": "gpu-kernel-model", "tpu-v5e": "catalog"}.get(r["hardware"],
                                                                              "calibrated")
        assert p["basis"] == expected
        assert p["precision"] or r["local"]  # catalog rows say which unit each dtype runs on
    local = [r for r in rows if r["local"]]
    assert all(r["measurement"]["source"] == "measured" and r["measurement"]["median_s"] > 0
               and r["error"] is not None for r in local)
    h100 = rows[1]["prediction"]
    assert h100["end_to_end_s"] > h100["seconds"]  # PCIe copies on top


def test_predict_table_with_breakdown(cli, home):
    proc = cli("predict", "matmul", "--hardware", f"t4,{CPU1}", "--batch", "70x30@30x70",
               "--breakdown", env=home, check=True)
    out = proc.stdout
    assert "t4" in out and CPU1 in out and "measured" in out
    assert "time by operator class" in out and "launch" in out


def test_validate_json_report(cli, home, tmp_path):
    report_path = tmp_path / "v.json"
    proc = cli("validate", "--devices", CPU1, "--workloads", "matmul,elementwise", "--sizes",
               "64,1024", "--budget", "0.2", "--json", str(report_path), env=home)
    assert "MAPE" in proc.stdout and "Published results" in proc.stdout
    data = json.loads(report_path.read_text())
    assert data["format"] == "chipfit-validation"
    assert {(c["workload"], c["size"]) for c in data["cases"]} == {
        ("matmul", "64"), ("matmul", "1024"), ("elementwise", "64"), ("elementwise", "1024")}
    assert all(c["error"] is not None for c in data["cases"])
    local = data["summary"]["local"][CPU1]
    # cases measured while the machine was shared (or too noisy) are left out, and counted
    assert local["cases"] + local["excluded"] == 4
    assert local["excluded"] == sum(c["excluded"] is not None for c in data["cases"])
    if local["cases"] == 0:  # every case busy: no median, said in one line, exit 1
        assert local["mape"] is None and proc.returncode == 1 and local["refused"]
        pytest.skip(f"the machine was busy during every case: {local['refused']}")
    assert proc.returncode == 0, proc.stderr
    assert local["mape"] is not None
    refs = data["references"]
    assert len(refs) == 15 and {r["device"] for r in refs} >= {"t4", "a100-sxm-80gb", "h100-sxm"}
    assert data["summary"]["reference"]["mape"] is not None
    # the next prediction's band on that device comes from this validation
    pred = json.loads(cli("predict", "matmul", "--hardware", CPU1, "--batch", "64",
                          "--no-measure", "--json", env=home, check=True).stdout)
    assert "chipfit validate" in pred["rows"][0]["prediction"]["band_basis"]


def test_a_host_bound_row_names_its_host_and_a_faster_host_is_faster(cli):
    """Issue 24 item 5: batch-1 eager PyTorch on a GPU is set by the host CPU queueing it, so
    the row says which host it assumes, its band holds the spread of the kernel data's hosts,
    and --host-speed (the API's host_speed) prices the user's own host."""
    import chipfit

    def row(*extra: str) -> dict:
        out = cli("predict", "mlp", "-H", "t4", "-s", "1", "--no-measure", "--json", *extra,
                  check=True).stdout
        return json.loads(out)["rows"][0]["prediction"]

    slow, fast = row(), row("--host-speed", "4")
    assert slow["host_s"] > slow["device_s"]  # host-bound at batch 1
    assert any("the host CPU is the median host" in n for n in slow["notes"])
    assert "spread of the kernel data's hosts" in slow["band_basis"]
    assert fast["host_s"] == pytest.approx(slow["host_s"] / 4)
    assert fast["device_s"] == pytest.approx(slow["device_s"])
    assert fast["seconds"] < slow["seconds"]
    api = chipfit.predict("mlp", 1, ["t4"], measure=False, host_speed=4)
    assert api[0].prediction.seconds == pytest.approx(fast["seconds"])
