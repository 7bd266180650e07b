"""Every command's screen at 80 and 120 columns (a pipe, or COLUMNS=N): no line over the
width, no clipped key, number or device, no token split across lines (tests/_screens.py).

The stored runs are built once for the module, without measuring: two bench runs with the
long keys and device names a fresh clone shows (``70x30@30x70``, ``tensorflow:cpu``,
``torch:cpu@1t``, a 1,940 s point) and an advise run with its stored advice. The commands run
in this process (``cli``); only ``bench`` measures, once, one tiny point.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from tests._screens import assert_readable, paragraphs, problems

from chipfit.results import DeviceInfo, Discovery, GuardLimit, Measurement, Problem, Run
from chipfit.store import open_store

WIDTHS = (80, 120)
BENCH_A = "20261201T000000Z-aaaaaa"
BENCH_B = "20261202T000000Z-bbbbbb"
ADVISE = "20261203T000000Z-cccccc"
SWEEP = "20261204T000000Z-dddddd"
SUITE = "20261205T000000Z-eeeeee"
DEVICES = ("torch:cpu", "torch:cpu@1t", "jax:cpu:0", "tensorflow:cpu")
POINTS = (("matmul", "70x30@30x70", 6.4e-6, 2 * 70 * 30 * 70, 0.0),
          ("matmul", "7000x3000@3000x7000", 1.59, 2 * 7000 * 3000 * 7000, 0.0),
          ("elementwise", "16777216", 0.0818, 2 * 16777216, 3 * 4 * 16777216),
          ("lstm", "32", 1940.0, 5e12, 0.0))
TIMING = ("budget_s=0.8,max_samples=500,min_block_s=0.004,min_samples=5,noisy_rel_iqr=0.1,"
          "target_rel_ci=0.05,warmup_min_calls=1,warmup_s=0.02")


def _point(workload: str, size: str, device: str, median: float, flops: float,
           moved: float, scale: float) -> Measurement:
    times = tuple(median * scale * f for f in (1.0, 1.02, 0.98, 1.01, 0.99))
    busy = device == "jax:cpu:0" and workload == "elementwise"
    return Measurement(workload, size, device, block_times_s=times, number_per_block=1,
                       first_call_s=median * 2, stop_reason="ci_target", flops=flops,
                       bytes_moved=moved, contended=busy,
                       contention=(("cores", 1.0), ("cpus", 2.0), ("load1", 3.2)) if busy
                       else (), contention_note="load 3.2 on 2 CPUs" if busy else "")


def _run(run_id: str, command: str, measurements: tuple[Measurement, ...],
         settings: dict[str, str]) -> Run:
    cpu = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "AMD EPYC 9R14 96-Core Processor",
                     memory_bytes=2**34, cores=2, threads=2, isa=("avx512f", "avx512_vnni"),
                     versions=(("torch", "2.13.0+cpu"),))
    return Run(run_id=run_id, command=command, started_at=f"{run_id[:4]}-12-0{run_id[7]}T00:00:00+00:00",
               finished_at=f"{run_id[:4]}-12-0{run_id[7]}T00:01:00+00:00",
               machine=(("fingerprint", "f" * 16), ("hostname", "box"), ("cpu", "AMD EPYC"),
                        ("os", "Linux-6.1-x86_64-with-glibc2.36")),
               discovery=Discovery((cpu,), (Problem("torch:cuda", "this torch build has no "
                                                    "CUDA or ROCm support (a CPU-only wheel)"),)),
               measurements=measurements, chipfit_version="0.1.0",
               settings=tuple(sorted(settings.items())))


def _advice() -> dict:
    """A stored advice record as ``chipfit advise`` writes it (``advice_json``)."""
    from chipfit.analysis.evidence import Option, Reason, Recommendation
    from chipfit.analysis.verdict import Verdict
    from chipfit.report.advise_view import advice_json

    cpu = Option("torch:cpu@1t", "cpu", "AMD EPYC", True, 1, 2.0e-5, "measured",
                 price_usd_hr=0.08)
    tf = Option("tensorflow:cpu", "cpu", "AMD EPYC", True, 1, 2.3e-5, "measured")
    t4 = Option("t4", "gpu", "NVIDIA T4", False, 1, 1.25e-4, "predicted", bound="launch",
                price_usd_hr=0.53, band=0.3)
    reason = Reason("launch-bound", "cpu", (("launch share", "0.9"),), "predicted",
                    "seeds/003 (GPU importance in neural-network training): with little "
                    "data, the copy to and from the GPU outweighs compute")
    rec = Recommendation(cpu, "latency", (cpu, tf, t4), (reason,))
    verdict = Verdict("stay", "latency", cpu, cpu, t4, 2.0e-5 / 1.25e-4, 1.3, False, (reason,))
    return advice_json(rec, None, verdict)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("screens") / "chipfit.sqlite3"
    settings = {"workloads": "matmul,elementwise,lstm", "devices": ",".join(DEVICES),
                "timing": TIMING}
    with open_store(path) as store:
        for run_id, scale in ((BENCH_A, 1.0), (BENCH_B, 1.1)):
            points = tuple(_point(w, s, d, t, f, b, scale) for w, s, t, f, b in POINTS
                           for d in DEVICES)
            run = _run(run_id, "bench", points, settings)
            limits = tuple(GuardLimit("matmul", d, "float32", "inference", "43539")
                           for d in DEVICES)
            store.save_run(replace(run, guard_limits=limits))
        ladder = tuple(Measurement("matmul", str(n), d, block_times_s=tuple(
            t * (1 + 0.01 * i) for i in range(6)), flops=2.0 * n**3)
            for n, t1 in ((64, 1e-5), (256, 4e-4), (1024, 2e-2))
            for d, t in (("torch:cpu", t1), ("torch:cpu@1t", t1 * (2.0 if n > 100 else 0.5))))
        store.save_run(_run(SWEEP, "sweep", ladder, {"workload": "matmul", "axis": "n"}))
        store.save_run(_run(SUITE, "bench", ladder, {"suite": "seeds", "devices": "suite"}))
        store.save_run(_run(ADVISE, "advise", (
            _point("mymodel.make", "1", "torch:cpu@1t", 2e-5, 1e3, 0.0, 1.0),),
            {"workloads": "mymodel.make", "devices": "torch:cpu@1t",
             "advice": json.dumps(_advice())}))
    return path


def _screen(cli, width: int, *args: str) -> str:
    proc = cli(*args, env={"COLUMNS": str(width)})
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout


KEYS = ("70x30@30x70", "7000x3000@3000x7000", "16777216", "elementwise", "matmul",
        *DEVICES)


@pytest.mark.parametrize("width", WIDTHS)
def test_stored_runs_read_whole_at_80_and_120_columns(cli, db, width):
    run = ("--db", str(db))
    assert_readable(_screen(cli, width, "runs", *run), width, (BENCH_A, ADVISE, *DEVICES))
    assert_readable(_screen(cli, width, "runs", "--wide", *run), width, (BENCH_A, *DEVICES))
    shown = _screen(cli, width, "show", BENCH_A, *run)
    # the timing setting wraps between its entries, never inside a key or a number
    assert_readable(shown, width, (*KEYS, "noisy_rel_iqr=0.1", "warmup_s=0.02", "1,940 s",
                                   "2026-12-01T00:00:00+00:00", "43539 (predicted)"))
    assert "e+0" not in shown and "1.94e" not in shown
    assert_readable(_screen(cli, width, "show", BENCH_A, "--wide", *run), width,
                    (*KEYS, "2026-12-01T00:00:00+00:00", "43539 (predicted)"))
    assert_readable(_screen(cli, width, "compare", BENCH_A, BENCH_B, *run), width, KEYS)
    swept = _screen(cli, width, "show", SWEEP, *run)
    assert_readable(swept, width, ("torch:cpu@1t",))
    assert "crossover" in swept  # a sweep run shows its crossovers again, not only points
    suite = _screen(cli, width, "show", SUITE, *run)
    assert_readable(suite, width, (SUITE,))
    assert "claims" in suite  # a suite run shows the seeds' claims checked again


@pytest.mark.parametrize("width", WIDTHS)
def test_show_of_an_advise_run_is_a_summary_not_its_json(cli, db, width):
    text = _screen(cli, width, "show", ADVISE, "--db", str(db))
    assert_readable(text, width, ("Stay on this CPU", "torch:cpu@1t", "tensorflow:cpu",
                                  "mymodel.make", "(seeds/003)"))
    assert '{"verdict"' not in text and '"ranked"' not in text
    assert len(text.splitlines()) < 60
    assert "the articles' rule:" in " ".join(text.split())
    raw = json.loads(cli("show", ADVISE, "--db", str(db), "--json", "-", check=True).stdout)
    assert "advice" in json.dumps(raw)  # the raw record stays one flag away


@pytest.mark.parametrize("width", WIDTHS)
def test_catalog_workloads_llm_and_help_fit(cli, width):
    assert_readable(_screen(cli, width, "workloads"), width, ("transformer-block",
                                                               "t5-small-generate"))
    assert_readable(_screen(cli, width, "catalog"), width, ("threadripper-5995wx", "h100-sxm"))
    assert_readable(_screen(cli, width, "catalog", "show", "h100-sxm"), width, ("bf16_tflops",))
    assert_readable(_screen(cli, width, "llm", "llama-3.1-8b", "--hardware", "h100-sxm,l4"),
                    width, ("h100-sxm",))
    assert_readable(_screen(cli, width, "validate", "--bands"), width, ("gpu-in-data",))
    from chipfit.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert len(commands) >= 16  # devices ... compare: every command there is
    for command in commands:
        assert_readable(_screen(cli, width, command, "--help"), width, ("--help",))


def test_a_real_bench_and_a_prediction_at_80_columns(cli):
    proc = cli("bench", "-w", "matmul", "-s", "70x30@30x70", "-d", "torch:cpu", "--quick",
               "--no-save", env={"COLUMNS": "80"}, check=True)
    assert_readable(proc.stdout, 80, ("70x30@30x70", "torch:cpu"))
    # every stderr line (progress, warnings) fits too; a busy warning is one paragraph
    assert_readable("\n".join(line for line in proc.stderr.splitlines()
                              if not line.startswith("[")), 80)
    assert len(paragraphs(proc.stderr, "warning: machine busy")) <= 1
    # a prediction beside it (80 columns only: tracing the model is the costly part)
    assert_readable(_screen(cli, 80, "predict", "mlp", "--hardware", "h100-sxm,t4"), 80,
                    ("h100-sxm", "t4"))


def test_the_checker_catches_what_the_issue_saw():
    assert problems("│ elementwi… │", 80) and problems("84.4 GFLOP…", 80)
    assert problems("torch:cp…", 80) and problems("×0.…", 80)
    assert problems("x" * 81, 80) and not problems("x" * 80, 80)
    assert problems("noi\nsy_rel_iqr", 80, ("noisy_rel_iqr",))
    assert not problems("square n or Mx…", 80, prose=True)
    assert problems("size 70x30@30x…", 80, prose=True)
    assert paragraphs("warning: a\n  b\n[1/2] x\n  y") == ["warning: a b"]
