"""``chipfit sweep`` as a user runs it: real torch (and JAX) on the real CPU.

Timings on a shared CPU say nothing certain about which side wins, so these tests check
that every point was measured, that a crossover statement is printed for every pair, and
that it is exactly what the analysis of the saved raw samples says - never who is faster.
"""

from __future__ import annotations

import pytest

from chipfit.pipelines.sweep import analyze_run
from chipfit.report.crossover_view import crossover_sentence
from chipfit.store.runs import load_run

# Timing per point: 50 ms at most. What these tests check (every point measured, a statement
# for every pair, each the analysis of the saved samples) holds at any budget; a longer one
# only makes the whole-machine sweep hold both cores longer.
FAST = ["--budget", "0.05", "--target", "0.05"]
KINDS_IN_WORDS = ("one crossover at", "no crossover from", "crossovers - the faster one",
                  "not compared")


def flat(text: str) -> str:
    return " ".join(text.split())


def statements_match_the_saved_samples(stdout: str, path, axis: str) -> list:
    """Every crossover printed is the analysis of the raw samples in the saved JSON."""
    result = analyze_run(load_run(path))
    printed = flat(stdout)
    for crossover in result.analysis.crossovers:
        assert flat(crossover_sentence(crossover, axis)) in printed
    return list(result.analysis.crossovers)


@pytest.mark.whole_machine  # two threads need two cores
def test_matmul_sweep_one_thread_vs_two_threads(cli, tmp_path):
    out, html = tmp_path / "sweep.json", tmp_path / "sweep.html"
    proc = cli("sweep", "matmul", "--axis", "n", "--from", "16", "--to", "256",
               "--devices", "torch:cpu@1t,torch:cpu@2t", *FAST, "--json", str(out),
               "--html", str(html), check=True)
    run = load_run(out)
    settings = dict(run.settings)
    assert run.command == "sweep" and settings["sizes"] == "16,32,64,128,256"
    assert settings["axis"] == "n" and settings["devices"] == "torch:cpu@1t,torch:cpu@2t"
    points = {(m.size, m.device) for m in run.measurements if m.ok}
    ladder = {(s, d) for s in ("16", "32", "64", "128", "256")
              for d in ("torch:cpu@1t", "torch:cpu@2t")}
    assert ladder <= points
    (crossover,) = statements_match_the_saved_samples(proc.stdout, out, "n")
    # sizes off the ladder bisect a crossing's gap (at most 3 per gap), measured on both devices
    # (the crossing may then move, or dissolve into ties: the noise decides, not this test)
    extra = {int(s) for s, _ in points - ladder}
    assert {(str(x), d) for x in extra for d in ("torch:cpu@1t", "torch:cpu@2t")} <= points
    assert all(16 < x < 256 and x not in (32, 64, 128) for x in extra) and len(extra) <= 12
    assert all(not c.gap or c.interval == (c.lower_x, c.upper_x) for c in crossover.crossings)
    assert crossover.kind in ("none", "one", "several") and crossover.view == "resident"
    words = flat(proc.stdout)
    if not any(m.contended for m in run.measurements):  # else the findings say they are busy
        assert "torch:cpu@1t vs torch:cpu@2t" in words
        assert "no copies: resident = end to end" in words  # CPU: the end-to-end view is the same
    assert any(k in words for k in KINDS_IN_WORDS)
    assert "largest that fits" in words or "fits every size tried" in words
    assert "highest throughput at n =" in words and "memory guard admits up to n =" in words
    page = html.read_text(encoding="utf-8")
    assert run.run_id in page and page.count("<svg") >= 3


def test_dtype_and_framework_pairs_use_the_same_path(cli, tmp_path):
    out = tmp_path / "sweep.json"
    proc = cli("sweep", "matmul", "--from", "16", "--to", "64", "--devices",
               "torch:cpu@1t,jax:cpu:0", "--dtypes", "float32,bf16", *FAST, "--json", str(out),
               check=True)
    crossovers = statements_match_the_saved_samples(proc.stdout, out, "n")
    # which side of a pair is "a" is not the point here: the four pairs are
    pairs = {frozenset({(c.a.device, c.a.dtype), (c.b.device, c.b.dtype)}) for c in crossovers}
    assert pairs == {frozenset({("torch:cpu@1t", "float32"), ("jax:cpu:0", "float32")}),
                     frozenset({("torch:cpu@1t", "bfloat16"), ("jax:cpu:0", "bfloat16")}),
                     frozenset({("torch:cpu@1t", "float32"), ("torch:cpu@1t", "bfloat16")}),
                     frozenset({("jax:cpu:0", "float32"), ("jax:cpu:0", "bfloat16")})}
    words = flat(proc.stdout)
    assert "float32 on torch:cpu@1t vs bfloat16 on torch:cpu@1t" in words
    assert "torch:cpu@1t vs jax:cpu:0" in words


def test_one_device_says_there_is_nothing_to_compare(cli, tmp_path):
    proc = cli("sweep", "elementwise", "--from", "1Ki", "--to", "4Ki", "--devices",
               "torch:cpu@1t", *FAST, "--no-save", check=True)
    assert "nothing to compare" in proc.stdout
    assert "elements = 4096" in flat(proc.stdout)


@pytest.mark.parametrize("args, expect", [
    (["sweep", "matmul", "--axis", "batch"], "sweeps its n axis, not batch"),
    (["sweep", "matmull"], "did you mean 'matmul'"),
    (["sweep", "matmul", "--from", "512", "--to", "16"], "need 0 < from <= to"),
    (["sweep", "matmul", "--from", "7x"], "malformed --from"),
    (["sweep", "matmul", "--points", "0"], "at least one point"),
    (["sweep", "matmul", "--level", "1.5"], "confidence level"),
    (["sweep", "matmul", "--dtypes", "fp64"], "unknown dtype"),
    (["sweep", "matmul", "--mode", "train"], "has no mode 'train'"),
    (["sweep", "matmul", "--devices", "torch:cuda:0"], "not available here"),
    # (a device named: without one the sweep discovers every framework's devices, TensorFlow's
    # runtime among them, for seconds, before it looks for a run to resume)
    (["sweep", "matmul", "--devices", "torch:cpu@1t", "--resume"], "no unfinished sweep run"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, expect):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
