"""The language-model workload: decoder-only configs, shape-only tracing, real greedy generation.

Architectures come from a transformers ``config.json`` (any path) or from the built-in table
below, whose figures are copied from each model's published ``config.json`` on the Hugging
Face Hub (cited per entry; nothing is downloaded at run time). :func:`arch_from_config` reads
a config as a plain dict, so sizing a 70B model imports neither torch nor transformers.

With torch, :func:`build_model` instantiates the transformers model from the same config on
``meta`` (shapes only: no weight is allocated, whatever the size) or on a real device with
random weights; :func:`greedy_generate` runs prefill then one-token decode steps against a
real KV cache (``DynamicCache``), timing each phase with the device fenced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipfit.cost.llm_arch import LlmArch  # re-exported: the value analysis sizes
from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.paths import CONFIG_FILE_LIMIT, read_user_json
from chipfit.workloads.config_schema import RESERVED_KEYS, check_config

__all__ = ["BUILTIN_CONFIGS", "Generation", "LlmArch", "arch_from_config", "build_model",
           "count_module_calls", "count_ops", "greedy_generate", "is_decoder_config", "load_arch",
           "load_config", "no_cache_greedy", "tiny_config"]


_HUB = "huggingface.co/{}/blob/main/config.json"

# Published architecture figures (each model's config.json on the Hub; the repository named in
# "_source"). Only the keys chipfit needs (and transformers needs to build the model) are kept.
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {"_source": _HUB.format("meta-llama/Llama-3.2-1B"), "model_type": "llama",
                     "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                     "vocab_size": 128256, "tie_word_embeddings": True,
                     "max_position_embeddings": 131072, "rope_theta": 500000.0},
    "llama-3.1-8b": {"_source": _HUB.format("meta-llama/Llama-3.1-8B"), "model_type": "llama",
                     "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                     "tie_word_embeddings": False, "max_position_embeddings": 131072,
                     "rope_theta": 500000.0},
    "llama-3.1-70b": {"_source": _HUB.format("meta-llama/Llama-3.1-70B"), "model_type": "llama",
                      "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                      "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
                      "tie_word_embeddings": False, "max_position_embeddings": 131072,
                      "rope_theta": 500000.0},
    "llama-2-7b": {"_source": _HUB.format("meta-llama/Llama-2-7b-hf"), "model_type": "llama",
                   "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                   "tie_word_embeddings": False, "max_position_embeddings": 4096},
    "llama-2-70b": {"_source": _HUB.format("meta-llama/Llama-2-70b-hf"), "model_type": "llama",
                    "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                    "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32000,
                    "tie_word_embeddings": False, "max_position_embeddings": 4096},
    "mistral-7b": {"_source": _HUB.format("mistralai/Mistral-7B-v0.1"), "model_type": "mistral",
                   "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                   "tie_word_embeddings": False, "max_position_embeddings": 32768,
                   "sliding_window": 4096},
    "qwen2.5-7b": {"_source": _HUB.format("Qwen/Qwen2.5-7B"), "model_type": "qwen2",
                   "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "tie_word_embeddings": False, "max_position_embeddings": 131072},
    "mixtral-8x7b": {"_source": _HUB.format("mistralai/Mixtral-8x7B-v0.1"),
                     "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
                     "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8,
                     "num_experts_per_tok": 2, "tie_word_embeddings": False,
                     "max_position_embeddings": 32768},
    "gemma-2b": {"_source": _HUB.format("google/gemma-2b"), "model_type": "gemma",
                 "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18,
                 "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256,
                 "vocab_size": 256000, "tie_word_embeddings": True,
                 "max_position_embeddings": 8192},
    "gpt-j-6b": {"_source": _HUB.format("EleutherAI/gpt-j-6b"), "model_type": "gptj",
                 "n_embd": 4096, "n_layer": 28, "n_head": 16, "rotary_dim": 64,
                 "vocab_size": 50400, "n_positions": 2048, "tie_word_embeddings": False},
    "gpt2": {"_source": _HUB.format("openai-community/gpt2"), "model_type": "gpt2",
             "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
             "n_positions": 1024},
    "opt-1.3b": {"_source": _HUB.format("facebook/opt-1.3b"), "model_type": "opt",
                 "hidden_size": 2048, "ffn_dim": 8192, "num_hidden_layers": 24,
                 "num_attention_heads": 32, "vocab_size": 50272,
                 "max_position_embeddings": 2048, "word_embed_proj_dim": 2048},
}
ALIASES = {"llama-3.1-8b-instruct": "llama-3.1-8b", "llama-3.1-70b-instruct": "llama-3.1-70b",
           "mistral-7b-v0.1": "mistral-7b", "qwen2.5-7b-instruct": "qwen2.5-7b",
           "mixtral-8x7b-v0.1": "mixtral-8x7b"}
# model_type -> (hidden, layers, heads, kv heads, intermediate, max positions) key names;
# families not listed use the llama-style names
_GPT_KEYS = ("n_embd", "n_layer", "n_head", "n_head", "n_inner", "n_positions")
_KEYS = {"gpt2": _GPT_KEYS, "gptj": _GPT_KEYS,
         "opt": ("hidden_size", "num_hidden_layers", "num_attention_heads",
                 "num_attention_heads", "ffn_dim", "max_position_embeddings")}
_LLAMA_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "max_position_embeddings")
_NOT_DECODER = {"bert", "roberta", "t5", "bart", "mt5", "vit", "resnet", "whisper", "distilbert",
                "deberta", "deberta-v2", "electra", "albert", "xlm-roberta", "mbart", "pegasus"}
_UNGATED = {"gpt2", "gptj", "opt", "gpt_neox", "falcon", "bloom", "phi"}
_BIASED = {"gpt2", "gptj", "opt", "qwen2", "qwen2_moe", "bloom", "phi"}


def load_config(model: str) -> dict[str, Any]:
    """A built-in name or a ``config.json`` path (a directory holding one also works)."""
    key = ALIASES.get(model.lower(), model.lower())
    if key in BUILTIN_CONFIGS:
        return {"_name": key, **BUILTIN_CONFIGS[key]}
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        if model.endswith(".json") or "/" in model:
            raise InvalidInputError(f"no such config file {model!r}: pass a built-in model name "
                                    "or the path of a transformers config.json")
        raise UnknownNameError("model", model, BUILTIN_CONFIGS)
    data = check_config(read_user_json(path, CONFIG_FILE_LIMIT, "config"), str(path))
    # a Hub-style folder names the model (llama-7b/config.json); any other file its own stem.
    # The name and the source are chipfit's to say: a file's own "_source" claims nothing.
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return {**{k: v for k, v in data.items() if k not in RESERVED_KEYS}, "_name": name,
            "_source": str(path)}


def is_decoder_config(cfg: Mapping[str, Any]) -> bool:
    """Whether a (checked) config describes a decoder-only model, as far as its model type
    says: encoders, encoder-decoders and vision models are not."""
    mtype = str(cfg.get("model_type", "")).lower()
    return bool(mtype) and mtype not in _NOT_DECODER and not cfg.get("is_encoder_decoder")


def _int(cfg: Mapping[str, Any], key: str, default: Any = None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"config {cfg.get('_name', '')!r}: {key} must be a positive "
                                f"integer, got {value!r}")
    return value


def arch_from_config(cfg: Mapping[str, Any]) -> LlmArch:
    """The :class:`LlmArch` of a transformers config dict; refuses non-decoder models."""
    if not isinstance(cfg, Mapping):
        raise InvalidInputError("a model config must be a JSON object")
    check_config(cfg, str(cfg.get("_name", "")))  # every figure's type and range, named
    mtype = str(cfg.get("model_type", "")).lower()
    if mtype and not is_decoder_config(cfg):
        raise InvalidInputError(f"{cfg.get('_name', mtype)!r} is a {mtype or 'non-decoder'} "
                                "model: chipfit llm takes decoder-only language models")
    if not mtype:
        raise InvalidInputError("config has no model_type: is it a transformers config.json?")
    h_key, l_key, a_key, kv_key, i_key, p_key = _KEYS.get(mtype, _LLAMA_KEYS)
    hidden = _int(cfg, h_key)
    heads = _int(cfg, a_key)
    kv = _int(cfg, kv_key, heads) if cfg.get(kv_key) is not None else heads
    inter = _int(cfg, i_key) if cfg.get(i_key) is not None else 4 * hidden
    head_dim = _int(cfg, "head_dim") if cfg.get("head_dim") is not None else hidden // heads
    experts = next((_int(cfg, k) for k in ("num_local_experts", "num_experts")
                    if cfg.get(k) is not None), 1)
    per_tok = (_int(cfg, "num_experts_per_tok") if cfg.get("num_experts_per_tok") is not None
               else (2 if experts > 1 else 1))
    if mtype == "qwen2_moe" and cfg.get("moe_intermediate_size") is not None:
        inter = _int(cfg, "moe_intermediate_size")  # routed experts are narrower than dense
    positions = _int(cfg, p_key) if cfg.get(p_key) is not None else 0
    if head_dim <= 0 or per_tok > experts:
        raise InvalidInputError(f"config {cfg.get('_name', mtype)!r}: inconsistent heads/"
                                "experts figures; is it a real transformers config.json?")
    return LlmArch(
        name=str(cfg.get("_name", mtype)), family=mtype, layers=_int(cfg, l_key), hidden=hidden,
        heads=heads, kv_heads=int(kv), head_dim=int(head_dim), intermediate=int(inter),
        vocab=_int(cfg, "vocab_size"), gated_mlp=mtype not in _UNGATED, experts=int(experts),
        experts_per_token=int(per_tok),
        tied_embeddings=(mtype in ("gpt2", "opt") if cfg.get("tie_word_embeddings") is None
                         else cfg["tie_word_embeddings"]),  # a real boolean (check_config)
        learned_positions=int(positions) if mtype in ("gpt2", "opt") else 0,
        bias=mtype in _BIASED, max_context=int(positions),
        source=str(cfg.get("_source", "")))


def load_arch(model: str) -> LlmArch:
    """The architecture of a built-in model name or a ``config.json`` path."""
    return arch_from_config(load_config(model))


def tiny_config(family: str = "llama", layers: int = 2, **overrides: Any) -> dict[str, Any]:
    """A small config of ``family`` for real generation on a CPU in tests (random weights)."""
    if family in ("gpt2", "gptj"):
        base = {"model_type": family, "n_embd": 64, "n_layer": layers, "n_head": 4,
                "vocab_size": 256, "n_positions": 512}
        if family == "gptj":
            base["rotary_dim"] = 8
    else:
        base = {"model_type": family, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
                "vocab_size": 256, "max_position_embeddings": 512, "tie_word_embeddings": False}
        if family == "mixtral":
            base.update(num_local_experts=4, num_experts_per_tok=2)
    return {"_name": f"tiny-{family}", **base, **overrides}


def _hf_config(cfg: Mapping[str, Any]) -> Any:
    from transformers import AutoConfig

    kwargs = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "model_type"}
    for key in ("architectures", "transformers_version", "torch_dtype", "dtype",
                "quantization_config", "auto_map"):
        kwargs.pop(key, None)
    try:
        config = AutoConfig.for_model(cfg["model_type"], **kwargs)
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(f"transformers cannot build model_type "
                                f"{cfg.get('model_type')!r}: {exc}") from None
    config.use_cache = True
    return config


def build_model(cfg: Mapping[str, Any], device: str = "meta", dtype: str = "float32",
                seed: int = 0) -> Any:
    """The transformers causal LM of ``cfg``: on ``meta`` shapes only (nothing allocated),
    elsewhere with random weights (seeded), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    config = _hf_config(cfg)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    return model.eval()


@dataclass(frozen=True)
class Generation:
    """Greedy generation: the token ids and the fenced wall-clock time of each phase."""

    tokens: tuple[tuple[int, ...], ...]  # generated ids per sequence
    prefill_s: float
    step_s: tuple[float, ...]  # one per decode step after the first token
    source: str = "measured"

    @property
    def decode_tokens_per_s(self) -> float:
        """Per-sequence decode rate: steps over their total time."""
        total = sum(self.step_s)
        return len(self.step_s) / total if total > 0 else float("nan")


def greedy_generate(model: Any, input_ids: Any, gen_len: int,
                    wait: Callable[[Any], None] = lambda _: None,
                    clock: Callable[[], float] = time.perf_counter) -> Generation:
    """Prefill ``input_ids`` (batch x prompt) then decode ``gen_len - 1`` more tokens one at a
    time against the KV cache, argmax each time. ``wait(out)`` fences the device."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    out_ids = []
    with torch.inference_mode():
        t0 = clock()
        out = model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        wait(nxt)
        prefill = clock() - t0
        out_ids.append(nxt)
        steps = []
        for _ in range(gen_len - 1):
            t0 = clock()
            out = model(input_ids=nxt, cache=cache, use_cache=True)
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            wait(nxt)
            steps.append(clock() - t0)
            out_ids.append(nxt)
    ids = torch.cat(out_ids, dim=1).tolist()
    return Generation(tuple(tuple(r) for r in ids), prefill, tuple(steps))


def no_cache_greedy(model: Any, input_ids: Any, gen_len: int) -> list[list[int]]:
    """The same greedy decode recomputing the whole sequence each step (no KV cache)."""
    import torch

    ids = input_ids
    with torch.inference_mode():
        for _ in range(gen_len):
            logits = model(input_ids=ids, use_cache=False).logits
            ids = torch.cat([ids, logits[:, -1, :].argmax(-1, keepdim=True)], dim=1)
    return ids[:, input_ids.shape[1]:].tolist()


def count_ops(model: Any, input_ids: Any, gen_len: int = 2) -> tuple[int, int]:
    """ATen operators dispatched by (prefill, one decode step): what an eager stack pays its
    per-op host cost for. Counted with a dispatch mode, so it works on meta models too."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import DynamicCache

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            _Count.n += 1
            return func(*args, **(kwargs or {}))

    counts = []
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        with _Count():
            model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        counts.append(_Count.n)
        nxt = input_ids[:, -1:]
        _Count.n = 0
        with _Count():
            model(input_ids=nxt, cache=cache, use_cache=True)
        counts.append(_Count.n)
    return counts[0], counts[1]


def count_module_calls(model: Any, input_ids: Any) -> int:
    """``nn.Module`` calls of one decode step after a prefill of ``input_ids``: eager Python
    pays a per-call cost for each (hooks, argument handling) beyond the ATen dispatch."""
    import torch
    from transformers import DynamicCache

    calls = [0]

    def _hook(module: Any, args: Any) -> None:
        calls[0] += 1

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        handle = torch.nn.modules.module.register_module_forward_pre_hook(_hook)
        try:
            model(input_ids=input_ids[:, -1:], cache=cache, use_cache=True)
        finally:
            handle.remove()
    return calls[0]
