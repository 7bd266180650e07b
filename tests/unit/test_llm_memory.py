"""LLM memory accounting, fit verdicts and the decode roofline (pure arithmetic, catalog)."""

from __future__ import annotations

import math

import pytest

from chipfit.analysis.llm import (
    LlmRun,
    Scored,
    bytes_per_decode_token,
    devices_needed,
    fit_scale_offset,
    kv_bytes_per_token,
    loo_factors,
    memory_breakdown,
    weight_bytes,
)
from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.workloads.llm import BUILTIN_CONFIGS, arch_from_config, load_arch, tiny_config

GB = 1e9


def test_llama_3_1_8b_by_hand():
    arch = load_arch("llama-3.1-8b")
    # per layer: q,o 4096x4096 each; k,v 4096x1024 each; gate/up/down 4096x14336; 2 norms
    layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    params = 32 * layer + 2 * 128256 * 4096 + 4096  # untied embeddings + LM head, final norm
    assert arch.params == params == 8_030_261_248  # the published "8B" (8.03e9)
    assert weight_bytes(arch, "bfloat16") == 2 * params
    assert kv_bytes_per_token(arch, "bfloat16") == 2 * 32 * 8 * 128 * 2 == 131_072
    run = LlmRun(prompt_len=3584, gen_len=512, batch=1)
    mem = memory_breakdown(arch, run, overhead=1e9)
    assert mem.kv_cache == 4096 * 131_072  # 0.54 GB at 4k context, batch 1 (GQA: 8 KV heads)
    assert mem.weights == 16_060_522_496
    assert mem.total < 24 * GB  # fits one 24 GB GPU (L4, RTX 4090) at 4k context, batch 1


def test_llama_3_1_70b_int4_and_fp8_kv_by_hand():
    arch = load_arch("llama-3.1-70b")
    linear = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672)
    rest = 2 * 128256 * 8192 + 80 * 2 * 8192 + 8192
    assert arch.linear_params == linear and arch.params == linear + rest
    # int4 weight-only: 4 bits + a 16-bit scale per 128 weights; embeddings/head stay 16-bit
    assert weight_bytes(arch, "int4") == pytest.approx(linear * (0.5 + 2 / 128) + rest * 2)
    assert kv_bytes_per_token(arch, "fp8") == 2 * 80 * 8 * 128 * 1
    run = LlmRun(prompt_len=1024, gen_len=1024, batch=8, weight_dtype="int4", kv_dtype="fp8")
    two = memory_breakdown(arch, run, tp=2)
    assert two.kv_cache == 8 * 2048 * 163_840 / 2  # KV heads split over 2 devices


def test_mixtral_active_params_and_expert_reads():
    arch = load_arch("mixtral-8x7b")
    assert arch.params == pytest.approx(46.7e9, rel=0.01)  # Mixtral paper: 47B total
    assert arch.active_params == pytest.approx(12.9e9, rel=0.01)  # 13B active per token
    one = bytes_per_decode_token(arch, LlmRun(), 600)
    # batch 1 reads its 2 of 8 experts per layer, not all 8: the active weights (the input
    # embedding table is looked up, not read) plus 600 tokens of KV cache
    expected = 2 * (arch.active_params - arch.vocab * arch.hidden) + 600 * 131_072
    assert one == pytest.approx(expected, rel=0.01)
    assert one < 0.3 * weight_bytes(arch, "bfloat16")


def test_textbook_verdicts():
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.llm import catalog_device

    cat = load_catalog()
    h100 = catalog_device(cat["h100-sxm"])
    big, small = load_arch("llama-3.1-70b"), load_arch("llama-3.1-8b")
    run = LlmRun(prompt_len=512, gen_len=128)
    assert memory_breakdown(big, run, 1, h100.overhead_bytes).total > 80 * GB
    assert devices_needed(big, run, h100.memory_bytes, h100.overhead_bytes) == 2
    for key in ("l4", "rtx-4090"):
        dev = catalog_device(cat[key])
        four_k = LlmRun(prompt_len=3584, gen_len=512)
        assert devices_needed(small, four_k, dev.memory_bytes, dev.overhead_bytes) == 1


def test_decode_at_batch_one_never_beats_bandwidth_over_bytes():
    from chipfit.analysis.llm import predict_llm
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.llm import catalog_device

    run = LlmRun(prompt_len=512, gen_len=128)
    for name in ("llama-3.1-8b", "mixtral-8x7b", "qwen2.5-7b"):
        arch = load_arch(name)
        per_token = bytes_per_decode_token(arch, run, run.prompt_len)
        for spec in load_catalog().values():
            if spec.memory_bw is None or spec.peak("bf16") is None:
                continue
            pred = predict_llm(arch, run, catalog_device(spec), 1, "optimized")
            assert pred.decode_tokens_per_s <= spec.memory_bw / per_token, (name, spec.key)
            assert pred.decode_bound in ("bandwidth", "overhead")


def test_loo_factor_excludes_the_row_itself():
    rows = [Scored("a", "g", 100.0, 50.0, True), Scored("b", "g", 100.0, 25.0, True),
            Scored("c", "g", 100.0, 100.0, True), Scored("t", "h", 10.0, 5.0, False)]
    out = {r.id: (k, e) for r, k, e in loo_factors(rows)}
    assert out["a"][0] == pytest.approx((4.0 + 1.0) / 2)  # ratios of b and c only
    assert out["a"][1] == pytest.approx((50 * 2.5 - 100) / 100)
    assert out["t"] == (1.0, pytest.approx(-0.5))  # alone in its group: no factor


def test_a_scale_and_a_fixed_time_per_request_are_recovered():
    predicted = [0.001, 0.004, 0.02, 0.08, 0.3]
    published = [1.4 * q + 0.0025 for q in predicted]  # a stack 1.4x its roofline, +2.5 ms
    k, c = fit_scale_offset(published, predicted)
    assert k == pytest.approx(1.4) and c == pytest.approx(0.0025)
    # a negative offset would be no fixed cost: the median ratio alone
    shrinking = [1.4 * q - 0.0005 for q in predicted]
    assert fit_scale_offset(shrinking, predicted)[1] == 0.0
    # too few rows for two parameters: the median ratio alone
    assert fit_scale_offset(published[:3], predicted[:3]) == (pytest.approx(
        sorted(p / q for p, q in zip(published[:3], predicted[:3], strict=True))[1]), 0.0)
    assert fit_scale_offset([], []) == (1.0, 0.0)


def test_the_published_prefill_rows_get_a_fixed_time_per_request():
    from chipfit.pipelines.llm import published_cases, stack_factors

    factors, band, _ = stack_factors("TensorRT-LLM")
    assert 0.0 < factors["request_s"] < 0.02 and factors["prefill"] > 0  # ms, not seconds
    ttft = [c for c in published_cases() if c.metric == "ttft"]
    assert ttft and all(c.loo_request_s >= 0 for c in ttft)
    assert sorted(abs(c.loo_error) for c in ttft)[len(ttft) // 2] < 0.3
    assert 0 < band < 0.3


def test_config_parsing_refuses_what_it_cannot_size():
    with pytest.raises(InvalidInputError, match="decoder-only"):
        arch_from_config({"model_type": "bert", "hidden_size": 768})
    with pytest.raises(InvalidInputError, match="num_hidden_layers"):
        arch_from_config({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
                          "vocab_size": 10})
    with pytest.raises(UnknownNameError, match="did you mean"):
        load_arch("llama-3.1-8")
    assert arch_from_config(tiny_config("gpt2")).gated_mlp is False
    assert all(load_arch(name).params > 0 for name in BUILTIN_CONFIGS)


def test_json_shape_of_a_report():
    from chipfit.pipelines.llm import llm_report

    data = llm_report("llama-3.1-70b", ["h100-sxm", "l4", "tpu-v5e"]).to_dict()
    assert data["model"] == "llama-3.1-70b"
    for row in data["rows"]:
        assert {"hardware", "fits", "devices_needed", "ttft_s", "decode_tokens_per_s",
                "memory_bytes", "bound"} <= set(row)
        assert row["fits"] is False and row["devices_needed"] >= 2
        assert row["ttft_s"] > 0 and math.isfinite(row["decode_tokens_per_s"])
        assert row["memory_bytes"]["total"] <= row["memory_capacity_bytes"]
        assert row["prediction"]["source"] == "predicted"
        assert row["prediction"]["allreduce_s_per_step"] > 0  # tensor parallel: all-reduces
    one = llm_report("llama-3.1-8b", ["h100-sxm"]).to_dict()["rows"][0]
    assert one["devices_needed"] == 1 and one["prediction"]["allreduce_s_per_step"] == 0


def test_interconnect_figures_are_optional_sourced_and_checked():
    from chipfit.hardware.catalog import catalog_problems, load_catalog, read_catalog_data

    cat = load_catalog()
    assert cat["h100-sxm"].interconnect_bw == 450e9  # NVLink4, per direction
    assert cat["tpu-v5e"].interconnect_bw == 100e9  # ICI, bidirectional per link
    assert cat["l4"].interconnect_bw == cat["l4"].host_link_bw  # no NVLink: PCIe
    assert cat["epyc-9654"].interconnect_bw is None  # absent: no multi-device prediction
    for spec in cat.values():
        for fig in spec.optional_figures:
            assert fig.sources and fig.status in ("sourced", "derived"), spec.key
    data = read_catalog_data()
    data["devices"]["h100-sxm"]["interconnect_gbs"] = {"value": 450.0}
    assert any("interconnect_gbs: a value needs a source" in p for p in catalog_problems(data))


def test_llm_advice_ranks_and_excludes():
    from chipfit.pipelines.llm import is_llm, llm_advice

    advice = llm_advice("llama-3.1-70b", ["h100-sxm", "l4", "mi355x"], "cost", batch=8)
    assert advice.choice in ("h100-sxm", "l4")
    assert [h for h, _ in advice.excluded] == ["mi355x"]  # no price in the catalog
    tied = {h for t in advice.ties for h in t}
    scores = [v for r, v in advice.ranked if r.hardware not in tied]
    assert scores == sorted(scores)  # apart from ties within the bands, ordered as stated
    assert advice.verdict.best.device == advice.choice == advice.ranked[0][0].hardware
    fast = llm_advice("llama-3.1-8b", ["h100-sxm", "l4"], "throughput", batch=16)
    from chipfit.report.llm_view import llm_reasons, llm_verdict_line

    assert fast.choice == "h100-sxm" and "bound" in llm_reasons(fast)[1]
    assert llm_verdict_line(fast).startswith("Use 1x ")
    assert is_llm("mixtral-8x7b") and not is_llm("resnet50") and not is_llm("gpt2-small")


@pytest.mark.parametrize("bad", [
    {"num_key_value_heads": "x"}, {"num_key_value_heads": 3}, {"hidden_size": 2},
    {"hidden_size": True}, {"hidden_size": 1e30}, {"vocab_size": -1},
    {"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3},
])
def test_hostile_configs_are_one_line_usage_errors(bad):
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "vocab_size": 10, **bad}
    with pytest.raises(InvalidInputError):
        arch_from_config(cfg)


def test_the_python_api_answers_like_the_command():
    import chipfit

    report = chipfit.llm("llama-3.1-70b", "h100-sxm", batch=4)
    (row,) = report.rows
    assert row.devices_needed == 2 and row.fits is False and row.prediction.batch == 4
