"""Real greedy generation with a KV cache on the CPU, and shape-only 70B tracing (real torch)."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from chipfit.workloads.llm import (  # noqa: E402
    arch_from_config,
    build_model,
    count_ops,
    greedy_generate,
    no_cache_greedy,
    tiny_config,
)


@pytest.mark.parametrize("family", ["llama", "mixtral", "gpt2", "qwen2"])
def test_kv_cache_decode_matches_a_no_cache_forward(family):
    cfg = tiny_config(family)
    model = build_model(cfg, "cpu", seed=3)
    ids = torch.randint(0, cfg["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(1))
    gen = greedy_generate(model, ids, gen_len=8)
    assert [list(t) for t in gen.tokens] == no_cache_greedy(model, ids, 8)
    assert len(gen.step_s) == 7 and gen.prefill_s > 0 and gen.source == "measured"
    # the arithmetic sizes the same model transformers builds (biases aside for gpt2)
    params = sum(p.numel() for p in model.parameters())
    assert arch_from_config(cfg).params == pytest.approx(params, rel=0.01 if family == "gpt2" else 0)


def test_cached_step_logits_equal_the_full_forward():
    """One decode step against the KV cache gives the logits of a full no-cache forward; the
    same token without the cache (no context) does not, so the cache is really used."""
    from transformers import DynamicCache

    cfg = tiny_config("llama")
    model = build_model(cfg, "cpu", seed=5)
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(input_ids=ids[:, :-1], cache=cache, use_cache=True)
        step = model(input_ids=ids[:, -1:], cache=cache, use_cache=True).logits[:, -1]
        full = model(input_ids=ids, use_cache=False).logits[:, -1]
        alone = model(input_ids=ids[:, -1:], use_cache=False).logits[:, -1]
    assert torch.allclose(step, full, atol=1e-5)
    assert not torch.allclose(step, alone, atol=1e-3)
    prefill_ops, step_ops = count_ops(model, ids)
    assert prefill_ops > 0 and step_ops > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status: Linux")
def test_70b_builds_on_meta_under_a_small_memory_limit():
    """In this process (a fresh interpreter cost more than the build): the data segment may
    grow by at most 3 GiB while the 70B model is built (RLIMIT_DATA over what this process
    already holds, restored after), and its resident memory by under 300 MB."""
    import resource

    import psutil

    from chipfit.workloads.llm import load_arch, load_config

    build_model(tiny_config("llama"), "meta")  # imports done before measuring
    with open("/proc/self/status") as f:
        data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    old = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data + 3 * 2**30
    if old[1] != resource.RLIM_INFINITY:
        limit = min(limit, old[1])
    before = psutil.Process().memory_info().rss
    resource.setrlimit(resource.RLIMIT_DATA, (limit, old[1]))
    try:
        m = build_model(load_config("llama-3.1-70b"), "meta", "bfloat16")
        delta = psutil.Process().memory_info().rss - before
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, old)
    n = sum(p.numel() for p in m.parameters())
    assert all(p.is_meta for p in m.parameters())
    assert n == load_arch("llama-3.1-70b").params == 70553706496, n
    assert delta < 300e6, delta


def test_eager_op_count_per_layer_is_counted():
    from chipfit.pipelines.llm import eager_ops_per_layer

    per_layer = eager_ops_per_layer("llama")
    assert 10 < per_layer < 200


@pytest.mark.parametrize("family, extra", [("llama", {"rope_theta": 500000.0}), ("qwen2", {})])
def test_jax_generation_matches_torch_token_for_token(family, extra):
    pytest.importorskip("jax")
    from chipfit.workloads.llm_jax import greedy_generate_jax, last_logits_jax

    model = build_model(tiny_config(family, **extra), "cpu", seed=4)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(input_ids=ids, use_cache=False).logits[:, -1].numpy()
    assert abs(last_logits_jax(model, ids) - want).max() < 1e-4
    torch_gen = greedy_generate(model, ids, 8)
    jax_gen = greedy_generate_jax(model, ids, 8)
    assert jax_gen.tokens == torch_gen.tokens
    assert len(jax_gen.step_s) == 7 and jax_gen.source == "measured"


def test_jax_generation_refuses_other_families():
    pytest.importorskip("jax")
    from chipfit.errors import UnsupportedError
    from chipfit.workloads.llm_jax import greedy_generate_jax

    model = build_model(tiny_config("gpt2"), "cpu")
    with pytest.raises(UnsupportedError, match="llama"):
        greedy_generate_jax(model, torch.zeros((1, 4), dtype=torch.long), 2)


def test_eager_host_overhead_is_measured_per_layer():
    from chipfit.pipelines.llm import eager_host_overhead

    base, per_layer = eager_host_overhead(steps=8)
    assert base >= 0 and per_layer > 0  # real steps take time; no speed is asserted
