"""Each advisor rule on constructed evidence; the ranking under objectives and constraints."""

from __future__ import annotations

import pytest

from chipfit.analysis import rules
from chipfit.analysis.evidence import Evidence, ModelFacts, Option
from chipfit.analysis.ranking import recommend
from chipfit.errors import UnknownNameError

GiB = 2**30


def opt(device, kind, latency, batch=1, **kw):
    return Option(device=device, kind=kind, name=device, present=kind == "cpu", batch=batch,
                  latency_s=latency, latency_source="measured" if kind == "cpu" else "predicted",
                  **kw)


def facts(**kw):
    base = dict(name="m", params=1000, flops_per_item=1e6, op_mix=(("matmul", 1.0),))
    base.update(kw)
    return ModelFacts(**base)


def ev(options, batch=1, model=None, **kw):
    return Evidence(model=model or facts(), batch=batch, mode="inference",
                    options=tuple(options), **kw)


def test_below_crossover_fires_when_cpu_is_fastest():
    e = ev([opt("torch:cpu", "cpu", 1e-5), opt("h100-sxm", "gpu", 4e-5, bound="launch")],
           crossover_batch=(("torch:cpu", "h100-sxm", 48.0),))
    reason = rules.below_crossover(e)
    assert reason is not None and reason.favours == "cpu"
    assert ("crossover vs h100-sxm", "batch 48") in reason.evidence


def test_below_crossover_silent_above_the_crossover():
    e = ev([opt("torch:cpu", "cpu", 1e-2, batch=64), opt("h100-sxm", "gpu", 1e-3, batch=64)],
           batch=64, crossover_batch=(("torch:cpu", "h100-sxm", 8.0),))
    assert rules.below_crossover(e) is None


def test_launch_bound():
    e = ev([opt("torch:cpu", "cpu", 1e-5), opt("h100-sxm", "gpu", 3e-5, bound="launch"),
            opt("t4", "gpu", 3e-5, bound="transfer")])
    assert rules.launch_bound(e).code == "launch-bound"
    e2 = ev([opt("torch:cpu", "cpu", 1e-2), opt("h100-sxm", "gpu", 1e-3, bound="compute")])
    assert rules.launch_bound(e2) is None


def test_memory_fits_host_but_not_accelerator():
    need = 100 * GiB
    e = ev([opt("torch:cpu", "cpu", 1.0, memory_need_bytes=need, memory_have_bytes=512 * GiB),
            opt("h100-sxm", "gpu", 0.1, memory_need_bytes=need, memory_have_bytes=80 * GiB)],
           host_memory_bytes=512 * GiB)
    reason = rules.memory_host_only(e)
    assert reason is not None and reason.favours == "cpu"
    small = ev([opt("h100-sxm", "gpu", 0.1, memory_need_bytes=GiB, memory_have_bytes=80 * GiB)],
               host_memory_bytes=512 * GiB)
    assert rules.memory_host_only(small) is None


def test_fallback_ops():
    e = ev([opt("torch:mps:0", "gpu", 1e-3, fallback_ops=("aten::_fft_r2c",))])
    assert "aten::_fft_r2c" in dict(rules.cpu_fallbacks(e).evidence)["torch:mps:0"]
    assert rules.cpu_fallbacks(ev([opt("torch:cpu", "cpu", 1.0)])) is None


def test_recurrent_or_irregular():
    assert rules.recurrent_or_irregular(ev([], model=facts(recurrent=True))) is not None
    assert rules.recurrent_or_irregular(ev([], model=facts(small_op_share=0.8))) is not None
    assert rules.recurrent_or_irregular(ev([], model=facts(small_op_share=0.1))) is None


def test_matrix_dominated_large_batch_favours_tpu():
    model = facts(op_mix=(("conv", 0.7), ("matmul", 0.25), ("elementwise", 0.05)))
    assert rules.matrix_large_batch(ev([], batch=256, model=model)).favours == "tpu"
    assert rules.matrix_large_batch(ev([], batch=8, model=model)) is None
    lstm = facts(recurrent=True)
    assert rules.matrix_large_batch(ev([], batch=256, model=lstm)) is None


def test_long_training():
    fast = opt("tpu-v5p", "tpu", 0.1, batch=1024, train_step_s=0.3, train_source="predicted")
    e = ev([fast], batch=1024, train_samples=10**10, epochs=3)
    reason = rules.long_training(e)
    assert reason is not None and reason.favours == "multi-device"
    short = ev([fast], batch=1024, train_samples=10**6, epochs=1)
    assert rules.long_training(short) is None


def test_parallel_work_favours_gpu():
    e = ev([opt("torch:cpu", "cpu", 0.05, batch=32), opt("h100-sxm", "gpu", 0.005, batch=32)],
           batch=32)
    assert dict(rules.large_parallel_work(e).evidence)["speed-up over the CPU"] == "10.0x"


def test_recommend_by_objective_and_constraints():
    cpu = opt("torch:cpu", "cpu", 0.05, batch=32, joules_per_item=0.5, energy_source="estimated")
    gpu = opt("h100-sxm", "gpu", 0.005, batch=32, price_usd_hr=12.0, joules_per_item=0.05,
              energy_source="estimated")
    t4 = opt("t4", "gpu", 0.02, batch=32, price_usd_hr=0.35, joules_per_item=0.04,
             energy_source="estimated")
    e = ev([cpu, gpu, t4], batch=32)
    assert recommend(e, "latency").choice.device == "h100-sxm"
    assert recommend(e, "throughput").choice.device == "h100-sxm"
    assert recommend(e, "cost").choice.device == "t4"  # the CPU has no price
    assert recommend(e, "energy").choice.device == "t4"
    slow = recommend(e, "cost", max_latency=0.01)
    assert slow.choice.device == "h100-sxm"
    assert dict(slow.excluded)["t4"].startswith("latency")
    cheap = recommend(e, "latency", budget=0.1)  # h100 ~$0.52 per 1M, t4 ~$0.06
    assert cheap.choice.device == "t4"
    with pytest.raises(UnknownNameError, match="did you mean 'latency'"):
        recommend(e, "latncy")


def test_recommend_excludes_what_does_not_fit():
    big = opt("t4", "gpu", 0.001, memory_need_bytes=40 * GiB, memory_have_bytes=16 * GiB)
    cpu = opt("torch:cpu", "cpu", 0.1)
    rec = recommend(ev([big, cpu]), "latency")
    assert rec.choice.device == "torch:cpu" and "does not fit" in dict(rec.excluded)["t4"]


def test_training_plan_ranks_by_time_to_train():
    a = opt("a", "gpu", 0.01, batch=64, train_step_s=0.05, train_source="predicted")
    b = opt("b", "gpu", 0.02, batch=64, train_step_s=0.03, train_source="predicted")
    rec = recommend(ev([a, b], batch=64, train_samples=10**6), "latency")
    assert rec.choice.device == "b"


def test_fallback_warnings_are_parsed_into_operator_names():
    from chipfit.pipelines.advise import fallback_ops

    texts = [
        "The operator 'aten::_fft_r2c' is not currently supported on the MPS backend and will "
        "fall back to run on the CPU. This may have performance implications.",
        "some unrelated warning",
        "The operator 'aten::_fft_r2c' is not currently supported on the MPS backend and will "
        "fall back to run on the CPU.",
        "The operator 'aten::nonzero' is not current implemented for the MPS device; it will "
        "fall back to the CPU",
    ]
    assert fallback_ops(texts) == ("aten::_fft_r2c", "aten::nonzero")
