"""The GPU kernel models, their fit, the precision policy and ties (pure; numpy/scipy)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from chipfit.analysis.evidence import Option
from chipfit.analysis.gpu_kernels import (
    DEFAULTS,
    GpuFigures,
    GpuParams,
    elementwise_seconds,
    gemm_seconds,
    rowwise_seconds,
    sustained_fraction,
)
from chipfit.analysis.gpu_precision import gpu_precision
from chipfit.analysis.ranking import rank
from chipfit.hardware.gpu_arch import gpu_figures

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "gpu_kernels"
needs_data = pytest.mark.skipif(not (DATA / "kernels").is_dir(),
                                reason=f"the NeuSight kernel data is not at {DATA}")
P = GpuParams.of(DEFAULTS)


def _gpu(**kw: float) -> GpuFigures:
    base = dict(key="x", name="x", sms=80, lanes_per_sm=64, boost_mhz=1400.0, mem_bw_gbs=900.0,
                l2_mb=6.0, tdp_w=250.0, year=2019.0)
    base.update(kw)
    return GpuFigures(**base)  # type: ignore[arg-type]


def test_gemm_time_steps_with_waves_of_tiles():
    dev = _gpu(sms=10)
    # 10 SMs: 10 output tiles of 128x128 fill one wave; with 11 the last wave is partial,
    # so time grows faster than the work (10% more FLOPs)
    one = gemm_seconds(dev, P, 1, 128 * 10, 128, 4096)
    two = gemm_seconds(dev, P, 1, 128 * 11, 128, 4096)
    assert two / one > 1.15


def _gemm_one_candidate_at_a_time(dev, p, b, m, n, k, *, peak=None, efficiency=None,
                                  elem_bytes=4.0):
    """gemm_seconds as it was written before it priced every candidate at once: a loop over
    the (tile, split-K) candidates, one numpy pass each."""
    from chipfit.analysis.gpu_kernels import BATCHED_MIN_TILE, SPLIT_K, TILES, _simt_e_max

    b, m, n, k = (np.maximum(np.asarray(x, dtype=float), 1.0) for x in (b, m, n, k))
    if peak is None:
        peak = dev.fp32_flops * sustained_fraction(dev, p)
        e_max = _simt_e_max(dev, p)
    else:  # a tensor peak is held under the power cap as the FP32 lanes are
        peak = peak * sustained_fraction(dev, p)
        e_max = efficiency if efficiency is not None else p["gemm_e_max"]
    per_sm, bw = peak / dev.sms, dev.bandwidth * p["mem_eff"]
    best = np.full(np.broadcast(b, m, n, k).shape, np.inf)
    batched = b > 1
    for tm, tn in TILES:
        eff = e_max / (1.0 + p["gemm_a"] * (1.0 / tm + 1.0 / tn))
        tiles = b * np.ceil(m / tm) * np.ceil(n / tn)
        work_m = np.minimum(tm, np.ceil(m / p["gemm_gran"]) * p["gemm_gran"])
        work_n = np.minimum(tn, np.ceil(n / p["gemm_gran"]) * p["gemm_gran"])
        allowed = ~batched | (tm * tn >= BATCHED_MIN_TILE)
        for s in SPLIT_K:
            ks = np.ceil(k / s)
            if s > 1 and not np.any(ks >= 128):
                continue
            waves = np.ceil(tiles * s / dev.sms)
            t = waves * 2.0 * work_m * work_n * (ks + p["gemm_k0"]) / (per_sm * eff)
            t = np.where(allowed if s == 1 else allowed & ~batched, t, np.inf)
            if s > 1:
                t = t + (s * b * m * n * elem_bytes * 2.0) / bw + p["splitk_us"] * 1e-6
                t = np.where(ks >= 128, t, np.inf)
            best = np.minimum(best, t)
    memory = elem_bytes * b * (m * k + k * n + m * n) / bw
    return np.maximum(best, memory) + p["gemm_latency_us"] * 1e-6


def test_gemm_prices_every_candidate_at_once_exactly_as_one_at_a_time():
    """gemm_seconds evaluates all (tile, split-K) candidates in one pass (a fit calls it
    thousands of times): bit for bit what the loop over candidates gave, on every catalog
    GPU, batched or not, scalars, broadcast shapes and overridden peaks."""
    rng = np.random.default_rng(7)
    dims = [np.floor(2 ** rng.uniform(0, 14, 64)) for _ in range(3)]
    batch = np.where(rng.random(64) < 0.3, np.floor(2 ** rng.uniform(1, 8, 64)), 1.0)
    p = P.with_values(gemm_a=4.0, splitk_us=2.5)
    cases = [((batch, *dims), {}), ((1, 4096, 4096, 4096), {}), ((8, 64, 64, 64), {}),
             ((1, 7, 3, 100000), {}), ((1, dims[0][:, None], dims[1][None, :8], 512), {}),
             ((batch, *dims), {"peak": 300e12, "efficiency": 0.7, "elem_bytes": 2.0}),
             ((1, 300, 700, 2000), {"peak": 120e12})]
    for dev in gpu_figures().values():
        for args, kw in cases:
            for params in (P, p):
                new = gemm_seconds(dev, params, *args, **kw)
                old = _gemm_one_candidate_at_a_time(dev, params, *args, **kw)
                assert np.shape(new) == np.shape(old) and np.array_equal(new, old), (dev.key, kw)


def test_params_read_through_their_cache_as_their_values():
    p = P.with_values(gemm_a=3.0)
    assert p["gemm_a"] == 3.0 and p["gemm_k0"] == DEFAULTS["gemm_k0"]
    assert p == GpuParams(p.values) and hash(p) == hash(GpuParams(p.values))
    assert "_lookup" not in repr(p)
    with pytest.raises(KeyError):
        p["no_such_parameter"]


def test_gemm_is_bounded_by_the_roofline():
    dev = _gpu()
    m = n = k = 4096
    t = float(gemm_seconds(dev, P, 1, m, n, k))
    assert t >= 2.0 * m * n * k / dev.fp32_flops
    assert t >= 4.0 * (m * k + k * n + m * n) / dev.bandwidth


def test_small_dimensions_run_below_peak():
    dev = _gpu()
    big = 2.0 * 4096 ** 3 / float(gemm_seconds(dev, P, 1, 4096, 4096, 4096))
    thin = 2.0 * 8 * 4096 * 4096 / float(gemm_seconds(dev, P, 1, 8, 4096, 4096))
    assert thin < 0.5 * big


def test_low_power_boards_do_not_hold_boost():
    assert sustained_fraction(_gpu(tdp_w=70.0), P) < 1.0
    assert sustained_fraction(_gpu(tdp_w=400.0), P) == 1.0


def test_bandwidth_curves_have_a_floor_and_scale_with_bytes():
    dev = _gpu()
    tiny = float(elementwise_seconds(dev, P, "add", 1, 12))
    assert tiny >= DEFAULTS["ew_latency_us"] * 1e-6
    big = float(elementwise_seconds(dev, P, "add", 1e8, 1.2e9))
    assert big == pytest.approx(1.2e9 / (dev.bandwidth * P["mem_eff"]), rel=0.05)
    few_rows = float(rowwise_seconds(dev, P, "softmax", 4, 1 << 20))
    many_rows = float(rowwise_seconds(dev, P, "softmax", 4096, 1 << 10))
    assert few_rows > many_rows  # same bytes, fewer SMs busy


def test_catalog_figures_match_the_datasheet_fp32_peaks():
    figs = gpu_figures()
    # FP32 TFLOP/s from the vendors' datasheets (see gpu_arch.toml's sources)
    for key, tflops in {"h100-sxm": 66.9, "a100-pcie-40gb": 19.5, "v100-pcie-32gb": 14.1,
                        "t4": 8.1, "l4": 30.3, "p4": 5.5, "p100-pcie-16gb": 9.3,
                        "mi100": 23.1, "mi210": 22.6}.items():
        assert figs[key].fp32_flops / 1e12 == pytest.approx(tflops, rel=0.02), key


@pytest.mark.parametrize(("key", "dtype", "op_class", "framework", "unit"), [
    ("a100-pcie-40gb", "float32", "matmul", "torch", "FP32 lanes (SIMT)"),
    ("a100-pcie-40gb", "float32", "conv", "torch", "TF32 tensor cores"),
    ("a100-pcie-40gb", "float32", "matmul", "jax", "TF32 tensor cores"),
    ("t4", "float32", "conv", "torch", "FP32 lanes (SIMT)"),
    ("h100-sxm", "bfloat16", "matmul", "torch", "BF16 tensor cores"),
    ("t4", "float16", "matmul", "torch", "FP16 tensor cores"),
    ("t4", "bfloat16", "matmul", "torch", "FP32 lanes (SIMT)"),
    ("mi210", "float32", "matmul", "torch", "FP32 matrix cores (MFMA)"),
])
def test_precision_policy(key, dtype, op_class, framework, unit):
    choice = gpu_precision(gpu_figures()[key], dtype, op_class, framework)
    assert choice.unit == unit
    assert choice.why  # every choice says why
    if "tensor" in unit or "matrix" in unit:
        # a sourced GEMM figure: BF16 MAMF tables, or a measured FP32 SGEMM on MFMA
        assert choice.peak and choice.efficiency and ("MAMF" in choice.why
                                                      or "SGEMM" in choice.why)


def test_bf16_uses_the_tensor_peak_fp32_does_not():
    h100 = gpu_figures()["h100-sxm"]
    assert gpu_precision(h100, "bfloat16", "matmul").peak == pytest.approx(989e12)
    assert gpu_precision(h100, "float32", "matmul").peak is None  # fitted SGEMM model


def _option(device: str, latency: float, band: float, price: float | None) -> Option:
    return Option(device=device, kind="gpu", name=device, present=False, batch=1,
                  latency_s=latency, latency_source="predicted", price_usd_hr=price, band=band)


def test_ties_are_broken_by_cost_never_by_name():
    a = _option("aaa-gpu", 1.00e-3, 0.2, 10.0)
    z = _option("zzz-gpu", 1.05e-3, 0.2, 1.0)  # slower by 5%, well inside the band, cheaper
    far = _option("slow-gpu", 5e-3, 0.2, 0.1)
    ranked, ties, why = rank([a, far, z], lambda o: o.latency_s, "latency")
    assert [o.device for o in ranked] == ["zzz-gpu", "aaa-gpu", "slow-gpu"]
    assert ties == (("zzz-gpu", "aaa-gpu"),)
    assert "cost" in why


def test_no_tie_without_overlap():
    a = _option("a", 1e-3, 0.05, 10.0)
    b = _option("b", 2e-3, 0.05, 1.0)
    ranked, ties, _ = rank([b, a], lambda o: o.latency_s, "latency")
    assert [o.device for o in ranked] == ["a", "b"] and ties == ()


@needs_data
@pytest.mark.parametrize(("group", "limit"), [("gemm", 0.35), ("elementwise", 0.25),
                                              ("rowwise", 0.30), ("conv", 0.45)])
def test_each_class_model_on_rows_held_back_from_its_fit(group, limit):
    from chipfit.analysis.gpu_fit import GROUPS, fit_group, mape, predict_rows
    from chipfit.pipelines.gpu_data import load_kernel_rows

    rows = load_kernel_rows(DATA, GROUPS[group][0][:3], sample=40, seed=1)
    held = np.random.default_rng(0).random(len(rows)) < 0.3
    fit = fit_group(group, rows.subset(~held), gpu_figures(), P)
    test = rows.subset(held)
    err = mape(predict_rows(test, gpu_figures(), fit), test.seconds)
    assert math.isfinite(err) and err < limit


def test_sweep_slowdown_scales_measured_dense_kernels_only():
    from chipfit.analysis.gpu_fit import KernelRows, device_seconds, sweep_slowdown

    dev = _gpu()
    p = P.with_values(sweep_tau_ms=100.0, sweep_gamma=1.0)
    dims = {"B": np.array([1.0, 1.0, 8192.0]), "M": np.array([128.0, 8192.0, 1.0]),
            "N": np.array([128.0, 8192.0, 1.0]), "K": np.array([128.0, 8192.0, 1.0]),
            "H": np.array([1.0, 1.0, 8192.0])}
    rows = KernelRows(np.array(["linear", "linear", "relu"]), np.array(["x"] * 3), dims,
                      np.ones(3))
    measured = device_seconds(rows, dev, p)
    model = gemm_seconds(dev, p, 1, dims["M"][:2], dims["N"][:2], dims["K"][:2])
    # a 1 TFLOP GEMM (~90 ms here) is slowed by 1 + t / 100 ms; a 128^3 one hardly at all
    assert measured[1] == pytest.approx(model[1] * (1 + model[1] / 0.1), rel=1e-9)
    assert measured[0] == pytest.approx(model[0], rel=1e-3)
    # memory-bound kernels do not hold the board at full power: no slowdown
    relu = elementwise_seconds(dev, p, "relu", 8192.0 ** 2, 2 * 4 * 8192.0 ** 2)
    assert measured[2] == pytest.approx(float(relu), rel=1e-9)
    assert sweep_slowdown(np.array([0.0]), p)[0] == 1.0


# ------------------------------------------ device features that transfer (issue 24)

@pytest.mark.parametrize(("key", "share"), [
    ("p4", 0.5), ("p100-pcie-16gb", 0.5), ("v100-pcie-32gb", 0.5), ("t4", 0.5),
    ("a100-pcie-40gb", 0.5), ("a10", 1.0), ("rtx-4090", 1.0), ("l4", 1.0), ("h100-sxm", 1.0),
    ("b200", 1.0), ("rtx-5090", 1.0), ("mi250-gcd", 0.25)])
def test_fp32_issue_share_follows_the_whitepaper_sm_layout(key, share):
    # Pascal dual-dispatches, Volta..GA100 have 16 FP32 lanes per scheduler: an FMA stream
    # leaves half the issue slots free; GA10x/Ada/Hopper/Blackwell feed 32 lanes per slot
    assert gpu_figures()[key].ffma_issue_share == share


def test_registers_per_lane_halve_on_128_lane_sms():
    figs = gpu_figures()
    assert figs["v100-pcie-32gb"].regs_per_lane == 1024
    assert figs["p4"].regs_per_lane == figs["h100-sxm"].regs_per_lane == 512


def test_single_issue_factor_sits_between_its_published_microbenchmarks():
    from chipfit.analysis.gpu_kernels import (
        SINGLE_ISSUE_EVIDENCE,
        single_issue_for,
        single_issue_from_evidence,
    )

    factor = single_issue_from_evidence(P)
    each = [single_issue_for(P, ev) for ev in SINGLE_ISSUE_EVIDENCE]
    assert min(each) < factor < max(each)  # the geometric mean of what each figure implies
    assert factor == pytest.approx(math.sqrt(each[0] * each[1]))
    for ev, f in zip(SINGLE_ISSUE_EVIDENCE, each, strict=True):
        # with its own factor the model reproduces each published figure
        t = float(gemm_seconds(ev["gpu"], P.with_values(gemm_single_issue=f), 1,
                               ev["m"], ev["n"], ev["k"]))
        tflops = 2.0 * ev["m"] * ev["n"] * ev["k"] / t / 1e12
        assert tflops == pytest.approx(ev["tflops"], rel=0.01), ev["source"]
        assert ev["gpu"].ffma_issue_share == 1.0  # they are single-issue SMs


def test_single_issue_sms_reach_a_lower_share_of_their_peak():
    from chipfit.analysis.gpu_kernels import sgemm_efficiency

    figs = gpu_figures()
    # same power headroom, same kernels generation: only the SM's issue layout differs
    assert sgemm_efficiency(figs["h100-sxm"], P) < sgemm_efficiency(figs["a100-sxm-80gb"], P)
    assert sgemm_efficiency(figs["h100-sxm"], P) == pytest.approx(
        P["gemm_e_max"] * P["gemm_single_issue"])


def test_base_clocks_are_recorded_below_boost_for_the_power_capped_boards():
    figs = gpu_figures()
    for key in ("p4", "t4", "l4"):
        assert 0.3 < figs[key].base_fraction < 1.0, key


def test_the_shipped_fit_carries_its_calibrated_single_issue_factor():
    from chipfit.analysis.gpu_kernels import single_issue_from_evidence
    from chipfit.predictors.fits import shipped_gpu_model

    params = shipped_gpu_model().params
    assert params["gemm_single_issue"] == pytest.approx(single_issue_from_evidence(params),
                                                        rel=1e-6)


def test_every_nvidia_catalog_gpu_has_architecture_figures():
    from chipfit.hardware.catalog import load_catalog

    figs = gpu_figures()
    missing = [k for k, s in load_catalog().items()
               if s.kind == "gpu" and s.vendor == "NVIDIA" and k not in figs]
    assert missing == []


def test_protocol_summary_breaks_errors_down_by_model_and_mode():
    from chipfit.pipelines.gpu_validate import E2eCase, protocol_summary

    def case(model: str, mode: str, error: float) -> E2eCase:
        return E2eCase(model, 512, 8, "t4", mode, 1.0, 1.0 + error, True)

    cases = [case("bert", "inference", 0.05), case("bert", "inference", -0.30),
             case("gpt2", "train", 0.10)]
    s = protocol_summary(cases, band=0.2)
    assert s["cases"] == 3 and s["coverage"] == pytest.approx(2 / 3)
    bert = s["by_model_mode"]["bert inference"]
    assert bert["cases"] == 2 and bert["mean_ape"] == pytest.approx(0.175)
    assert bert["coverage"] == 0.5
    assert s["by_model_mode"]["gpt2 train"]["median_error"] == pytest.approx(0.10)
    assert protocol_summary([], band=0.2) == {"cases": 0}


def test_borrowed_efficiencies_and_single_issue_sms_are_stated_as_assumptions():
    from chipfit.analysis.gpu_predict import GpuEstimate, device_assumptions

    figs = gpu_figures()
    mi210 = gpu_precision(figs["mi210"], "float32", "matmul")  # a measured FP32 SGEMM figure
    assert mi210.assumption == "" and mi210.efficiency == pytest.approx(0.837)
    assert "rocm-libraries issue #9453" in mi210.why
    for key in ("mi100", "mi300x"):  # no FP32 GEMM figure: the BF16 one, said and searched
        choice = gpu_precision(figs[key], "float32", "matmul")
        assert "borrowed from BF16" in choice.assumption and "searched" in choice.assumption
    assert gpu_precision(figs["t4"], "int8", "matmul").assumption
    assert gpu_precision(figs["h100-sxm"], "bfloat16", "matmul").assumption == ""
    assert gpu_precision(figs["t4"], "bfloat16", "matmul").assumption  # no bf16 peak
    simt = (gpu_precision(figs["h100-sxm"], "float32", "matmul"),)
    est = GpuEstimate(1.0, 1.0, 0.1, (), simt, "compute")
    assert any("published" in a for a in device_assumptions(figs["h100-sxm"], est))
    assert device_assumptions(figs["a100-sxm-80gb"], GpuEstimate(
        1.0, 1.0, 0.1, (), (gpu_precision(figs["a100-sxm-80gb"], "float32", "matmul"),),
        "compute")) == ()


def test_roofline_rows_state_the_efficiencies_they_borrow():
    from chipfit.analysis.roofline import catalog_roofs
    from chipfit.hardware.catalog import load_catalog
    from chipfit.predictors.core import assumption_notes

    catalog = load_catalog()
    tpu = assumption_notes(catalog_roofs(catalog["tpu-v5p"], "jax").efficiency)
    assert any(n.startswith("assumption: matmul efficiency") for n in tpu)  # no v5p GEMM figure
    v5e = assumption_notes(catalog_roofs(catalog["tpu-v5e"], "jax").efficiency)
    assert not any(n.startswith("assumption: matmul efficiency") for n in v5e)  # measured
    assert any(n.startswith("assumption: memory efficiency") for n in v5e)  # no TPU HBM figure
    assert assumption_notes((("matmul", 0.8, "measured: MAMF table"),)) == ()


def test_a_power_capped_board_holds_its_tensor_peak_no_better_than_its_fp32_lanes():
    """A 70 W T4 runs a 4096^3 FP16 cuBLAS GEMM at about 24 of its 65 TFLOP/s (NVIDIA
    developer forum thread 264462, power capping); a 400 W A100 holds its boost clock."""
    from chipfit.predictors.fits import shipped_gpu_model

    params = shipped_gpu_model().params
    figs = gpu_figures()

    def tflops(key: str) -> float:
        dev = figs[key]
        t = gemm_seconds(dev, params, 1, 4096, 4096, 4096, peak=dev.tensor_peak("fp16"),
                         efficiency=0.807, elem_bytes=2.0)
        return 2 * 4096**3 / float(t) / 1e12

    assert 20 < tflops("t4") < 30  # not the 49 of an uncapped 65 x 0.807
    assert tflops("a100-sxm-40gb") > 0.7 * 312


def test_a_host_bound_call_says_which_host_it_assumes():
    from types import SimpleNamespace

    from chipfit.analysis.gpu_predict import GpuEstimate, to_prediction
    from chipfit.predictors.fits import shipped_gpu_model

    costs = SimpleNamespace(workload="w", size="1", dtype="float32", mode="inference", items=1,
                            ops=(), notes=(), transfer_bytes=0)
    dev = gpu_figures()["t4"]
    for host_s, device_s, expected in ((2e-3, 1e-3, True), (1e-3, 2e-3, False)):
        est = GpuEstimate(max(host_s, device_s), device_s, host_s, (), (), "launch")
        pred = to_prediction(est, costs, dev, shipped_gpu_model(), key="t4", name=dev.name)
        assert any("host CPU" in n for n in pred.notes) is expected


def test_every_nvidia_rows_fp32_peak_matches_the_catalogs():
    # SMs x lanes x 2 x boost: the rows whose clock is derived from the catalog's FP32 peak
    # (B200, GB200, B300, RTX 5090, RTX PRO 6000) must stay consistent with it
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    for key, fig in gpu_figures().items():
        peak = catalog[key].peak("fp32")
        if fig.vendor == "NVIDIA" and peak:
            assert fig.fp32_flops == pytest.approx(peak, rel=0.02), key


def test_single_issue_fp32_rows_widen_their_band_by_the_calibration_spread():
    from chipfit.analysis.gpu_kernels import single_issue_spread
    from chipfit.predictors.core import widened_band

    spread = single_issue_spread(P)
    assert 0.0 < spread < 0.5
    band, basis = widened_band(0.156, "measured", spread)
    assert max(0.156, spread) < band < 0.156 + spread  # log errors add in quadrature
    assert basis.startswith("measured") and "published SGEMM" in basis


def test_every_tpu_and_amd_matrix_efficiency_is_sourced_or_said_to_be_assumed():
    """Issue 24: a TPU's or AMD GPU's efficiency either rests on a cited measurement (its
    derivation does not say "assumption") or its rows say "assumption: ..." about it."""
    from types import SimpleNamespace

    from chipfit.analysis.gpu_predict import GpuEstimate, to_prediction
    from chipfit.analysis.roofline import catalog_roofs
    from chipfit.hardware.catalog import load_catalog
    from chipfit.predictors.core import assumption_notes
    from chipfit.predictors.fits import shipped_gpu_model

    catalog = load_catalog()
    checked = 0
    for key, spec in catalog.items():
        if not (spec.kind == "tpu" or (spec.kind == "gpu" and spec.vendor == "AMD")):
            continue
        notes = assumption_notes(catalog_roofs(spec, "jax" if spec.kind == "tpu" else "torch")
                                 .efficiency)
        for e in spec.efficiencies:
            if spec.kind != "tpu" and not e.name.startswith("matmul"):
                continue  # an AMD GPU's memory/host figures are the GPU defaults' measurements
            assert e.sources and e.derivation, (key, e.name)
            if "assumption" in e.derivation.lower():
                assert any(n.startswith(f"assumption: {e.name} efficiency") for n in notes), \
                    (key, e.name)
            else:
                assert not any(s.startswith("a stated chipfit assumption") for s in e.sources), \
                    (key, e.name)
            checked += 1
    assert checked >= 13
    costs = SimpleNamespace(workload="w", size="1", dtype="float32", mode="inference", items=1,
                            ops=(), notes=(), transfer_bytes=0)
    for key, dev in gpu_figures().items():
        if dev.vendor != "AMD":
            continue
        for dtype in ("float32", "bfloat16", "float16", "int8", "float8_e4m3fn"):
            choice = gpu_precision(dev, dtype, "matmul")
            if choice.efficiency is None:
                continue
            est = GpuEstimate(1.0, 1.0, 0.0, (), (choice,), "compute")
            pred = to_prediction(est, costs, dev, shipped_gpu_model(), key=key, name=dev.name)
            if choice.assumption:
                assert f"assumption: {choice.assumption}" in pred.notes, (key, dtype)
            else:
                assert "assumption" not in choice.why.lower(), (key, dtype)


def test_tpu_matmul_efficiencies_sit_above_the_published_mfu_lower_bounds():
    """An MFU (model FLOPs / (step time x peak)) also spends time outside matmuls, so it bounds
    the matmul efficiency from below: MaxText's best rows and PaLM's HFU on TPU v4."""
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    for key, mfu in (("tpu-v4", 0.589), ("tpu-v4", 0.578), ("tpu-v5e", 0.669),
                     ("tpu-v5p", 0.715)):
        assert catalog[key].efficiency("matmul").value > mfu, key
    assert catalog["tpu-v5e"].efficiency("matmul").value == pytest.approx(181.8 / 197, abs=1e-3)
    assert catalog["tpu-v6e"].efficiency("matmul").value == pytest.approx(727.7 / 918, abs=1e-3)
    assert catalog["tpu-v7"].efficiency("matmul").value == pytest.approx(956.4 / 1153.5,
                                                                         abs=1e-3)


def _roof_fraction(spec, dtype: str) -> float:
    """The fraction of the catalog peak the catalog roofs price ``dtype`` matmuls at."""
    from chipfit.analysis.roofline import catalog_roofs

    peak = spec.peak({"bfloat16": "bf16", "float8_e4m3fn": "fp8"}[dtype])
    rate = dict(catalog_roofs(spec, "torch", dtypes=(dtype,)).matmul)[dtype][0][1]
    return rate / peak


def test_a_gpu_with_its_own_catalog_efficiency_gets_it_in_both_routes():
    """One rule: a device's own catalog matmul row prices its tensor cores in the per-kernel
    route as in the catalog roofs (the MI325X was 0.604 in one and the AMD mean 0.56 in the
    other); FP8 takes the device's matmul_fp8 row where it has one."""
    from chipfit.analysis.gpu_precision import device_efficiency
    from chipfit.hardware.catalog import load_catalog

    catalog, figs = load_catalog(), gpu_figures()
    for key, dtype, value in (("mi325x", "bfloat16", 0.604), ("mi300x", "bfloat16", 0.514),
                              ("mi250x-gcd", "bfloat16", 0.768), ("h100-sxm", "bfloat16", 0.803),
                              ("h100-sxm", "float8_e4m3fn", 0.709)):
        choice = gpu_precision(figs[key], dtype, "matmul")
        assert choice.efficiency == pytest.approx(value), (key, dtype)
        assert _roof_fraction(catalog[key], dtype) == pytest.approx(value), (key, dtype)
        assert choice.assumption == "" and f"catalog {key}" in choice.why, (key, dtype)
    assert device_efficiency(figs["mi325x"])[0] == catalog["mi325x"].efficiency("matmul").value


def test_a_gpu_without_a_measured_figure_says_its_efficiency_is_an_assumption():
    """No row of its own: the vendor figure; a row that borrows (the MI100's AMD mean, the
    MI210's CDNA2 family figure) says "an assumption" in both routes."""
    from chipfit.analysis.gpu_precision import TENSOR_EFFICIENCY, device_efficiency
    from chipfit.analysis.roofline import catalog_roofs
    from chipfit.hardware.catalog import load_catalog
    from chipfit.predictors.core import assumption_notes

    catalog, figs = load_catalog(), gpu_figures()
    assert device_efficiency(figs["l4"]) is None  # no catalog row: NVIDIA's median
    assert gpu_precision(figs["l4"], "bfloat16", "matmul").efficiency == \
        TENSOR_EFFICIENCY["NVIDIA"][0]
    for key, value in (("mi100", TENSOR_EFFICIENCY["AMD"][0]), ("mi210", 0.768),
                       ("mi250-gcd", 0.768)):
        choice = gpu_precision(figs[key], "bfloat16", "matmul")
        assert choice.efficiency == pytest.approx(value), key
        assert "an assumption" in choice.assumption and "searched" in choice.assumption, key
        notes = assumption_notes(catalog_roofs(catalog[key], "torch").efficiency)
        assert any(n.startswith("assumption: matmul efficiency") for n in notes), key
    # the CDNA2 family figure is the MI250X GCD's own measurement, not an assumption there
    assert gpu_precision(figs["mi210"], "bfloat16", "matmul").efficiency == \
        gpu_precision(figs["mi250x-gcd"], "bfloat16", "matmul").efficiency
    # an FP8 GEMM on a device with no FP8 row borrows the BF16 figure, and says so
    assert "borrowed from BF16" in gpu_precision(figs["mi300x"], "float8_e4m3fn",
                                                 "matmul").assumption


def test_measured_amd_and_tpu_gemm_fractions_are_the_published_ratios():
    """Each new device figure is its source's TFLOP/s over this catalog's peak; the TPU
    default for generations without a GEMM figure is the mean of the measured ones."""
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    for key, fraction in (("mi355x", 1565.0 / 2516.6), ("mi250x-gcd", 147.0 / 191.5),
                          ("tpu-v6e", 727.7 / 918)):
        row = catalog[key].efficiency("matmul")
        assert row.basis == "device" and "assumption" not in row.derivation.lower(), key
        assert row.value == pytest.approx(fraction, abs=1e-3), key
    mi100 = catalog["mi100"].efficiency("memory")  # a roofline HBM run on the part itself
    assert mi100.basis == "device" and mi100.value == pytest.approx(1041.0 / 1228.8, abs=1e-3)
    measured = [catalog[k].efficiency("matmul").value for k in ("tpu-v5e", "tpu-v6e", "tpu-v7")]
    for key in ("tpu-v4", "tpu-v5p"):
        row = catalog[key].efficiency("matmul")
        assert row.basis == "default:tpu" and "assumption" in row.derivation.lower(), key
        assert row.value == pytest.approx(sum(measured) / 3, abs=1e-3), key
