"""A new user's first minutes, through the CLI on a pipe: readable 80-column tables, progress
without a terminal, README's own advise example, history, and a verdict first."""

from __future__ import annotations

import json
import re

import pytest

from chipfit.hardware.catalog import load_catalog
from chipfit.report.predict_view import _fig

NARROW = {"COLUMNS": "80"}


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def _fits(text: str, width: int = 80) -> None:
    too_long = [line for line in _lines(text) if len(line.rstrip()) > width]
    assert not too_long, too_long


def test_catalog_at_80_columns_keeps_every_key_and_number_whole(cli):
    text = cli("catalog", env=NARROW, check=True).stdout
    _fits(text)
    header = next(line for line in _lines(text) if " key " in line)
    assert "tf32" not in header and "--wide" in text  # fewer columns, and it says so
    rows = {line.split()[1]: line for line in _lines(text) if line.startswith("│")}
    for key, spec in load_catalog().items():
        row = rows.get(key)
        assert row is not None, f"{key} missing or split"
        for figure in ("bf16_tflops", "memory_gb", "memory_bw_gbs", "price_usd_hr"):
            assert re.search(rf"(?<![\w.]){re.escape(_fig(spec, figure))}(?![\w.])", row), (
                key, figure, row)


def test_catalog_wide_and_a_wide_terminal_show_every_column(cli):
    for env, args in ((NARROW, ("--wide",)), ({"COLUMNS": "250"}, ())):
        text = cli("catalog", *args, env=env, check=True).stdout
        header = next(line for line in _lines(text) if " key " in line)
        for col in ("name", "fp32", "tf32", "int8", "link GB/s", "TDP W", "USD/h"):
            assert col in header, (env, col)
        assert "not shown at" not in text


def test_devices_at_80_columns_keeps_isa_names_whole(cli):
    found = json.loads(cli("devices", "--json", check=True).stdout)
    text = cli("devices", env=NARROW, check=True).stdout
    _fits(text)
    words = set(re.findall(r"[\w.+-]+", text))
    for device in found["devices"]:
        assert device["ref"] in text
        for flag in device["isa"]:
            assert flag in words, flag


def test_workloads_lists_one_line_each(cli):
    text = cli("workloads", env=NARROW, check=True).stdout
    _fits(text)
    for name in ("matmul", "resnet50", "bert-base", "lstm"):
        assert sum(line.split()[:1] == [name] for line in _lines(text)) == 1, name
    assert "chipfit workloads" in cli("predict", "--help", check=True).stdout
    advise_help = cli("advise", "--help", env=NARROW, check=True).stdout
    for words in ("samples/s", "only the head trains", "bfloat16"):
        assert words in " ".join(advise_help.split()), words


@pytest.mark.whole_machine  # default devices: torch at all cores, and at one thread
def test_bench_prints_progress_lines_without_a_terminal_and_a_narrow_table(cli):
    proc = cli("bench", "-w", "matmul,elementwise", "-s", "64", "--quick", "--no-save",
               env=NARROW, check=True)
    assert re.search(r"^\[1/\d+\] matmul 64 torch:cpu ", proc.stderr, re.M)
    _fits(proc.stdout)
    assert "GFLOP/s" in proc.stdout and "torch:cpu@1t" in proc.stdout


def test_readme_advise_example_runs_and_the_verdict_comes_first(cli):
    proc = cli("advise", "resnet50", "--input", "1x3x224x224:float32", "--batches", "1",
               "--devices", "torch:cpu", "--hardware", "l4,t4,tpu-v5e", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "unknown workload" not in proc.stderr
    first = _lines(proc.stdout)[0]
    assert re.match(r"(Stay on this CPU|Use an? \S+)", first), first
    assert re.search(r"^\[1/1\] resnet50 1 torch:cpu ", proc.stderr, re.M)
    assert "counting resnet50's operators" in proc.stderr and "predicting 3 catalog" in proc.stderr
    _fits(proc.stdout)
    runs = json.loads(cli("runs", "--json", check=True).stdout)
    assert runs[0]["command"] == "advise" and runs[0]["workloads"] == ["resnet50"]
    assert runs[0]["state"] == "complete" and runs[0]["ok"] == 1
    shown = json.loads(cli("show", "latest", "--json", "-", check=True).stdout)
    assert "advice" in json.dumps(shown)  # the database run carries the advice too
    assert "advise" in cli("runs", env=NARROW, check=True).stdout


@pytest.mark.parametrize("shape", ["1x3x512x512", "1x224x224x3"])
def test_a_builtin_with_the_wrong_input_shape_is_one_line(cli, shape):
    proc = cli("advise", "resnet50", "--input", shape, "--devices", "torch:cpu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "takes BATCHx3x224x224" in proc.stderr


def test_report_puts_the_answer_first_and_keeps_the_newest_advice(cli, tmp_path):
    (tmp_path / "tinynet.py").write_text(
        "import torch\n\ndef make():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),"
        " torch.nn.Linear(32, 4))\n")
    # the file form (no PYTHONPATH to set, so the call runs in this process: a fresh
    # interpreter cost seconds); the module form is named the same way (by its module)
    cli("advise", f"{tmp_path / 'tinynet.py'}:make", "--input", "1x16", "--batches", "1,8",
        "--hardware", "t4", "--devices", "torch:cpu,torch:cpu@1t", "--quick", check=True)
    cli("bench", "-w", "matmul", "-s", "32", "-d", "torch:cpu", "--quick", check=True)
    page = tmp_path / "r.html"
    cli("report", "-o", str(page), check=True)
    html = page.read_text()
    # the summary (with the verdict) comes before everything else, and the nav links advice
    assert html.index('id="summary"') < html.index('id="advice"') < html.index('id="devices"')
    summary = html[html.index('id="summary"'):html.index('id="advice"')]
    assert "Stay on this CPU" in summary or "Use a" in summary
    assert 'href="#advice"' in html[:html.index('id="summary"')]
    assert "tinynet.make" in html and "<code>make</code>" not in html  # named by its module
    assert "vs batch" in html  # the batch axis is called batch, not size
    devices = html[html.index('id="devices"'):html.index("</table>", html.index('id="devices"'))]
    assert "torch:cpu@1t" in devices  # plotted, so listed


def test_catalog_show_at_80_columns_cites_sources_by_number(cli):
    text = cli("catalog", "show", "h100-sxm", env=NARROW, check=True).stdout
    _fits(text)
    assert re.search(r"bf16_tflops\s+│\s+989 TFLOP/s\s+│ sourced", text)
    assert "Sources:" in text and "[1] " in text and "Epoch AI ML Hardware dataset" in text
