"""The eager CPU decode model: few-row linear layers over weights streamed from beyond the
private caches (fixed time per matrix + bytes / bandwidth, from calibrated curves)."""

from __future__ import annotations

import pytest

from chipfit.analysis.llm import LlmDevice, LlmRun, forward_ops, pass_time
from chipfit.hardware.cpu import cache_bytes
from chipfit.workloads.llm import arch_from_config, tiny_config

CURVES = (("float32/stream_bw", ((1.0, 10e9), (4.0, 5e9))),
          ("float32/stream_fixed", ((1.0, 30e-6), (4.0, 40e-6))),
          ("float32/stream_bw_tall", ((1.0, 5e9), (4.0, 2.5e9))),
          ("float32/stream_fixed_tall", ((1.0, 10e-6), (4.0, 10e-6))))


def _device(**kw) -> LlmDevice:
    base = dict(key="torch:cpu", name="cpu", kind="cpu", memory_bytes=16e9,
                matmul=(("float32", ((1e6, 50e9),)),), bandwidth=((1e3, 20e9),),
                overlapped=False, basis="calibrated", streamed=CURVES,
                private_cache_bytes=2e6, llc_bytes=32e6)
    return LlmDevice(**{**base, **kw})


def test_streamed_time_is_fixed_per_matrix_plus_bytes_over_bandwidth():
    dev = _device()
    assert dev.streamed_time("float32", 1, 10e6, 3, 100e6) == pytest.approx(3 * 30e-6 + 1e-3)
    assert dev.streamed_time("float32", 4, 10e6, 1, 100e6) == pytest.approx(40e-6 + 2e-3)
    # a head-shaped matrix takes its own curves
    assert dev.streamed_time("float32", 1, 10e6, 1, 100e6, tall=True) == pytest.approx(
        10e-6 + 2e-3)
    # a pass that stays in the private caches, more rows than measured, or no curves: None
    assert dev.streamed_time("float32", 1, 1e5, 1, 1e6) is None
    assert dev.streamed_time("float32", 64, 10e6, 1, 100e6) is None
    assert _device(streamed=()).streamed_time("float32", 1, 10e6, 1, 100e6) is None


def test_a_decode_step_counts_each_weight_matrix_once():
    arch = arch_from_config(tiny_config("llama", layers=4, hidden_size=512,
                                        intermediate_size=1376, vocab_size=16384))
    run = LlmRun(16, 8, 1, "float32", "float32")
    ops = forward_ops(arch, run, 1, 1, 20.0, 1, False)
    by_name = {op.name: op for op in ops}
    assert by_name["qkv"].matrices == 3 and by_name["o"].matrices == 1
    assert by_name["mlp"].matrices == 3 and by_name["lm_head"].matrices == 1
    step = pass_time(ops, _device(), "float32", 1, eager=False)
    weights = sum(op.count * op.bytes for op in ops if op.kind == "matmul")
    fixed = sum(op.count * op.matrices for op in ops if op.kind == "matmul")
    # at least the streamed matrices' fixed time and their bytes at the fastest bandwidth
    assert step.seconds >= fixed * 10e-6 + weights / 10e9
    # without the curves the same pass is priced by the cached roofline: faster here
    assert pass_time(ops, _device(streamed=()), "float32", 1, eager=False).seconds < step.seconds


def test_cache_sizes_come_from_the_kernel_where_it_says():
    private, llc = cache_bytes()
    assert private is None or private > 0
    assert llc is None or llc >= (private or 0) / 64
    assert cache_bytes(set()) == (None, None)
