"""Fleet logic without a cluster: node types, pricing, the recommendation, keys, the view."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from chipfit.analysis.fleet import NodePrice, fleet_rows, recommend_node
from chipfit.execute.fleet import Node, group_nodes, node_from_probe
from chipfit.results import DeviceInfo, Discovery, Measurement, Run
from chipfit.spec import DeviceRef, Job


def node(node_id: str, cpus: float = 4, model: str = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.9GHz",
         accelerators: tuple[tuple[str, int], ...] = (), explicit: str | None = None) -> Node:
    return Node(node_id, f"host-{node_id}", "10.0.0.1", model, 4, cpus, 16 * 1024**3,
                accelerators, explicit)


def test_nodes_with_the_same_facts_share_a_type_and_names_say_the_hardware() -> None:
    nodes = group_nodes([node("b"), node("a"), node("c", 8), node("g", 8, accelerators=(
        ("NVIDIA L4", 1),)), node("h", 8, accelerators=(("NVIDIA L4", 1),))])
    types = {n.node_id: n.node_type for n in nodes}
    assert types["a"] == types["b"] == "cpu-4cpu-intel-xeon-platinum-8375"
    assert types["c"] == "cpu-8cpu-intel-xeon-platinum-8375"
    assert types["g"] == types["h"] == "1xnvidia-l4-8cpu"
    assert [n.node_id for n in nodes][:2] == ["g", "h"]  # ordered by type, then id


def test_an_explicit_type_wins_and_distinct_identities_never_share_a_name() -> None:
    nodes = group_nodes([node("a", explicit="web"), node("b", 2, explicit="web"), node("c")])
    types = {n.node_id: n.node_type for n in nodes}
    assert types["a"] == "web" and types["b"] == "web-2"  # same name, other facts
    assert types["c"].startswith("cpu-4cpu")


def test_a_probe_and_ray_resources_make_a_node() -> None:
    gpu = DeviceInfo("torch:cuda:0", "torch", "cuda", "gpu", "NVIDIA A100-SXM4-80GB")
    gpu1 = DeviceInfo("torch:cuda:1", "torch", "cuda", "gpu", "NVIDIA A100-SXM4-80GB")
    ray_node = {"NodeID": "ff" * 28, "NodeManagerAddress": "10.1.2.3",
                "Resources": {"CPU": 16.0, "GPU": 2.0, "accelerator_type:A100": 1.0},
                "Labels": {"ray.io/node-group": "gpu-workers"}}
    probe = {"hostname": "n1", "discovery": Discovery((gpu, gpu1)), "cpu_model": "AMD EPYC",
             "cores": 16, "memory_bytes": 2**36}
    made = node_from_probe(ray_node, probe)
    assert made.accelerators == (("NVIDIA A100-SXM4-80GB", 2),)
    assert made.explicit_type == "gpu-workers" and made.cpus == 16.0
    assert made.address == "10.1.2.3" and made.devices == ("torch:cuda:0", "torch:cuda:1")
    # no framework sees the GPUs there: Ray's own resources still count them
    bare = node_from_probe({**ray_node, "Labels": {}}, {**probe, "discovery": Discovery(())})
    assert bare.accelerators == (("A100", 2),) and bare.explicit_type is None


def m(node_type: str, median: float, status: str = "ok", size: str = "64") -> Measurement:
    times = (median,) * 5 if status == "ok" else ()
    return Measurement("matmul", size, "torch:cpu", status=status, block_times_s=times,
                       items_per_call=10, node_type=node_type, node_id=f"id-{node_type}",
                       note="" if status == "ok" else "lost: node x died")


def test_cheapest_per_item_wins_when_every_type_is_priced() -> None:
    prices = {"fast": NodePrice(4.0, "catalog"), "slow": NodePrice(1.0, "user")}
    rows = fleet_rows([m("slow", 0.002), m("fast", 0.001)], prices)
    assert [r.node_type for r in rows] == ["fast", "slow"]  # by latency
    fast, slow = rows
    assert fast.throughput == pytest.approx(10_000) and slow.throughput == pytest.approx(5_000)
    # $/1M = price/h / 3600 / items/s * 1e6
    assert fast.usd_per_m_items == pytest.approx(4.0 / 3600 / 10_000 * 1e6)
    [choice] = recommend_node(rows)
    assert choice.node_type == "slow" and "cheapest per 1M items" in choice.reason
    assert "2x less than fast" in choice.reason and "fast is 2x faster" in choice.reason
    [latency] = recommend_node(rows, "latency")
    assert latency.node_type == "fast"


def test_without_prices_the_fastest_is_chosen_and_the_reason_asks_for_a_price() -> None:
    rows = fleet_rows([m("a", 0.003), m("b", 0.001), m("dead", 0, "lost")])
    assert rows[-1].node_type == "dead" and rows[-1].status == "lost"
    [choice] = recommend_node(rows)
    assert choice.node_type == "b" and "--node-price" in choice.reason
    assert "not measured: dead" in choice.reason
    assert recommend_node(fleet_rows([m("dead", 0, "lost")])) == []


def test_a_lost_job_measured_later_counts_the_measurement() -> None:
    [row] = fleet_rows([m("a", 0, "lost"), m("a", 0.002)])
    assert row.status == "ok" and row.latency_s == pytest.approx(0.002)


def test_the_fleet_view_fits_80_columns_and_names_its_sources() -> None:
    from chipfit.report.fleet_view import fleet_text

    rows = fleet_rows([m("cpu-8cpu-intel-xeon-platinum-8375", 0.002), m("1xnvidia-l4-8cpu", 0.0005),
                       m("cpu-small", 0, "lost")],
                      {"1xnvidia-l4-8cpu": NodePrice(0.8, "catalog")})
    text = fleet_text(rows, recommend_node(rows))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "use 1xnvidia-l4-8cpu:" in text and "measured" in text and "estimated" in text
    assert "cpu-small: lost: node x died" in text


def test_fleet_jobs_keep_their_node_in_the_key_and_the_plan() -> None:
    from chipfit.store.sqlite import _job_from_json, _job_json, measurement_key

    plain = Job("matmul", "64", DeviceRef.parse("torch:cpu"))
    typed = Job("matmul", "64", DeviceRef.parse("torch:cpu"), node_type="big")
    pinned = Job("matmul", "64", DeviceRef.parse("torch:cpu"), node_type="big", node_id="n1")
    assert len({plain.key, typed.key, pinned.key}) == 3
    assert _job_from_json(_job_json(pinned)) == pinned
    old = json.loads(_job_json(plain))  # a plan stored before fleets: no node keys
    assert "node_type" not in old and _job_from_json(json.dumps(old)) == plain
    assert measurement_key(m("big", 0.001)) == typed.key[:5] + ("big", "")
    every = replace(m("big", 0.001), metadata=(("planned_node", "n1"),))
    assert measurement_key(every) == pinned.key  # a rewritten run keeps --every-node's keys


def test_old_measurements_read_without_node_fields() -> None:
    data = Measurement("matmul", "64", "torch:cpu").to_dict()
    del data["node_id"], data["node_type"]
    old = Measurement.from_dict(data)
    assert old.node_id is None and old.node_type is None


def test_prices_come_from_the_user_then_the_catalog_and_bad_ones_are_refused() -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.fleet import fleet_report, node_prices, parse_node_prices

    assert parse_node_prices(["a=0.5", "b=1.25/h"]) == {"a": 0.5, "b": 1.25}
    for bad in ("a", "=1", "a=x", "a=-1"):
        with pytest.raises(InvalidInputError, match="--node-price"):
            parse_node_prices([bad])
    nodes = [{"node_type": "gpu", "accelerators": [["NVIDIA H100 80GB HBM3", 2]]},
             {"node_type": "cpu", "accelerators": []}]
    prices = node_prices(nodes, {"cpu": 0.2})
    assert prices["cpu"] == NodePrice(0.2, "user")
    assert prices["gpu"].source == "catalog" and prices["gpu"].usd_per_h > 0
    run = Run("r", "bench", "t", settings=(("fleet_nodes", json.dumps(nodes)),),
              measurements=(m("gpu", 0.001), m("cpu", 0.004)))
    with pytest.raises(InvalidInputError, match="names no node type"):
        fleet_report(run, {"tpu": 1.0})
    report = fleet_report(run, {"cpu": 0.2})
    assert report is not None and {r.node_type for r in report.rows} == {"gpu", "cpu"}
    assert fleet_report(Run("r", "bench", "t")) is None


def test_the_html_report_has_a_fleet_section_with_sources() -> None:
    from chipfit.report.html import _fleet_section

    nodes = [{"node_type": "gpu", "accelerators": [["NVIDIA H100 80GB HBM3", 1]]},
             {"node_type": "cpu", "accelerators": []}]
    run = Run("r1", "bench", "t", settings=(("fleet_nodes", json.dumps(nodes)),),
              measurements=(m("gpu", 0.001), m("cpu", 0.004), m("lost-type", 0, "lost")))
    html = str(_fleet_section([run]))
    assert 'id="fleet"' in html and "Use gpu:" in html
    assert "src-measured" in html and "src-catalog" in html and "src-estimated" in html
    assert "lost: lost: node x died" in html
    assert str(_fleet_section([Run("r2", "bench", "t")])) == ""


def test_fleet_advice_refuses_a_model_only_this_process_knows() -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.fleet import fleet_measure

    with pytest.raises(InvalidInputError, match="built-in workloads"):
        fleet_measure("my_pkg.models:build", 8, executor=None)


def test_fleet_flags_need_a_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from chipfit.commands._common import add_fleet_flags, executor_from_args, ray_address
    from chipfit.errors import InvalidInputError

    parser = argparse.ArgumentParser()
    add_fleet_flags(parser)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(InvalidInputError, match="need --ray-address"):
        executor_from_args(parser.parse_args(["--every-node"]))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address(parser.parse_args([])) is None  # a stray $RAY_ADDRESS: a plain run
    assert ray_address(parser.parse_args(["--executor", "inline"])) is None
    assert ray_address(parser.parse_args(["--executor", "ray"])) == "10.0.0.1:6379"
    with pytest.raises(InvalidInputError, match="drop --executor"):
        executor_from_args(parser.parse_args(["--ray-address", "x:1", "--executor", "subprocess"]))
    fleet = executor_from_args(parser.parse_args(["--every-node", "--executor", "ray"]))
    assert fleet.fleet and fleet.every_node and fleet.address == "10.0.0.1:6379"


def test_a_node_probe_kept_in_the_cluster_kv_reads_back_and_a_damaged_one_is_probed_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The KV cache of fleet probes (RayExecutor._probe), on a stand-in for Ray's internal KV:
    keyed by node, backends and OMP_NUM_THREADS; damaged entries read as missing; a dead
    node's entries go. (On a real cluster: tests/backends/test_fleet.py's node-lost test.)"""
    from chipfit.execute import ray as ray_executor

    class FakeKV:
        def __init__(self) -> None:
            self.data: dict[tuple[str, bytes], bytes] = {}

        def _internal_kv_get(self, key: bytes, *, namespace: str) -> bytes | None:
            return self.data.get((namespace, key))

        def _internal_kv_put(self, key: bytes, value: bytes, overwrite: bool = True, *,
                             namespace: str) -> bool:
            self.data[(namespace, key)] = value
            return True

        def _internal_kv_del(self, key: bytes, *, del_by_prefix: bool = False,
                             namespace: str) -> int:
            gone = [k for k in self.data if k[0] == namespace and k[1].startswith(key)]
            for k in gone:
                del self.data[k]
            return len(gone)

    kv = FakeKV()
    monkeypatch.setattr(ray_executor, "_kv", lambda: kv)
    cpu = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "CPU", details=(("threads", "4"),))
    probe = {"hostname": "h1", "cpu_model": "Xeon", "cores": 4, "memory_bytes": 16 * 1024**3,
             "discovery": Discovery((cpu,))}
    ray_executor._keep_probe("n1", ["torch"], None, probe)
    assert ray_executor._kept_probe("n1", ["torch"], None) == probe
    for other in (("n2", ["torch"], None), ("n1", None, None), ("n1", ["torch"], "1")):
        assert ray_executor._kept_probe(*other) is None  # another node, backends or OMP
    ray_executor._keep_probe("n2", ["torch"], None, probe)
    key = next(k for k in kv.data if b"n2" in k[1])
    kv.data[key] = b'{"hostname": "h2"}'  # damaged (or written by something else)
    assert ray_executor._kept_probe("n2", ["torch"], None) is None
    ray_executor._forget_probes(["n1"])
    assert ray_executor._kept_probe("n1", ["torch"], None) is None
    assert len(kv.data) == 1  # n2's entry stays
