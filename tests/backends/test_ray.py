"""The Ray executor on a real local Ray instance (2 CPUs), measuring real torch jobs.

A task that kills its own worker is injected through the executor's ``runner`` seam; the
runner is shipped to Ray's workers by value (this test module is not importable there).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from chipfit.execute._worker import tagged
from chipfit.execute.job import run_job
from chipfit.pipelines.bench import bench
from chipfit.results import DeviceInfo, Discovery, Measurement, Problem
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.store import open_store

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

pytestmark = pytest.mark.slow

TIMING = TimingConfig(warmup_s=0.01, min_block_s=0.002, min_samples=5, budget_s=0.15,
                      target_rel_ci=0.05)


def fault_runner(job: Job, discovery: Discovery, marker_dir: str) -> Measurement:
    """Size 24 kills its worker every time; size 40 only on its first attempt."""
    if job.size == "24":
        os._exit(9)
    marker = Path(marker_dir) / f"{job.size}.died"
    if job.size == "40" and not marker.exists():
        marker.touch()
        os._exit(9)
    if job.size == "32":
        time.sleep(600)  # a hung kernel
    import torch

    return tagged(run_job(job, discovery), torch_threads=str(torch.get_num_threads()))


def _default_torch_threads() -> int:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, env=env, check=True, timeout=120)
    return int(out.stdout)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def test_cli_bench_joins_a_running_cluster_by_address(local_ray, tmp_path: Path, cli) -> None:
    address = local_ray.get_runtime_context().gcs_address
    db = tmp_path / "h.sqlite3"
    proc = cli("bench", "-w", "matmul", "-d", "torch:cpu", "-s", "16", "--quick", "--executor",
               "ray", "--address", address, "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert local_ray.is_initialized()  # the CLI left the cluster it joined running
    with open_store(db) as store:
        run = store.load_run("latest")
    [m] = run.measurements
    assert m.ok and m.meta["executor"] == "ray" and m.meta["node"] == socket.gethostname()
    assert dict(run.settings)["executor"] == "ray" and dict(run.settings)["address"] == address
    assert dict(run.discovery.get("torch:cpu").details)["ray_nodes"] == socket.gethostname()


def test_a_suite_survives_a_task_that_kills_its_worker(local_ray, tmp_path: Path) -> None:
    from chipfit.discovery import discover
    from chipfit.execute.ray import RayExecutor

    executor = RayExecutor(runner=partial(fault_runner, marker_dir=str(tmp_path)), timeout_s=60)
    with open_store(tmp_path / "h.sqlite3") as store, executor:  # (discovery on Ray: the CLI test)
        run = bench(["matmul"], ["torch:cpu"], sizes=["16", "24", "40"], timing=TIMING,
                    executor=executor, store=store, discovery=discover(["torch"]))
        stored = store.load_run(run.run_id)
        planned = [j.key for j in store.planned_jobs(run.run_id)]
    assert stored.measurements == run.measurements  # the driver stored every result
    keys = [(m.workload, m.size, m.device, m.dtype, m.mode) for m in run.measurements]
    assert Counter(keys) == Counter(planned)  # each planned job exactly once
    by_size = {m.size: m for m in run.measurements}

    dead = by_size["24"]  # died twice: recorded, not retried forever
    assert dead.status == "error" and "died on all 2 attempts" in dead.note
    assert dead.meta["attempts"] == "2"
    # (a point re-measured because the machine was busy adds its launches: >= below)
    retried = by_size["40"]  # died once, then measured on the retry
    assert retried.ok and int(retried.meta["attempts"]) >= 2
    fine = by_size["16"]
    assert fine.ok and 1 <= int(fine.meta["attempts"]) <= fine.attempts  # a launch per round
    default_threads = _default_torch_threads()
    for m in (fine, retried):
        assert m.meta["executor"] == "ray" and m.meta["node"] == socket.gethostname()
        # Ray's OMP_NUM_THREADS=1 was undone: torch:cpu means all cores, as inline.
        assert int(m.meta["torch_threads"]) == default_threads


def test_a_hung_task_is_cancelled_and_recorded_as_timeout(local_ray, tmp_path: Path) -> None:
    from chipfit.discovery import discover
    from chipfit.execute.ray import RayExecutor

    executor = RayExecutor(runner=partial(fault_runner, marker_dir=str(tmp_path)), timeout_s=2)
    jobs = [Job("matmul", s, DeviceRef("torch", "cpu", None, 1), timing=TIMING)
            for s in ("32", "16")]
    run = executor.run(jobs, discover(["torch"]))
    first = next(run)  # the hung one, cancelled after 2 s (the test sits through that only)
    executor.timeout_s = 60  # read when a task is sent: the next job has time to start
    outcomes = [first, *run]
    by_size = {job.size: m for job, m in outcomes}
    assert [job.size for job, _ in outcomes] == ["32", "16"]
    assert by_size["32"].status == "timeout" and "2 s" in by_size["32"].note
    assert by_size["16"].ok  # the lane went on after the cancelled task


def test_job_options_ask_for_what_each_device_needs() -> None:
    from chipfit.execute.ray import job_options

    def job(ref: str) -> Job:
        return Job("matmul", "16", DeviceRef.parse(ref))

    assert job_options(job("torch:cuda:1")) == {"num_gpus": 1}
    assert job_options(job("jax:gpu:0")) == {"num_gpus": 1}
    assert job_options(job("jax:tpu:0")) == {"num_cpus": 1, "resources": {"TPU": 1}}
    assert job_options(job("torch:cpu@1t")) == {"num_cpus": 1}
    assert job_options(job("torch:cpu"), {"fleet": "a"}) == {"num_cpus": 1,
                                                            "label_selector": {"fleet": "a"}}


def test_discoveries_of_several_nodes_merge_with_their_nodes() -> None:
    from chipfit.execute.ray import merge_discoveries

    cpu = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "CPU")
    gpu = DeviceInfo("torch:cuda:0", "torch", "cuda", "gpu", "GPU")
    merged = merge_discoveries([
        ("a", Discovery((cpu,), (Problem("torch:cuda", "no CUDA"),))),
        ("b", Discovery((cpu, gpu))),
    ])
    assert [d.ref for d in merged.devices] == ["torch:cpu", "torch:cuda:0"]
    assert dict(merged.get("torch:cpu").details)["ray_nodes"] == "a,b"
    assert dict(merged.get("torch:cuda:0").details)["ray_nodes"] == "b"
    assert merged.problems == (Problem("torch:cuda", "on a: no CUDA"),)
    assert json.dumps([d.ref for d in merged.devices])  # plain values, picklable
