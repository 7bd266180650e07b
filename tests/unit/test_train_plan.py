"""The training plans' arithmetic (chipfit.analysis.train_plan): pure logic, no torch."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.analysis.train_plan import (
    NF4_BYTES,
    Parallel,
    TrainDevice,
    TrainModel,
    TrainSetup,
    largest_batch,
    llm_model,
    lora_params,
    memory_plan,
    parse_parallel,
    plan,
    rank_plans,
    search,
    step_time,
)
from chipfit.cost.llm_arch import LlmArch
from chipfit.errors import InvalidInputError, UnknownNameError

# Llama-3.1-8B's published shape (config.json on the Hub)
L8 = LlmArch("llama-3.1-8b", "llama", 32, 4096, 32, 8, 128, 14336, 128256)
DEV = TrainDevice("gpu80", "GPU 80", "gpu", 80e9, {"bf16": 1e15, "fp32": 6e13}, 0.8, 3e12,
                  4e11, 5e10, 700.0, 10.0)
CNN = TrainModel("cnn", 25_000_000, act_bytes_per_sample=1e8, flops_per_sample=2.4e10,
                 linear_dims=((2048, 1000),), layers=50)


def test_mixed_precision_adam_is_zero_papers_16_bytes_per_parameter():
    m = memory_plan(llm_model(L8), TrainSetup(batch=1, seq_len=1))
    states = m.weights + m.gradients + m.master + m.optimizer
    assert states == pytest.approx(16 * L8.params)
    assert m.trainable_params == L8.params and m.frozen_params == 0


def test_optimizers_and_precisions_change_only_their_states():
    base = TrainSetup(batch=1, seq_len=16)
    adam = memory_plan(llm_model(L8), base)
    sgd = memory_plan(llm_model(L8), replace(base, optimizer="sgd"))
    a8 = memory_plan(llm_model(L8), replace(base, optimizer="adam8bit"))
    assert adam.optimizer == 2 * sgd.optimizer == 4 * a8.optimizer
    fp32 = memory_plan(llm_model(L8), replace(base, precision="fp32"))
    assert fp32.master == 0 and fp32.weights == 2 * adam.weights
    assert fp32.activations > adam.activations


def test_lora_and_qlora_freeze_the_base():
    setup = TrainSetup(method="lora", lora_rank=16, lora_targets=("q", "v"), batch=1,
                       seq_len=16)
    # q: 4096 -> 4096, v: 4096 -> 1024, rank 16, 32 layers
    assert lora_params(llm_model(L8), setup) == 32 * 16 * ((4096 + 4096) + (4096 + 1024))
    lora = memory_plan(llm_model(L8), setup)
    q = memory_plan(llm_model(L8), replace(setup, method="qlora"))
    assert lora.weights > 2 * L8.params  # the 16-bit base plus the adapters
    linear = L8.linear_params
    base_q = linear * NF4_BYTES + (L8.params - linear) * 2
    assert q.weights == pytest.approx(base_q + q.trainable_params * 2)
    assert q.gradients == lora.gradients and q.optimizer == lora.optimizer


def test_checkpointing_keeps_fewer_activations_and_costs_a_forward():
    setup = TrainSetup(batch=2, seq_len=1024)
    ck = replace(setup, checkpointing=True)
    assert memory_plan(llm_model(L8), ck).activations < \
        memory_plan(llm_model(L8), setup).activations / 4
    plain = step_time(llm_model(L8), setup, Parallel(), 1, DEV, 1.0)
    again = step_time(llm_model(L8), ck, Parallel(), 1, DEV, 1.0)
    assert again.compute_s > plain.compute_s and again.model_flops == plain.model_flops


def test_model_flops_are_six_n_per_token_plus_attention():
    s = step_time(llm_model(L8), TrainSetup(batch=1, seq_len=1), Parallel(), 1, DEV, 1.0)
    n = L8.params - L8.embedding_params + L8.vocab * L8.hidden
    assert s.model_flops == pytest.approx(6 * n + 12 * 32 * 4096, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64), st.integers(1, 64), st.sampled_from(["full", "lora", "qlora"]),
       st.sampled_from([1, 2, 8, 64]))
def test_memory_grows_with_batch_and_sharding_only_shrinks_it(b1, b2, method, n):
    setup = TrainSetup(method=method, batch=1, seq_len=256)
    lo, hi = sorted((b1, b2))
    m = llm_model(L8)
    assert memory_plan(m, setup, batch=lo).total <= memory_plan(m, setup, batch=hi).total
    ddp, z1, z2, z3 = (memory_plan(m, setup, Parallel(s), n, batch=lo).total
                       for s in ("ddp", "zero1", "zero2", "zero3"))
    assert z3 <= z2 <= z1 <= ddp


def test_the_largest_batch_is_the_boundary():
    m, s = llm_model(L8), TrainSetup(method="qlora", batch=1, seq_len=2048)
    b = largest_batch(m, s, Parallel(), 1, 24e9, 1e9)
    assert b >= 1
    assert memory_plan(m, s, Parallel(), 1, 1e9, batch=b).total <= 24e9
    assert memory_plan(m, s, Parallel(), 1, 1e9, batch=b + 1).total > 24e9


def test_parallel_layouts_parse_and_refuse():
    assert parse_parallel("zero3,tp=2,pp=4") == Parallel("zero3", 2, 4)
    assert parse_parallel("TP=2") == Parallel("ddp", 2, 1)
    for bad in ("", "tp=", "tp=-1", "tp=0", "zero9", "pp=x", "<b>ddp</b>", "tp=99999",
                "x" * 500):
        with pytest.raises((InvalidInputError, UnknownNameError)):
            parse_parallel(bad)
    with pytest.raises(InvalidInputError):
        memory_plan(llm_model(L8), TrainSetup(), Parallel("ddp", 4, 1), 2)


def test_setups_refuse_nonsense():
    for kwargs in ({"method": "dora"}, {"optimizer": "lion"}, {"precision": "int4"},
                   {"batch": 0}, {"seq_len": -1}, {"lora_rank": True},
                   {"lora_targets": ("qkv",)}, {"method": "qlora", "precision": "fp32"}):
        with pytest.raises((InvalidInputError, UnknownNameError)):
            TrainSetup(**kwargs)


def test_data_parallel_traffic_and_cost_follow_the_devices():
    setup = TrainSetup(batch=4, seq_len=2048)
    one = plan(llm_model(L8), setup, Parallel(), 8, DEV, samples=1e4, efficiency=0.5,
               band=0.2, band_basis="t")
    z3 = step_time(llm_model(L8), setup, Parallel("zero3"), 8, DEV, 0.5)
    assert z3.comm_bytes == pytest.approx(1.5 * one.step.comm_bytes, rel=1e-6)
    assert one.steps == math.ceil(1e4 / 32)
    assert one.usd == pytest.approx(8 * 10.0 * one.total_s / 3600)
    assert one.kwh == pytest.approx(8 * 0.7 * one.total_s / 3600)
    assert 0 < one.mfu < 1


def test_a_traced_model_takes_the_predictors_step_time():
    setup = TrainSetup(batch=8, precision="fp32")
    s = step_time(CNN, setup, Parallel(), 1, DEV, 1.0, traced_step_s=0.1, traced_batch=2)
    assert s.compute_s == pytest.approx(0.4)
    # with the predictor's split, the device's seconds grow with the batch and the host's
    # launches do not (a launch-bound trace at a small batch is not multiplied out)
    split = step_time(CNN, setup, Parallel(), 1, DEV, 1.0, traced_step_s=0.1, traced_batch=2,
                      traced_split=(0.02, 0.09))
    assert split.compute_s == pytest.approx(max(0.02 * 4, 0.09) + 0.01 * 4)
    big = step_time(CNN, replace(setup, batch=64), Parallel(), 1, DEV, 1.0, traced_step_s=0.1,
                    traced_batch=2, traced_split=(0.02, 0.09))
    assert big.compute_s == pytest.approx(0.02 * 32 + 0.01 * 32)
    m = memory_plan(CNN, setup)
    assert m.activations == pytest.approx(8e8)
    assert memory_plan(CNN, replace(setup, checkpointing=True)).activations < m.activations
    # LoRA on a traced model adapts every linear layer: rank x (in + out)
    assert lora_params(CNN, TrainSetup(method="lora", lora_rank=4)) == 4 * (2048 + 1000)


def test_search_meets_a_deadline_cheapest_first_and_skips_what_does_not_fit():
    setup = TrainSetup(batch=1, seq_len=2048)
    small = replace(DEV, key="gpu16", memory_bytes=16e9, price_usd_hr=1.0)
    bands = {"single": (0.2, "t"), "node": (0.25, "t"), "multi": (0.3, "t")}
    found = search(llm_model(L8), setup, [DEV, small], samples=1e5, efficiency=0.5,
                   bands=bands, deadline_s=7 * 86400)
    assert found and all(p.fits for p in found)
    meeting = [p for p in found if p.total_s <= 7 * 86400]
    assert [p.usd for p in meeting] == sorted(p.usd for p in meeting)
    assert rank_plans(found, budget_usd=1e-6)[0].usd > 1e-6  # none within: cheapest first


def test_the_python_api_mirrors_the_command():
    import chipfit

    report = chipfit.train("llama-3.2-1b", tokens=1e7, method="lora", hardware=["l4"],
                           devices=1, parallel="ddp", batch=1, seq_len=512)
    data = report.to_dict()
    assert data["model"] == "llama-3.2-1b" and data["setup"]["method"] == "lora"
    row = data["rows"][0]
    assert row["hardware"] == "l4" and row["fits"] is True and row["max_batch"] >= 1
    price = chipfit.catalog()["l4"].price_usd_hr  # the catalog's price basis
    assert row["usd"] == (None if price is None else pytest.approx(price * row["total_s"] / 3600))
    assert report.verdict.startswith("Fine-tune with LoRA on 1x NVIDIA L4")
    with pytest.raises(InvalidInputError):
        chipfit.train("llama-3.2-1b", samples=10, tokens=10)


def test_a_traced_model_is_planned_data_parallel_only():
    with pytest.raises(InvalidInputError, match="tensor and pipeline"):
        memory_plan(CNN, TrainSetup(), Parallel("ddp", 2, 1), 2)
    assert memory_plan(CNN, TrainSetup(), Parallel("zero3"), 4).total > 0


def test_the_single_device_band_comes_from_the_published_single_device_rows():
    """train_fit.json's single-device band is the benchmark's, over the cited rows that are
    not excluded, and a traced model's one-device row shows it where it is the wider."""
    from importlib import resources

    import tomllib

    from chipfit.pipelines.train import _traced_band, bands

    text = resources.files("chipfit.hardware.data").joinpath("train_results.toml").read_text()
    rows = [r for r in tomllib.loads(text)["single_throughput"] if not r.get("excluded")]
    band, basis = bands()["single"]
    assert len(rows) >= 6 and all(r["source"] and r["samples_per_s"] > 0 for r in rows)
    assert f"80th percentile of {len(rows)} out-of-fit errors" in basis
    assert "assumption" not in basis and 0 < band < 1
    one = plan(CNN, TrainSetup(batch=8, precision="fp32"), Parallel(), 1, DEV, samples=1e4,
               efficiency=1.0, band=band, band_basis=basis, traced_step_s=0.1, traced_batch=2)
    shown = _traced_band(one, {DEV.key: (0.1, 2, band / 2, "predictor", None)})
    assert (shown.band, shown.band_basis) == (band, basis)
    wide = _traced_band(one, {DEV.key: (0.1, 2, band * 2, "predictor", None)})
    assert wide.band == band * 2 and "predictor" in wide.band_basis
