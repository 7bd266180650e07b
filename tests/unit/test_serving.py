"""The serving simulator (analysis/serving.py) and its pipeline: pure arithmetic, no torch."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipfit.analysis.llm import LlmRun, activation_bytes, memory_breakdown, predict_llm
from chipfit.analysis.serving import (
    Engine,
    Slo,
    StepCost,
    Workload,
    max_load,
    percentile,
    simulate,
    step_cost,
)
from chipfit.errors import InvalidInputError
from chipfit.workloads.llm import load_arch

# a toy engine: 5 ms per step plus 10 us per token, 1 ns per context token read
TOY = StepCost(((1.0, 0.005), (8192.0, 0.005 + 8191e-5)), 1e-9, 1e-10)


def _little(res) -> tuple[float, float]:
    """(time-average requests in the system, throughput x mean time in the system)."""
    return res.mean_in_system, res.requests_per_s * sum(res.e2e) / len(res.e2e)


@pytest.mark.parametrize("work", [
    Workload(300, 50, rate=8.0, requests=120, seed=3),
    Workload(300, 50, concurrency=12, requests=120, distribution="lognormal", seed=5),
])
def test_littles_law_holds(work):
    res = simulate(TOY, Engine(200_000, 2048, 64), work)
    assert len(res.e2e) == 120 and res.rejected == 0
    lhs, rhs = _little(res)
    assert lhs == pytest.approx(rhs, rel=1e-9)
    assert all(a <= b for a, b in zip(res.ttft, res.e2e, strict=True))


def test_kv_capacity_limits_concurrency_and_a_request_too_long_is_rejected():
    work = Workload(1000, 200, concurrency=64, requests=200)
    small = simulate(TOY, Engine(12 * 1200, 8192, 256), work)
    big = simulate(TOY, Engine(1_000_000, 8192, 256), work)
    assert small.mean_running <= 12 + 1e-9 < big.mean_running
    assert small.output_tokens_per_s < big.output_tokens_per_s
    assert small.p("ttft", 90) > big.p("ttft", 90)  # the rest queue for KV blocks
    none = simulate(TOY, Engine(1000, 8192, 256), Workload(1000, 200, rate=1.0, requests=5))
    assert none.rejected == 5 and not none.e2e


def test_goodput_is_monotone_in_the_slo():
    res = simulate(TOY, Engine(100_000, 1024, 32), Workload(800, 60, rate=20.0, requests=150))
    last = -1.0
    for ttft in (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 60.0):
        g = res.goodput(Slo(ttft, None))
        assert g >= last
        last = g
    assert last == pytest.approx(res.requests_per_s)  # everything meets a loose enough SLO


def test_max_load_is_the_edge_of_the_slo():
    eng, work, slo = Engine(100_000, 2048, 64), Workload(500, 64, rate=1.0, requests=150), \
        Slo(0.5, 0.02)
    cap = max_load(TOY, eng, work, slo)
    assert cap > 0
    at = simulate(TOY, eng, Workload(500, 64, rate=cap, requests=150))
    over = simulate(TOY, eng, Workload(500, 64, rate=cap * 1.5, requests=150))
    assert slo.met(at.ttft, at.tpot) and not slo.met(over.ttft, over.tpot)
    users = max_load(TOY, eng, Workload(500, 64, concurrency=1, requests=150), slo)
    assert users >= 1 and users == int(users)


def test_tensor_parallel_and_chunking_shrink_per_device_memory():
    arch = load_arch("llama-3.1-70b")
    run = LlmRun(2048, 256, 64, "bfloat16")
    one, two = memory_breakdown(arch, run, 1), memory_breakdown(arch, run, 2)
    assert two.weights == pytest.approx(one.weights / 2) and two.kv_cache < one.kv_cache
    assert two.activations < one.activations  # q/k/v and MLP activations are split too
    whole = activation_bytes(arch, 64 * 2048, 64, 2.0, 1)
    chunked = activation_bytes(arch, 64 * 2048, 64, 2.0, 1, chunk=8192)
    assert chunked < whole / 10


def test_the_70b_fp8_batch_896_case_fits_on_h100_with_a_paged_cache():
    from chipfit.pipelines.llm import llm_report

    (row,) = llm_report("llama-2-70b", ["h100-sxm"], 1024, 290, 896, "fp8", "fp8").rows
    assert row.prediction is not None and row.devices_needed is not None
    assert row.devices_needed <= 2 and row.memory.total <= row.memory_capacity
    assert "holds" in row.why and row.prediction.batch < 896  # the rest wait for KV blocks
    (tp2,) = llm_report("llama-2-70b", ["h100-sxm"], 1024, 290, 896, "fp8", "fp8", tp=2).rows
    assert tp2.devices_needed == 2 and tp2.prediction.tp == 2
    assert tp2.prediction.batch > row.prediction.batch  # twice the memory: more sequences


def test_step_cost_matches_the_roofline_decode_step():
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.llm import catalog_device

    arch, dev = load_arch("llama-3.1-8b"), catalog_device(load_catalog()["h100-sxm"])
    run = LlmRun(1024, 2, 32)
    step = step_cost(arch, run, dev, 1)
    roof = predict_llm(arch, run, dev, 1, "optimized").step_s
    mine, _ = step.seconds(0, 0, 0, 32, 32 * 1025, 32)
    assert mine == pytest.approx(roof, rel=0.1)


def test_the_pipeline_answers_and_searches_the_fewest_devices():
    from chipfit.pipelines.serving import serve_report

    rep = serve_report("llama-3.1-8b", ["h100-sxm", "l4", "epyc-genoa-2vcpu"], 1024, 128,
                       rate=2.0, slo_ttft=1.0, per_user_tokens_per_s=20, requests=120)
    rows = {r.hardware: r for r in rep.rows}
    assert rows["epyc-genoa-2vcpu"].plan is None and "bandwidth" in rows["epyc-genoa-2vcpu"].why
    h100 = rows["h100-sxm"].plan
    assert h100.meets and h100.devices == 1 and h100.capacity >= 2.0
    assert rep.answer().startswith("Use ") and "per 1M tokens" in rep.answer()
    data = rep.to_dict()
    assert data["best"]["source"] == "predicted" and data["slo"]["source"] == "given"
    c = data["best"]
    assert c["usd_per_million_tokens"] < c["usd_per_million_output_tokens_all_cost"]
    more = serve_report("llama-3.1-8b", ["h100-sxm"], 1024, 128, rate=8 * h100.capacity,
                        slo_ttft=1.0, per_user_tokens_per_s=20, requests=120)
    assert more.rows[0].plan.devices > 1 and more.rows[0].plan.meets


def test_when_nothing_meets_the_slo_the_closest_and_the_binding_target_are_named():
    from chipfit.pipelines.serving import serve_report

    rep = serve_report("llama-3.1-8b", ["l4", "t4"], 512, 64, concurrency=4,
                       slo_tpot=0.0005, requests=40)
    assert rep.best is None and rep.closest is not None
    assert rep.answer().startswith("Nothing meets the SLO") and "binding constraint TPOT" in \
        rep.answer()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.integers(1, 3000), gen=st.integers(1, 300), n=st.integers(1, 40),
       rate=st.floats(0.1, 500.0), closed=st.booleans(), dist=st.sampled_from(["fixed",
                                                                                "lognormal"]),
       kv=st.integers(50, 200_000), budget=st.integers(1, 4096), seqs=st.integers(1, 64))
def test_every_request_is_served_or_rejected_and_tokens_are_conserved(
        prompt, gen, n, rate, closed, dist, kv, budget, seqs):
    work = Workload(prompt, gen, None if closed else rate, 3 if closed else None, dist, n, 1)
    res = simulate(TOY, Engine(kv, budget, seqs), work)
    assert len(res.e2e) + res.rejected == n
    lengths = work.lengths()
    if not closed:
        served = [(p, g) for p, g in lengths if -(-(p + g) // 16) <= -(-kv // 16)]
        assert res.output_tokens == sum(g for _, g in served)
    if res.e2e:
        lhs, rhs = _little(res)
        assert lhs == pytest.approx(rhs, rel=1e-6)
        assert min(res.ttft) > 0 and all(math.isnan(t) or t > 0 for t in res.tpot)
    assert percentile([], 50) != percentile([], 50)  # NaN for no values


@pytest.mark.parametrize("kwargs,says", [
    ({"rate": -1.0}, "--rate"), ({"rate": math.inf}, "--rate"), ({"concurrency": 0}, "users"),
    ({"rate": 1.0, "concurrency": 2}, "either"), ({"rate": 1.0, "requests": 0}, "--requests"),
    ({"rate": 1.0, "distribution": "zipf"}, "--lengths"),
])
def test_hostile_workloads_are_refused_in_words(kwargs, says):
    with pytest.raises(InvalidInputError, match=says):
        Workload(100, 10, **kwargs)
    with pytest.raises(InvalidInputError, match="--slo-ttft"):
        Slo(0.0, None)


def test_the_vllm_online_rows_are_simulated_and_fit_a_host_time_per_sequence():
    from chipfit.pipelines.llm import published_cases, stack_factors

    factors, band, basis = stack_factors("vLLM")
    assert 0 < factors["seq_s"] < 0.005 and factors["decode"] > 0  # under 5 ms per sequence
    assert band >= 0.5 and "rtx-4090" in basis  # one device: not validated elsewhere
    online = [c for c in published_cases() if c.concurrency and c.metric == "throughput"]
    assert len(online) == 5
    errors = sorted(abs(c.loo_error) for c in online)
    assert errors[len(errors) // 2] < 0.10  # the LOO median of the online throughput rows

