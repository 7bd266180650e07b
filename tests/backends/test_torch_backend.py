"""The torch backend against real torch on the real CPU (no mocked backend)."""

from __future__ import annotations

import os
import statistics
import time

import psutil
import pytest

import chipfit
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.store.runs import load_run, save_run
from chipfit.workloads import register
from chipfit.workloads.base import Prepared, Workload

torch = pytest.importorskip("torch")

FAST = TimingConfig(warmup_s=0.01, min_block_s=0.002, budget_s=0.5, target_rel_ci=0.05)


def test_discovery_finds_torch_cpu_with_the_machine_core_count():
    found = chipfit.discover(["torch"])
    cpu = found.get("torch:cpu")
    assert cpu is not None and cpu.kind == "cpu"
    assert cpu.cores == psutil.cpu_count(logical=False)
    assert cpu.threads == os.cpu_count()
    assert ("torch", torch.__version__) in cpu.versions
    assert cpu.memory_bytes and cpu.memory_bytes > 2**30


def test_missing_accelerators_keep_their_reason():
    found = chipfit.discover(["torch"])
    if not torch.cuda.is_available():
        reasons = {p.scope: p.reason for p in found.problems}
        assert "torch:cuda" in reasons and reasons["torch:cuda"]


def _hand_timed_matmul(n: int, repeats: int = 30) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(3):
        a @ b
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        samples.append((time.perf_counter() - start) / 5)
    return statistics.median(samples)


def test_measurement_agrees_with_a_hand_rolled_timing():
    m = chipfit.measure("matmul", 256, "torch:cpu", timing=FAST)
    manual = _hand_timed_matmul(256)
    again = chipfit.measure("matmul", 256, "torch:cpu", timing=FAST)
    # the host is noisy: compare against the hand timing taken between two chipfit runs
    assert 0.5 < min(m.median_s, again.median_s) / manual < 2.0
    assert m.ok and m.flops == 2 * 256**3
    assert m.gflops == pytest.approx(m.flops / m.median_s / 1e9)


def test_cpu_copies_are_zero_and_reported_as_such():
    m = chipfit.measure("elementwise", 4096, "torch:cpu", timing=FAST)
    assert m.transfer_h2d_s == 0.0 and m.transfer_d2h_s == 0.0
    assert m.end_to_end_s == m.median_s
    assert m.meta["copies"] == "none: host memory"


def test_peak_memory_is_measured_on_cpu():
    m = chipfit.measure("elementwise", 2**22, "torch:cpu", timing=FAST)
    assert m.memory_method == "rss-growth"
    assert m.peak_memory_bytes is not None and m.peak_memory_bytes >= 0


def test_thread_pinned_cpu_restores_threads():
    before = torch.get_num_threads()
    m = chipfit.measure("matmul", 128, "torch:cpu@1t", timing=FAST)
    assert m.ok and m.device == "torch:cpu@1t"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_dtypes_run_or_are_recorded_unsupported(dtype):
    m = chipfit.measure("matmul", 64, "torch:cpu", dtype=dtype, timing=FAST)
    assert m.status in ("ok", "unsupported")
    assert m.dtype == dtype


class _ComplexHalfMatmul(Workload):
    """A real torch kernel that the CPU build does not implement."""

    name = "test-complexhalf-matmul"
    default_sizes = ("8",)

    def cost(self, size, dtype, mode="inference"):
        return chipfit.Cost()

    def _build_torch(self, size, dtype, mode, session):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = torch.rand(int(size), int(size)).to(torch.complex32)
        return Prepared(torch.matmul, (x, x))


def test_an_unimplemented_kernel_is_recorded_unsupported_not_a_crash():
    register(_ComplexHalfMatmul())
    from chipfit.execute.job import run_job

    m = run_job(Job("test-complexhalf-matmul", "8", DeviceRef.parse("torch:cpu"), timing=FAST))
    assert m.status == "unsupported"
    assert "not implemented" in m.note


def test_bench_runs_cpu_at_one_and_all_threads_and_json_round_trips(tmp_path):
    run = chipfit.bench(["matmul"], ["torch:cpu", "torch:cpu@1t"], sizes=["70x30@30x70", "64"],
                        timing=FAST)
    assert {m.device for m in run.measurements} == {"torch:cpu", "torch:cpu@1t"}
    assert all(m.ok for m in run.measurements)
    path = save_run(run, tmp_path / "run.json")
    assert load_run(path) == run


def test_on_one_usable_core_the_cpu_is_not_listed_twice(tmp_path):
    """taskset, a container's cpuset: torch runs one thread, so torch:cpu is the serial run
    and a second, identical torch:cpu@1t column would only add noise and time."""
    import os
    import subprocess
    import sys

    one = min(os.sched_getaffinity(0))
    code = ("import chipfit; from chipfit.pipelines.bench import default_devices; "
            "found = chipfit.discover(['torch']); "
            "print(dict(found.get('torch:cpu').details)['torch_threads'], "
            "*default_devices(found))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, preexec_fn=lambda: os.sched_setaffinity(0, {one}))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "torch:cpu"]


def test_default_devices_add_a_single_thread_cpu():
    """Torch at several threads gets a one-thread column beside it, at one thread none (this
    CPU's own discovery, with its thread count set; a real two-core run of the default
    devices: test_first_minutes, and one usable core: the test below)."""
    from dataclasses import replace

    from chipfit.pipelines.bench import default_devices
    from chipfit.results import Discovery

    found = chipfit.discover(["torch"])
    cpu = found.get("torch:cpu")

    def refs(threads: str) -> list[str]:
        details = tuple((k, threads if k == "torch_threads" else v) for k, v in cpu.details)
        devices = tuple(replace(cpu, details=details) if d is cpu else d for d in found.devices)
        return [str(r) for r in default_devices(Discovery(devices, found.problems))]

    assert dict(cpu.details)["torch_threads"] == str(torch.get_num_threads())
    assert refs("2")[:2] == ["torch:cpu", "torch:cpu@1t"]
    assert refs("1")[0] == "torch:cpu" and "torch:cpu@1t" not in refs("1")
