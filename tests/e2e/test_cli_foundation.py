"""The CLI as a user runs it: subprocesses, real torch, real CPU."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chipfit.store.runs import load_run

# The table, JSON and CSV are what is checked, not the timing: a point stops at 0.1 s
FAST = ["--budget", "0.1", "--target", "0.05"]


def test_devices_table_and_json(cli):
    proc = cli("devices", "--verbose", check=True)
    assert "torch:cpu" in proc.stdout
    assert "Not available, and why" in proc.stdout or "unavailable" not in proc.stdout
    data = json.loads(cli("devices", "--json", check=True).stdout)
    cpu = next(d for d in data["devices"] if d["ref"] == "torch:cpu")
    assert cpu["cores"] >= 1 and cpu["kind"] == "cpu"
    assert isinstance(data["problems"], list)


def test_bench_writes_table_json_and_csv(cli, tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    proc = cli("bench", "--workloads", "matmul,elementwise", "--sizes", "64",
               "--devices", "torch:cpu,torch:cpu@1t", *FAST, "--json", str(out_json),
               "--csv", str(out_csv), check=True)
    assert "torch:cpu@1t" in proc.stdout and "measured" in proc.stdout
    run = load_run(out_json)
    assert len(run.measurements) == 4 and all(m.ok for m in run.measurements)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 4 and {r["source"] for r in rows} == {"measured"}
    assert float(rows[0]["median_s"]) > 0


def test_bench_quick_seeds_sizes_include_the_tiny_matmul(cli, tmp_path):
    out_json = tmp_path / "r.json"
    cli("bench", "--workloads", "matmul", "--quick", "--devices", "torch:cpu",
        "--sizes", "70x30@30x70", "--json", str(out_json), check=True)
    (m,) = load_run(out_json).measurements
    assert m.size == "70x30@30x70" and m.flops == 2 * 70 * 30 * 70


@pytest.mark.parametrize("args, expect", [
    (["bench", "--workloads", "matmull"], "did you mean 'matmul'"),
    (["bench", "--devices", "torch:cpux"], "did you mean 'torch:cpu'"),
    (["bench", "--devices", "torch:cuda:0"], "not available here"),
    (["bench", "--devices", "mxnet:cpu"], "unknown backend"),
    (["bench", "--sizes", "7x"], "malformed"),
    (["bench", "--dtypes", "fp64"], "unknown dtype"),
    (["bench", "--budget", "-1"], "--budget must be positive"),
    (["bench", "--no-such-flag"], "unrecognized arguments"),
    (["nonsense"], "invalid choice"),
])
def test_user_mistakes_are_one_line_and_exit_2(cli, args, expect):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], proc.stderr


def test_results_file_from_newer_chipfit_is_refused(tmp_path):
    from chipfit.errors import SchemaError

    path = tmp_path / "new.json"
    path.write_text(json.dumps({"format": "chipfit-run", "schema_version": 999, "run_id": "x"}))
    with pytest.raises(SchemaError, match="newer"):
        load_run(path)


def test_ctrl_c_keeps_what_was_measured(tmp_path):
    out_json = tmp_path / "partial.json"
    env = dict(os.environ, COLUMNS="200")
    # Each point times for its whole 0.25 s budget (a CI target it cannot reach): the run takes
    # 2.25 s and more, so Ctrl-C, sent within 0.1 s of the first point, lands mid-run even on a
    # core shared with this process (what runs before it is the only cost: keep it short).
    proc = subprocess.Popen(
        [sys.executable, "-m", "chipfit", "bench", "--workloads", "matmul",
         "--sizes", "64,96,128,192,256,384,512,768,1024", "--devices", "torch:cpu@1t",
         "--budget", "0.25", "--target", "0.0001", "--json", str(out_json)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out_json.exists() and load_run(out_json).measurements:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("no measurement was written")
    assert proc.poll() is None, f"the run ended before Ctrl-C:\n{proc.communicate()[1]}"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = load_run(out_json)
    assert run.interrupted and 1 <= len(run.measurements) < 9
    assert "interrupted" in stderr and "64" in stdout


def test_python_m_and_console_script_agree():
    script = Path(sys.executable).with_name("chipfit")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("chipfit ")
