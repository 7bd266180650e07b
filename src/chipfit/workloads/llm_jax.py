"""Greedy generation of a Llama-family decoder in JAX, with a fixed-size KV cache.

The weights are the transformers model's own (copied from torch), so the JAX run generates
the same tokens; prefill and one jitted decode step are timed with the device fenced
(``block_until_ready``). Llama-style families only (RMSNorm, rotary positions, SwiGLU,
grouped-query attention): llama, mistral and qwen2 (with q/k/v biases). Mistral's sliding
window is not applied: it changes nothing while prompt + generation fit in the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from chipfit.errors import UnsupportedError
from chipfit.workloads.llm import Generation

__all__ = ["JAX_FAMILIES", "greedy_generate_jax", "last_logits_jax", "params_from_torch"]

JAX_FAMILIES = ("llama", "mistral", "qwen2")


def params_from_torch(model: Any) -> dict[str, Any]:
    """The model's weights as JAX arrays (float32), keyed by their transformers names."""
    import jax.numpy as jnp

    family = model.config.model_type
    if family not in JAX_FAMILIES:
        raise UnsupportedError(f"JAX generation covers {', '.join(JAX_FAMILIES)}, not {family}")
    return {k: jnp.asarray(v.detach().float().cpu().numpy())
            for k, v in model.state_dict().items()}


def _rms(x: Any, w: Any, eps: float) -> Any:
    import jax.numpy as jnp

    return x * (1.0 / jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)) * w


def _rope(x: Any, pos: Any, theta: float) -> Any:
    """Rotary embedding as transformers' Llama applies it (rotate_half convention)."""
    import jax.numpy as jnp

    hd = x.shape[-1]
    inv = 1.0 / (theta ** (jnp.arange(0, hd, 2, dtype=jnp.float32) / hd))
    ang = pos[:, None].astype(jnp.float32) * inv[None, :]  # T x hd/2
    cos = jnp.concatenate([jnp.cos(ang)] * 2, axis=-1)[None, None]
    sin = jnp.concatenate([jnp.sin(ang)] * 2, axis=-1)[None, None]
    half = hd // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def _linear(p: Mapping[str, Any], name: str, x: Any) -> Any:
    y = x @ p[f"{name}.weight"].T
    bias = p.get(f"{name}.bias")
    return y if bias is None else y + bias


def _layer(p: Mapping[str, Any], i: int, x: Any, ck: Any, cv: Any, start: Any,
           cfg: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    import jax
    import jax.numpy as jnp

    pre = f"model.layers.{i}."
    b, t, _ = x.shape
    heads, kvh, hd = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    h = _rms(x, p[pre + "input_layernorm.weight"], cfg["eps"])
    pos = start + jnp.arange(t)

    def proj(name: str, n: int) -> Any:
        return _linear(p, pre + f"self_attn.{name}", h).reshape(b, t, n, hd).transpose(0, 2, 1, 3)

    q = _rope(proj("q_proj", heads), pos, cfg["theta"])
    k = _rope(proj("k_proj", kvh), pos, cfg["theta"])
    v = proj("v_proj", kvh)
    ck = jax.lax.dynamic_update_slice(ck, k, (0, 0, start, 0))
    cv = jax.lax.dynamic_update_slice(cv, v, (0, 0, start, 0))
    rep = heads // kvh
    keys, vals = jnp.repeat(ck, rep, axis=1), jnp.repeat(cv, rep, axis=1)
    scores = (q @ keys.transpose(0, 1, 3, 2)) / jnp.sqrt(float(hd))
    kpos = jnp.arange(ck.shape[2])
    scores = jnp.where(kpos[None, None, None, :] <= pos[None, None, :, None], scores, -jnp.inf)
    att = jax.nn.softmax(scores, axis=-1) @ vals
    x = x + _linear(p, pre + "self_attn.o_proj", att.transpose(0, 2, 1, 3).reshape(b, t, -1))
    h = _rms(x, p[pre + "post_attention_layernorm.weight"], cfg["eps"])
    gate = jax.nn.silu(_linear(p, pre + "mlp.gate_proj", h)) * _linear(p, pre + "mlp.up_proj", h)
    return x + _linear(p, pre + "mlp.down_proj", gate), ck, cv


def _forward(p: Mapping[str, Any], ids: Any, cache: tuple[Any, Any], start: Any,
             cfg: Mapping[str, Any]) -> tuple[Any, tuple[Any, Any]]:
    """Logits of the last position and the updated caches (layers x B x kv x max x hd)."""
    ks, vs = cache
    x = p["model.embed_tokens.weight"][ids]
    new_k, new_v = [], []
    for i in range(cfg["layers"]):
        x, k, v = _layer(p, i, x, ks[i], vs[i], start, cfg)
        new_k.append(k)
        new_v.append(v)
    x = _rms(x[:, -1:, :], p["model.norm.weight"], cfg["eps"])
    head = p.get("lm_head.weight", p["model.embed_tokens.weight"])
    import jax.numpy as jnp

    return (x @ head.T)[:, -1, :], (jnp.stack(new_k), jnp.stack(new_v))


def _settings(config: Any) -> dict[str, Any]:
    heads = config.num_attention_heads
    hd = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, Mapping) else None
    return {"layers": config.num_hidden_layers, "heads": heads,
            "kv_heads": config.num_key_value_heads or heads, "head_dim": hd,
            "eps": config.rms_norm_eps,
            "theta": float(theta or getattr(config, "rope_theta", 10000.0))}


def greedy_generate_jax(model: Any, input_ids: Any, gen_len: int,
                        clock: Callable[[], float] = time.perf_counter) -> Generation:
    """Prefill then ``gen_len - 1`` jitted one-token decode steps against a fixed-size KV
    cache, argmax each time; the weights are ``model``'s (a transformers Llama-family model)."""
    import jax
    import jax.numpy as jnp

    params = params_from_torch(model)
    cfg = _settings(model.config)
    ids = jnp.asarray(input_ids.cpu().numpy())
    b, t = ids.shape
    shape = (cfg["layers"], b, cfg["kv_heads"], t + gen_len, cfg["head_dim"])
    cache = (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
    step = jax.jit(lambda p, x, c, s: _forward(p, x, c, s, cfg))
    step(params, ids[:, -1:], cache, t)[0].block_until_ready()  # compile the decode step
    prefill = jax.jit(lambda p, x, c: _forward(p, x, c, 0, cfg))
    prefill(params, ids, cache)[0].block_until_ready()  # compile the prefill
    t0 = clock()
    logits, cache = prefill(params, ids, cache)
    nxt = jnp.argmax(logits, axis=-1)[:, None].block_until_ready()
    pre_s = clock() - t0
    out, steps = [nxt], []
    for i in range(gen_len - 1):
        t0 = clock()
        logits, cache = step(params, nxt, cache, t + i)
        nxt = jnp.argmax(logits, axis=-1)[:, None].block_until_ready()
        steps.append(clock() - t0)
        out.append(nxt)
    tokens = jnp.concatenate(out, axis=1).tolist()
    return Generation(tuple(tuple(r) for r in tokens), pre_s, tuple(steps))


def last_logits_jax(model: Any, input_ids: Any) -> Any:
    """The last position's logits of a JAX prefill (numpy array): checks the port."""
    import jax.numpy as jnp
    import numpy as np

    cfg = _settings(model.config)
    ids = jnp.asarray(input_ids.cpu().numpy())
    b, t = ids.shape
    shape = (cfg["layers"], b, cfg["kv_heads"], t, cfg["head_dim"])
    cache = (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
    return np.asarray(_forward(params_from_torch(model), ids, cache, 0, cfg)[0])
