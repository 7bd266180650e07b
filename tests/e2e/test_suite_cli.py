"""``chipfit bench --suite``: the seeds' experiments and claims, as a user runs them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipfit.analysis import suites
from chipfit.store.runs import load_run

#: The seeds suite's three heaviest experiments, shrunk for this test: a 7000x3000 @ 3000x7000
#: product (294 GFLOP a call), an LSTM training step at batch 16 (seconds a step on two
#: cores) and the CNN's training step at batch 64 were most of the suite's time. Same
#: workloads, modes and claims, measured the same way; the real sizes are what
#: tests/unit/test_suites.py checks the plan for.
SHRUNK = {"matmul-large": "1400x600@600x1400", "lstm-train": "2", "cnn-train": "8"}


@pytest.fixture
def small_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = suites.SUITES["seeds"]
    experiments = tuple(replace(e, sizes=(SHRUNK[e.key],)) if e.key in SHRUNK else e
                        for e in seeds.experiments)
    monkeypatch.setitem(suites.SUITES, "seeds", replace(seeds, experiments=experiments))


@pytest.mark.slow
def test_seeds_suite_measures_the_seeds_experiments_and_checks_each_claim(cli, tmp_path,
                                                                          small_seeds):
    out = tmp_path / "seeds.json"
    proc = cli("bench", "--suite", "seeds", "--quick", "--devices", "torch:cpu",
               "--json", str(out), check=True, timeout=900)
    run = load_run(out)
    assert dict(run.settings)["suite"] == "seeds" and run.command == "bench --suite seeds"
    done = {(m.workload, m.size, m.mode): m for m in run.measurements}
    assert set(done) == {("matmul", SHRUNK["matmul-large"], "inference"),
                         ("matmul", "70x30@30x70", "inference"),
                         ("resnet50", "1", "inference"), ("bert-base", "1", "inference"),
                         ("cnn", SHRUNK["cnn-train"], "train"),
                         ("lstm", SHRUNK["lstm-train"], "train")}
    assert all(m.ok for m in run.measurements), [m.note for m in run.measurements]
    assert done["resnet50", "1", "inference"].flops == pytest.approx(8.18e9, rel=0.01)
    text = proc.stdout
    assert "The seeds' claims on this machine" in text
    assert "ResNet-50 inference on a CPU: ~50 ms" in text and "seed 001" in text
    line = next(ln for ln in text.splitlines() if "ResNet-50 inference on a CPU" in ln)
    assert "holds" in line or "does not hold: CPU" in line  # measured, so a verdict
    # --devices torch:cpu: no GPU measured, whether or not the machine has one
    assert "not testable here: no GPU" in text or "nothing measured on a GPU" in text
    assert "not testable here: no TPU" in text or "TPU: high latency" not in text


def test_unknown_suite_is_a_one_line_usage_error(cli):
    proc = cli("bench", "--suite", "seed")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "chipfit: error: unknown suite 'seed'; did you mean 'seeds'? (known: default, seeds)"]


def test_suite_refuses_flags_that_it_fixes_itself(cli):
    proc = cli("bench", "--suite", "seeds", "--sizes", "1", "--no-save")
    assert proc.returncode == 2 and "--suite fixes its own workloads" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
