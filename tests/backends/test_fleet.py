"""A fleet on a real multi-node Ray cluster on this one machine (``ray.cluster_utils.Cluster``).

Node "types" here differ only by what each node is given: ``num_cpus`` and a
``node_type:NAME`` custom resource. They all share this machine's real CPU, so nothing here
compares speeds: the tests check where jobs ran, what was kept, and what was said.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from chipfit.execute._worker import tagged
from chipfit.execute.job import run_job
from chipfit.pipelines.bench import bench, resume_run, run_jobs
from chipfit.results import Discovery, Measurement
from chipfit.spec import Job, TimingConfig
from chipfit.store import open_store

ray = pytest.importorskip("ray")
pytest.importorskip("torch")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.slow

TIMING = TimingConfig(warmup_s=0.005, min_block_s=0.002, min_samples=3, budget_s=0.05,
                      target_rel_ci=0.2)
#: Fast node-death detection, so a removed node is noticed in about a second.
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                 "health_check_failure_threshold": 2}


def doomed_runner(job: Job, discovery: Discovery, doomed: tuple[str, ...],
                  marker_dir: str) -> Measurement:
    """On a doomed node: say so (a marker file) and hang until the node is killed."""
    node_id = ray.get_runtime_context().get_node_id()
    if node_id in doomed:
        Path(marker_dir, node_id).touch()
        time.sleep(600)
    return tagged(run_job(job, discovery), runner="doomed_runner")


@pytest.fixture(scope="module")
def cluster():
    """Head: 1 CPU, type cpu-small; two workers: 2 CPUs each, type cpu-big."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"node_type:cpu-small": 1}, "include_dashboard": False,
        "_system_config": SYSTEM_CONFIG})
    for _ in range(2):
        c.add_node(num_cpus=2, resources={"node_type:cpu-big": 1})
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def probed(cluster):
    """The cluster's nodes, probed once for the tests that do not change the cluster."""
    executor = _fleet(cluster)
    discovery = executor.discover(["torch"])
    return executor.nodes(), discovery


def _fleet(cluster, **options):
    from chipfit.execute.ray import RayExecutor

    return RayExecutor(address=cluster.address, fleet=True, timeout_s=120, **options)


def test_every_node_plans_each_job_once_per_node(cluster, probed) -> None:
    from chipfit.pipelines.bench import place, plan
    from chipfit.spec import DeviceRef

    found, _ = probed
    placements = _fleet(cluster, nodes=found, every_node=True).placements()
    assert sorted(p.node_id for p in placements) == sorted(n.node_id for n in found)
    jobs = place(plan(["matmul"], [DeviceRef.parse("torch:cpu@1t")], sizes=["64"],
                      timing=TIMING), placements)
    assert len({j.key for j in jobs}) == 3  # one per node, distinct keys for --resume
    assert sorted(j.node_type for j in jobs) == ["cpu-big", "cpu-big", "cpu-small"]


def test_data_parallel_training_scales_across_two_nodes(cluster, probed) -> None:
    from chipfit.pipelines.scale_fleet import scale_fleet

    found, _ = probed
    result = scale_fleet("mlp", executor=_fleet(cluster, nodes=found), node_type="cpu-big",
                         warmup=1, steps=3, batch=8)
    assert [p.devices for p in result.points] == [1, 2]
    one, two = (p.measurement for p in result.points)
    assert one.ok and two.ok and len(two.block_times_s) == 3
    assert two.meta["comm_backend"] == "gloo" and two.meta["nodes"] == "2"
    big = sorted(n.short_id for n in found if n.node_type == "cpu-big")
    assert sorted(two.meta["node_ids"].split(",")) == big  # one rank on each cpu-big node
    assert float(two.meta["replica_max_diff"]) == 0.0  # gradients really were all-reduced
    assert two.node_type == "cpu-big" and 0 < result.efficiency(result.points[1])


def test_cli_bench_on_a_fleet_measures_each_type_on_its_nodes_and_prints_the_choice(
        cluster, probed, tmp_path: Path, cli) -> None:
    """One real ``chipfit bench`` process on the fleet (the API's bench on a fleet runs in the
    node-loss test below): planned once per node type, each job on a node of its type, stored
    with it, the fleet table and the cheapest choice printed at 80 columns."""
    found, _ = probed
    nodes = {n.node_id: n for n in found}
    assert sorted(n.node_type for n in nodes.values()) == ["cpu-big", "cpu-big", "cpu-small"]
    assert sorted(n.cpus for n in nodes.values()) == [1.0, 2.0, 2.0]
    assert all(n.cpu_model and n.devices == ("torch:cpu",) for n in nodes.values())
    assert all(_kept_probes(node_id) for node_id in nodes)  # so the process below probes none
    db = tmp_path / "h.sqlite3"
    proc = cli("bench", "-w", "matmul", "-d", "torch:cpu", "-s", "64", "--quick", "--db",
               str(db), "--node-price", "cpu-small=0.05", "--node-price", "cpu-big=0.10",
               "--executor", "ray",  # with it, $RAY_ADDRESS names a fleet
               env={"RAY_ADDRESS": cluster.address, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "fleet: matmul 64 float32 inference" in proc.stdout
    assert "cpu-big" in proc.stdout and "cpu-small" in proc.stdout
    assert "use cpu-" in proc.stdout and "cheapest per 1M items" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    with open_store(db) as store:
        run = store.load_run("latest")
        planned = store.planned_jobs(run.run_id)
    assert sorted(j.node_type for j in planned) == ["cpu-big", "cpu-small"]  # once per type
    assert all(m.ok for m in run.measurements), [m.note for m in run.measurements]
    by_type = {m.node_type: m for m in run.measurements}
    assert sorted(by_type) == ["cpu-big", "cpu-small"]  # stored with its node type
    for node_type, m in by_type.items():
        assert nodes[m.node_id].node_type == node_type  # ran on a node of that type
        assert m.meta["node_id"] == m.node_id[:12]  # the worker's own view agrees
    settings = dict(run.settings)
    assert settings["fleet"] == "node-type" and settings["node_types"] == "cpu-big,cpu-small"


def _kill_when_marked(cluster, marker_dir: Path, doomed: dict[str, object]) -> threading.Thread:
    """Remove each doomed node as soon as its job has started there (its marker appears)."""
    def watch() -> None:
        left = dict(doomed)
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for node_id in [n for n in left if (marker_dir / n).exists()]:
                cluster.remove_node(left.pop(node_id), allow_graceful=False)
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _kept_probes(node_id: str) -> list[bytes]:
    """The probes of ``node_id`` kept in the cluster's KV (see RayExecutor._probe)."""
    from ray.experimental import internal_kv

    return internal_kv._internal_kv_list(f"probe/{node_id}/", namespace="chipfit")


def test_a_node_lost_mid_run_moves_or_loses_its_jobs_and_resume_finishes(
        cluster, probed, tmp_path: Path) -> None:
    """Runs last (it kills nodes). cpu-solo gets a single node; the first cpu-big node and
    the cpu-solo node are killed mid-job: cpu-big's job moves to the other cpu-big node,
    cpu-solo's is recorded lost, cpu-small's is kept, and --resume measures the lost one on
    a new cpu-solo node. Each new executor probes only the node no executor probed before
    (the others' probes are kept in the cluster's KV), and a dead node's kept probe goes."""
    solo = cluster.add_node(num_cpus=1, resources={"node_type:cpu-solo": 1})
    cluster.wait_for_nodes()
    markers = tmp_path / "markers"
    markers.mkdir()
    executor = _fleet(cluster)
    discovery = executor.discover(["torch"])
    assert executor.probed_nodes == (solo.node_id,)  # the three others: kept by `probed`
    assert len(executor.nodes()) == 4 and all(_kept_probes(n.node_id) for n in executor.nodes())
    first = {}
    for n in executor.nodes():  # the executor sends a type's jobs to its first node (by id)
        first.setdefault(n.node_type, n.node_id)
    raylets = {n.node_id: n for n in cluster.worker_nodes}
    doomed = {first["cpu-big"]: raylets[first["cpu-big"]], first["cpu-solo"]: solo}
    executor.runner = partial(doomed_runner, doomed=tuple(doomed), marker_dir=str(markers))
    watcher = _kill_when_marked(cluster, markers, doomed)
    with open_store(tmp_path / "h.sqlite3") as store:
        run = bench(["matmul"], ["torch:cpu"], sizes=["64"], timing=TIMING, executor=executor,
                    store=store, discovery=discovery)
        watcher.join(timeout=5)
        by_type = {m.node_type: m for m in run.measurements}
        assert sorted(by_type) == ["cpu-big", "cpu-small", "cpu-solo"]
        assert by_type["cpu-small"].ok
        moved = by_type["cpu-big"]
        assert moved.ok and moved.meta["moved_from"] == first["cpu-big"][:12]
        assert moved.node_id != first["cpu-big"]
        lost = by_type["cpu-solo"]
        assert lost.status == "lost" and lost.note.startswith("lost: node ")
        assert "no other node of that type is alive" in lost.note
        # a new cpu-solo node joins; --resume measures only what was lost, there
        solo_again = cluster.add_node(num_cpus=1, resources={"node_type:cpu-solo": 1})
        cluster.wait_for_nodes()
        again = _fleet(cluster)
        again.discover(["torch"])
        assert again.probed_nodes == (solo_again.node_id,)
        assert sorted(n.node_type for n in again.nodes()) == [
            "cpu-big", "cpu-small", "cpu-solo"]  # the dead nodes are not taken from the KV
        assert not any(_kept_probes(node_id) for node_id in doomed)  # forgotten once dead
        resumed, todo = resume_run(store, run.run_id)
        assert [j.node_type for j in todo] == ["cpu-solo"]
        finished = run_jobs(todo, resumed, executor=again, store=store)
        kept = store.load_run(run.run_id)
    new = [m for m in finished.measurements if m.node_type == "cpu-solo" and m.ok]
    assert len(new) == 1 and new[0].node_id != first["cpu-solo"]
    assert len(kept.measurements) == 4 and not kept.interrupted
