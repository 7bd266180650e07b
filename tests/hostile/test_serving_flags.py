"""Hostile serving flags of ``chipfit llm`` (--rate, --concurrency, --slo-*, --tp ...): each is
refused in one line with exit code 2, nothing simulated; markup in names stays text."""

from __future__ import annotations

import json

import pytest
from tests.conftest import run_cli
from tests.hostile._support import assert_refused

BASE = ["llm", "llama-3.2-1b", "-H", "l4", "--requests", "20"]


@pytest.mark.parametrize("args,says", [
    (["--rate", "-1"], "--rate"), (["--rate", "0"], "--rate"), (["--rate", "1e300"], "--rate"),
    (["--rate", "nan"], "--rate"), (["--rate", "inf"], "--rate"),
    (["--concurrency", "0"], "--concurrency"), (["--concurrency", "-5"], "--concurrency"),
    (["--concurrency", str(10**9)], "--concurrency"),
    (["--rate", "1", "--concurrency", "2"], "not both"),
    (["--concurrency", "2", "--slo-ttft", "0"], "--slo-ttft"),
    (["--concurrency", "2", "--slo-tpot", "-0.1"], "--slo-tpot"),
    (["--concurrency", "2", "--per-user-tokens-per-s", "0"], "--per-user-tokens-per-s"),
    (["--concurrency", "2", "--slo-tpot", "0.1", "--per-user-tokens-per-s", "5"], "not both"),
    (["--concurrency", "2", "--slo-ttft", "1", "--slo-percentile", "0"], "percentile"),
    (["--concurrency", "2", "--tp", "3"], "--tp"), (["--concurrency", "2", "--tp", "0"], "--tp"),
    (["--concurrency", "2", "--replicas", "0"], "--replicas"),
    (["--concurrency", "2", "--devices", str(10**9)], "--devices"),
    (["--concurrency", "2", "--replicas", "2", "--devices", "4"], "not both"),
    (["--concurrency", "2", "--stack", "eager"], "eager"),
    (["--concurrency", "2", "--requests", "0"], "--requests"),
    (["--concurrency", "2", "--max-seqs", "0"], "--max-seqs"),
    (["--concurrency", "2", "--rate", "abc"], "invalid"),
])
def test_hostile_serving_flags_are_one_line_refusals(args, says):
    assert_refused(run_cli(*BASE, *args), says=says)


def test_markup_in_a_hardware_name_is_text_not_style():
    proc = run_cli("llm", "llama-3.2-1b", "-H", "[bold red]l4[/]", "--concurrency", "2")
    assert_refused(proc)
    assert "[bold red]l4[/]" in proc.stderr


def test_a_serving_run_with_a_catalog_gap_answers_every_row():
    data = json.loads(run_cli(*BASE, "-H", "l4,epyc-genoa-2vcpu,local", "--concurrency", "2",
                              "--json", check=True).stdout)
    rows = {r["hardware"]: r for r in data["rows"]}
    assert rows["l4"]["plan"]["meets_slo"] in (True, False)
    assert rows["epyc-genoa-2vcpu"]["plan"] is None and rows["epyc-genoa-2vcpu"]["why"]
    assert rows["local"]["plan"] is None and rows["local"]["why"]
