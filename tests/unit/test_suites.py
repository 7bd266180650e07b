"""Suites and the seeds' claims as pure logic: planning over a described machine, checking
claims against given measurements, and the words a verdict is printed with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chipfit.analysis.suites import (
    FAILS,
    HOLDS,
    SUITES,
    UNTESTABLE,
    Claim,
    check_claim,
    check_claims,
    get_suite,
)
from chipfit.errors import UnknownNameError
from chipfit.pipelines.suites import plan_suite
from chipfit.report.claims import claims_table, measured_text, verdict_text
from chipfit.results import DeviceInfo, Discovery, Measurement, Run
from chipfit.spec import DeviceRef

SEEDS = get_suite("seeds")
CPU = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "a CPU", 16 * 2**30, cores=2, threads=2)
GPU = DeviceInfo("torch:cuda:0", "torch", "cuda", "gpu", "a GPU", 80 * 2**30)
JAX_CPU = DeviceInfo("jax:cpu:0", "jax", "cpu", "cpu", "a CPU")
TPU = DeviceInfo("jax:tpu:0", "jax", "tpu", "tpu", "TPU v5 lite")
CPU_ONLY = Discovery((CPU, JAX_CPU))
WITH_GPU = Discovery((CPU, GPU, JAX_CPU))


def _m(workload: str, size: str, device: str, seconds: float, mode: str = "inference",
       flops: float = 0.0, status: str = "ok", h2d: float = 0.0, d2h: float = 0.0) -> Measurement:
    times = (seconds,) * 5 if status == "ok" else ()
    return Measurement(workload, size, device, mode=mode, status=status, block_times_s=times,
                       flops=flops, transfer_h2d_s=h2d, transfer_d2h_s=d2h)


def _run(discovery: Discovery, *measurements: Measurement) -> Run:
    return Run("r1", "bench --suite seeds", "2025-01-01T00:00:00", discovery=discovery,
               measurements=measurements)


def _claim(key: str) -> Claim:
    return next(c for c in SEEDS.claims if c.key == key)


# ---- the suites as data ------------------------------------------------------------------

def test_every_claim_names_an_experiment_a_seed_file_and_a_known_test():
    seeds_dir = Path("/work/shared/seeds")
    for claim in SEEDS.claims:
        SEEDS.experiment(claim.experiment)
        assert re.fullmatch(r"seeds/00[0-3]_[0-9a-f]{16}\.txt", claim.source)
        if seeds_dir.exists():
            assert (seeds_dir / claim.source.split("/")[1]).exists()
        assert claim.test in ("latency", "speedup", "faster", "speedup_at_most",
                              "copies_dominate", "highest_rate")
        for other in claim.others:
            SEEDS.experiment(other)
    assert {c.key for c in SEEDS.claims} >= {"resnet50-cpu", "bert-gpu", "matmul-small",
                                              "train-lstm"}


def test_seed_experiments_are_the_seeds_sizes():
    sizes = {e.key: (e.workload, e.sizes, e.mode) for e in SEEDS.experiments}
    assert sizes["matmul-large"] == ("matmul", ("7000x3000@3000x7000",), "inference")
    assert sizes["matmul-small"] == ("matmul", ("70x30@30x70",), "inference")
    assert sizes["resnet50"] == ("resnet50", ("1",), "inference")
    assert sizes["bert"] == ("bert-base", ("1",), "inference")
    assert sizes["cnn-train"][0::2] == ("cnn", "train")
    assert sizes["lstm-train"][0::2] == ("lstm", "train")


def test_unknown_suite_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'seeds'"):
        get_suite("seed")
    assert set(SUITES) == {"seeds", "default"}


# ---- planning ----------------------------------------------------------------------------

def test_seeds_plan_on_a_cpu_only_machine_skips_the_tpu_experiment():
    jobs = plan_suite(SEEDS, CPU_ONLY, quick=True)
    assert {str(j.device) for j in jobs} == {"torch:cpu"}
    assert [(j.workload, j.size, j.mode) for j in jobs][:4] == [
        ("matmul", "7000x3000@3000x7000", "inference"), ("matmul", "70x30@30x70", "inference"),
        ("resnet50", "1", "inference"), ("bert-base", "1", "inference")]
    assert all(j.timing.budget_s < 1 for j in jobs)  # quick timing


def test_seeds_plan_measures_every_experiment_on_cpu_and_gpu_and_the_tpu_when_present():
    jobs = plan_suite(SEEDS, Discovery((CPU, GPU, JAX_CPU, TPU)))
    by_device: dict[str, set[str]] = {}
    for j in jobs:
        by_device.setdefault(str(j.device), set()).add(j.workload)
    assert by_device["torch:cuda:0"] == by_device["torch:cpu"] >= {"matmul", "resnet50"}
    assert by_device["jax:tpu:0"] == by_device["jax:cpu:0"] == {"cnn"}


def test_named_devices_override_the_suite_choice_but_keep_backends_apart():
    refs = [DeviceRef.parse("torch:cpu@1t"), DeviceRef.parse("jax:cpu:0")]
    jobs = plan_suite(SEEDS, Discovery((CPU, GPU, JAX_CPU, TPU)), refs)
    assert {(j.workload, str(j.device)) for j in jobs if j.workload == "cnn"} == {
        ("cnn", "torch:cpu@1t"), ("cnn", "jax:cpu:0")}  # cnn-train (torch), cnn-tpu (jax)
    assert {str(j.device) for j in jobs if j.workload != "cnn"} == {"torch:cpu@1t"}


def test_default_suite_runs_on_every_device_and_its_cpu_pinned_to_one_thread():
    jobs = plan_suite(get_suite("default"), CPU_ONLY, quick=True)
    devices = {str(j.device) for j in jobs}
    assert devices == {"torch:cpu", "torch:cpu@1t", "jax:cpu:0"}
    models = {j.workload for j in jobs if str(j.device) == "jax:cpu:0"}
    assert "resnet50" not in models and "matmul" in models  # no JAX builder for transformers
    assert {j.mode for j in jobs} == {"inference", "train", "finetune"}


# ---- checking claims -----------------------------------------------------------------------

def test_a_cpu_latency_claim_holds_within_its_tolerance_and_says_how_far_off_otherwise():
    claim = _claim("resnet50-cpu")  # ~50 ms, within 1.5x
    ok = check_claim(claim, _run(CPU_ONLY, _m("resnet50", "1", "torch:cpu", 0.060)), SEEDS)
    assert ok.status == HOLDS and verdict_text(ok) == "holds"
    slow = check_claim(claim, _run(CPU_ONLY, _m("resnet50", "1", "torch:cpu", 0.180)), SEEDS)
    assert slow.status == FAILS and slow.reason == "slower"
    assert verdict_text(slow) == "does not hold: CPU 3.6x slower than claimed"
    fast = check_claim(claim, _run(CPU_ONLY, _m("resnet50", "1", "torch:cpu", 0.010)), SEEDS)
    assert verdict_text(fast) == "does not hold: CPU 5.0x faster than claimed"
    assert measured_text(slow) == "180 ms on the CPU\n(torch:cpu)"


def test_gpu_claims_are_not_testable_without_a_gpu():
    run = _run(CPU_ONLY, _m("resnet50", "1", "torch:cpu", 0.05))
    result = check_claim(_claim("resnet50-gpu"), run, SEEDS)
    assert result.status == UNTESTABLE and result.reason == "no_gpu"
    assert verdict_text(result) == "not testable here: no GPU"
    assert measured_text(result) == "-"
    tpu = check_claim(_claim("tpu-latency"), run, SEEDS)
    assert verdict_text(tpu) == "not testable here: no TPU"


def test_the_pinned_cpu_is_not_mistaken_for_the_cpu():
    run = _run(CPU_ONLY, _m("resnet50", "1", "torch:cpu@1t", 0.2),
               _m("resnet50", "1", "torch:cpu", 0.05))
    result = check_claim(_claim("resnet50-cpu"), run, SEEDS)
    assert result.status == HOLDS and result.devices == ("torch:cpu",)


def test_a_failed_or_missing_measurement_makes_a_claim_untestable():
    oom = _run(WITH_GPU, _m("bert-base", "1", "torch:cpu", 0.1),
               _m("bert-base", "1", "torch:cuda:0", 0, status="oom"))
    result = check_claim(_claim("bert-speedup"), oom, SEEDS)
    assert verdict_text(result) == "not testable here: the GPU run failed (oom)"
    missing = Claim("x", "seeds/x", "q", "latency", "lstm-train", value=1.0)
    from chipfit.analysis.suites import Experiment, Suite

    suite = Suite("t", "", (Experiment("lstm-train", "no-such-net", ("4",), mode="train"),),
                  (missing,))
    result = check_claims(_run(CPU_ONLY), suite, installed={"mlp", "bert-base"})[0]
    assert verdict_text(result) == "not testable here: workload no-such-net is not installed"
    nothing = check_claim(_claim("bert-cpu"), _run(CPU_ONLY), SEEDS)
    assert verdict_text(nothing) == "not testable here: nothing measured on a CPU"


def test_speedup_claims_compare_the_two_devices():
    run = _run(WITH_GPU, _m("resnet50", "1", "torch:cpu", 0.050),
               _m("resnet50", "1", "torch:cuda:0", 0.008))
    result = check_claim(_claim("resnet50-speedup"), run, SEEDS)  # ~5x within 1.5x
    assert result.status == HOLDS and result.measured == pytest.approx(6.25)
    assert measured_text(result).startswith("GPU 6.25x faster than the CPU")
    far = _run(WITH_GPU, _m("resnet50", "1", "torch:cpu", 0.050),
               _m("resnet50", "1", "torch:cuda:0", 0.025))
    assert verdict_text(check_claim(_claim("resnet50-speedup"), far, SEEDS)) == (
        "does not hold: GPU 2.0x faster than the CPU, not ~5x")


def test_faster_claims_hold_in_one_direction_only():
    small = _claim("matmul-small")  # the CPU beats the GPU on tiny matrices
    run = _run(WITH_GPU, _m("matmul", "70x30@30x70", "torch:cpu", 5e-6),
               _m("matmul", "70x30@30x70", "torch:cuda:0", 2e-5))
    assert check_claim(small, run, SEEDS).status == HOLDS
    flipped = _run(WITH_GPU, _m("matmul", "70x30@30x70", "torch:cpu", 4e-5),
                   _m("matmul", "70x30@30x70", "torch:cuda:0", 1e-5))
    result = check_claim(small, flipped, SEEDS)
    assert verdict_text(result) == "does not hold: the CPU is 4.0x slower than the GPU"
    assert measured_text(result).startswith("CPU 4.00x slower than the GPU")


def test_up_to_10x_training_needs_a_speedup_between_1_and_10():
    claim = _claim("train-cnn")

    def verdict(cpu_s: float, gpu_s: float) -> str:
        run = _run(WITH_GPU, _m("cnn", "64", "torch:cpu", cpu_s, mode="train"),
                   _m("cnn", "64", "torch:cuda:0", gpu_s, mode="train"))
        return verdict_text(check_claim(claim, run, SEEDS))

    assert verdict(0.08, 0.01) == "holds"
    assert verdict(0.30, 0.01) == "does not hold: GPU 30.0x faster, beyond the claimed up to 10x"
    assert verdict(0.01, 0.02) == "does not hold: the GPU is 2.0x slower than the CPU"


def test_copies_dominate_compares_transfer_and_compute_time_on_the_gpu():
    claim = _claim("small-copies")

    def result(h2d: float, d2h: float):
        run = _run(WITH_GPU, _m("matmul", "70x30@30x70", "torch:cpu", 5e-6),
                   _m("matmul", "70x30@30x70", "torch:cuda:0", 1e-5, h2d=h2d, d2h=d2h))
        return check_claim(claim, run, SEEDS)

    assert result(2e-5, 1e-5).status == HOLDS
    small = result(2e-6, 1e-6)
    assert verdict_text(small) == "does not hold: copies take 3.3x less time than the computation"


def test_rnn_utilisation_claim_compares_achieved_flops_on_the_cpu():
    claim = _claim("cpu-rnn")
    base = [_m("cnn", "64", "torch:cpu", 1.0, mode="train", flops=20e9),
            _m("resnet50", "1", "torch:cpu", 1.0, flops=8e9),
            _m("bert-base", "1", "torch:cpu", 1.0, flops=22e9)]
    high = _run(CPU_ONLY, *base, _m("lstm", "16", "torch:cpu", 1.0, mode="train", flops=30e9))
    result = check_claim(claim, high, SEEDS)
    assert result.status == HOLDS and measured_text(result).startswith("lstm 30 GFLOP/s")
    low = _run(CPU_ONLY, *base, _m("lstm", "16", "torch:cpu", 1.0, mode="train", flops=11e9))
    result = check_claim(claim, low, SEEDS)
    assert verdict_text(result) == (
        "does not hold: bert-base reaches 2.0x the lstm's FLOP/s on the CPU")
    alone = _run(CPU_ONLY, _m("lstm", "16", "torch:cpu", 1.0, mode="train", flops=1e9))
    assert verdict_text(check_claim(claim, alone, SEEDS)) == (
        "not testable here: no FLOP/s to compare")


def test_check_claims_covers_every_claim_and_the_table_renders_them():
    from rich.console import Console

    run = _run(CPU_ONLY, _m("resnet50", "1", "torch:cpu", 0.07), _m("bert-base", "1",
                                                                     "torch:cpu", 0.3))
    results = check_claims(run)
    assert [r.claim.key for r in results] == [c.key for c in SEEDS.claims]
    console = Console(width=200, record=True)
    console.print(claims_table(results, run.run_id))
    text = console.export_text()
    assert "ResNet-50 inference on a CPU: ~50 ms" in text and "seed 001" in text
    assert "does not hold: CPU 3.0x slower than claimed" in text
    assert "not testable here: no GPU" in text and "holds" in text


def test_a_claim_checked_on_contended_points_says_so():
    from dataclasses import replace

    claim = _claim("resnet50-cpu")
    quiet = _m("resnet50", "1", "torch:cpu", 0.060)
    busy = check_claim(claim, _run(CPU_ONLY, replace(quiet, contended=True)), SEEDS)
    assert busy.status == HOLDS
    assert dict(busy.detail)["source"] == "measured, from contended points"
    assert measured_text(busy).endswith("(torch:cpu)\nmeasured, from contended points")
    calm = check_claim(claim, _run(CPU_ONLY, replace(quiet, contended=False)), SEEDS)
    assert "source" not in dict(calm.detail) and measured_text(calm) == "60 ms on the CPU\n(torch:cpu)"
