"""The one check of a model config a user gives (a transformers ``config.json``), for
``chipfit llm`` and ``chipfit predict`` alike, before anything is sized or built.

A config is data from outside: each figure chipfit or transformers sizes a model by must be
the JSON type it means (an integer layer count, not ``"2"``, ``2.5``, ``true`` or NaN; a
boolean ``tie_word_embeddings``, not the string ``"false"``, which Python reads as true), and
within what this machine and the predictor can represent. ``predict`` builds the model on the
meta device (no weights, but one Python object per module, so 10^12 layers would build for
hours), then traces it: the bounds below are far above every published model and far below
what makes a build or a trace run away. Each defect is one line naming the field.

The rules, in order:
- the structure: a JSON object, nested at most :data:`MAX_DEPTH` deep, every number finite
  and within int64, no string that spells a boolean (``"true"``/``"false"``) anywhere;
- the schema (:data:`SCHEMA`): per known field, its type and range (``null`` allowed where
  transformers fills the figure in itself);
- across fields: experts per token at most the experts, mixture-of-experts blocks
  (layers x experts) at most :data:`MAX_EXPERT_BLOCKS`, the estimated parameter count at most
  :data:`MAX_PARAMS`.

Keys chipfit writes itself (``_name``, ``_source``: which model, where its figures come from)
are never taken from a user's file: the loader sets them from the file's own path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chipfit.errors import InvalidInputError

__all__ = ["MAX_BATCH", "MAX_DEPTH", "MAX_EXPERT_BLOCKS", "MAX_LAYERS", "MAX_PARAMS",
           "MAX_TENSOR_ELEMENTS", "MAX_TOKENS", "RESERVED_KEYS", "SCHEMA", "check_config",
           "check_run_size", "check_trace_size"]

#: Keys chipfit sets on a config it loaded (its name and where its figures come from).
RESERVED_KEYS = ("_name", "_source")
#: Deepest nesting of a config (real ones nest three levels: rope_scaling, quantization).
MAX_DEPTH = 32
#: Layers in one stack: published models have at most a few hundred.
MAX_LAYERS = 1024
#: Mixture-of-experts blocks (layers x experts): DeepSeek-V3 has 61 x 256, Switch-C 15 x 2048.
MAX_EXPERT_BLOCKS = 2**15
#: Estimated parameters: a thousand times the largest model published.
MAX_PARAMS = 10**15
#: Elements of the largest tensor a shape-only trace may describe: its bytes, even at 8 per
#: element, stay well inside the int64 sizes torch computes with.
MAX_TENSOR_ELEMENTS = 2**56
#: Sequences in one batch and tokens in one sequence, as given on the command line.
MAX_BATCH = 2**20
MAX_TOKENS = 2**24

_INT64 = 2**63


@dataclass(frozen=True)
class Field:
    """What one config field must be: ``kind`` int (from ``low``, default 1, to ``high``),
    bool, number (finite, at least 0), name (a short string), names (a list of them) or
    sizes (an int or a list of ints, each within ``low`` and ``high``)."""

    kind: str
    high: int = 0
    nullable: bool = True
    low: int = 1


def _sizes(high: int, *names: str, kind: str = "int", low: int = 1) -> dict[str, Field]:
    return {name: Field(kind, high, low=low) for name in names}


_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "num_decoder_layers",
               "num_encoder_layers", "encoder_layers", "decoder_layers")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
SCHEMA: dict[str, Field] = {
    "model_type": Field("name", nullable=False),
    "architectures": Field("names"),
    **_sizes(MAX_LAYERS, *_LAYER_KEYS),
    "depths": Field("sizes", MAX_LAYERS),
    **_sizes(2**18, "hidden_size", "n_embd", "d_model", "word_embed_proj_dim", "embed_dim"),
    "hidden_sizes": Field("sizes", 2**18),
    **_sizes(2**14, "num_attention_heads", "n_head", "num_key_value_heads",
             "encoder_attention_heads", "decoder_attention_heads", "multi_query_group_num"),
    "num_heads": Field("sizes", 2**14),
    **_sizes(2**16, "head_dim", "d_kv", "rotary_dim", "kv_channels"),
    **_sizes(2**21, "intermediate_size", "n_inner", "ffn_dim", "d_ff", "encoder_ffn_dim",
             "decoder_ffn_dim", "moe_intermediate_size", "shared_expert_intermediate_size"),
    "vocab_size": Field("int", 2**24),
    **_sizes(2**30, "max_position_embeddings", "n_positions", "n_ctx"),
    "sliding_window": Field("int", 2**30, low=0),  # 0 in a few configs: no window
    **_sizes(4096, *_EXPERT_KEYS, low=0),  # 0 in some dense configs of MoE families
    "num_experts_per_tok": Field("int", 4096),
    **_sizes(2**15, "image_size", "patch_size", kind="sizes"),  # 224 or [384, 384]
    "num_channels": Field("int", 2**12),
    **{name: Field("bool") for name in (
        "tie_word_embeddings", "is_encoder_decoder", "use_cache", "tie_encoder_decoder",
        "is_decoder", "add_cross_attention", "attention_bias", "mlp_bias", "use_bias", "bias",
        "qkv_bias", "scale_attn_weights", "use_parallel_residual", "parallel_attn",
        "new_decoder_architecture", "multi_query", "alibi", "output_attentions",
        "output_hidden_states", "return_dict", "torchscript")},
    **{name: Field("number") for name in (
        "rope_theta", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
        "initializer_range", "attention_dropout", "hidden_dropout_prob", "resid_pdrop",
        "embd_pdrop", "attn_pdrop", "dropout")},
    **{name: Field("name") for name in ("hidden_act", "activation_function", "torch_dtype",
                                        "dtype")},
}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_BOOL_WORDS = {"true", "false"}


def _refuse(origin: str, field: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"config {origin}: {field} {why}")


def _what(value: Any) -> str:
    """``value`` in words, short: a 400-digit number is not printed whole."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        digits = len(str(abs(value))) if abs(value) < 10**40 else 41
        return f"{value}" if digits <= 20 else f"a {digits}-digit number"
    if isinstance(value, float):
        return f"{value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if value is None:
        return "null"
    return f"a JSON {'object' if isinstance(value, Mapping) else 'list'}"


#: Tables of labels: their values are the user's words ("true" may well be a class name).
_LABEL_KEYS = {"id2label", "label2id"}


def _structure(cfg: Mapping[str, Any], origin: str) -> None:
    """Depth, finite numbers within int64, no boolean spelled as a string: anywhere."""
    from chipfit.paths import json_field

    stack: list[tuple[tuple[Any, ...], Any]] = [((str(k),), v) for k, v in cfg.items()]
    while stack:
        trail, value = stack.pop()
        if len(trail) > MAX_DEPTH:
            raise _refuse(origin, str(trail[0]), f"is nested more than {MAX_DEPTH} levels deep; "
                          "no model config is")
        if isinstance(value, Mapping):
            if trail[-1] not in _LABEL_KEYS:
                stack.extend(((*trail, str(k)), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend(((*trail, i), v) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise _refuse(origin, json_field(trail), f"is {value!r}; a config holds finite numbers")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT64:
            raise _refuse(origin, json_field(trail), f"is {_what(value)}, beyond any figure a "
                          "model has (at most 2^63)")
        elif isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            raise _refuse(origin, json_field(trail), f"is the string {value!r}, not a boolean: "
                          f"write {value.strip().lower()} without quotes")


def _field(origin: str, key: str, spec: Field, value: Any) -> None:
    if value is None:
        if not spec.nullable:
            raise _refuse(origin, key, "is missing: is this a transformers config.json?")
        return
    kind = spec.kind
    if kind in ("int", "sizes"):
        items = value if kind == "sizes" and isinstance(value, list) else [value]
        for item in items:
            whole = "a positive integer" if spec.low == 1 else f"an integer from {spec.low}"
            if isinstance(item, bool) or not isinstance(item, int):
                raise _refuse(origin, key, f"must be {whole}, got {_what(item)}")
            if not spec.low <= item <= spec.high:
                raise _refuse(origin, key, f"must be {whole} at most {spec.high:,}, got "
                              f"{_what(item)}")
        if key == "depths" and sum(items) > spec.high:  # the layers of every stage
            raise _refuse(origin, key, f"adds up to {sum(items):,}, more than {spec.high:,}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _refuse(origin, key, f"must be true or false, got {_what(value)}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _refuse(origin, key, f"must be a number of at least 0, got {_what(value)}")
    elif kind == "name":
        if not isinstance(value, str) or not _NAME.match(value):
            raise _refuse(origin, key, f"must be a name (letters, digits, _ . -), got "
                          f"{_what(value)}")
    elif kind == "names":
        if not isinstance(value, list) or len(value) > 16 or not all(
                isinstance(v, str) and v.isidentifier() for v in value):
            raise _refuse(origin, key, f"must be a list of class names, got {_what(value)}")


def _first(cfg: Mapping[str, Any], *keys: str, default: int = 0) -> int:
    return next((cfg[k] for k in keys if isinstance(cfg.get(k), int)), default)


def estimated_params(cfg: Mapping[str, Any]) -> int:
    """A rough parameter count from whichever size fields the config has (what bounds the
    model; :class:`chipfit.workloads.llm.LlmArch` counts decoder-only models exactly)."""
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model", default=1)
    layers = sum(cfg[k] for k in _LAYER_KEYS if isinstance(cfg.get(k), int)) or 1
    inter = _first(cfg, "intermediate_size", "n_inner", "ffn_dim", "d_ff", "moe_intermediate_size",
                   default=4 * hidden)
    experts = _first(cfg, *_EXPERT_KEYS, default=1)
    vocab = _first(cfg, "vocab_size", default=0)
    positions = _first(cfg, "max_position_embeddings", "n_positions", default=0)
    return layers * (4 * hidden * hidden + 3 * hidden * inter * experts) + 2 * vocab * hidden \
        + positions * hidden


def check_config(cfg: Any, origin: str = "") -> dict[str, Any]:
    """``cfg`` as a dict if it is a usable model config, else an InvalidInputError naming the
    field (``origin``: the file or model name, for the message)."""
    origin = origin or "given"
    if not isinstance(cfg, Mapping):
        raise InvalidInputError(f"config {origin} is not a transformers config (a JSON object)")
    _structure(cfg, origin)
    for key, spec in SCHEMA.items():
        if key in cfg or not spec.nullable:
            _field(origin, key, spec, cfg.get(key))
    experts = _first(cfg, *_EXPERT_KEYS, default=1)
    per_token = cfg.get("num_experts_per_tok")
    if isinstance(per_token, int) and per_token > max(experts, 1) and experts > 1:
        raise _refuse(origin, "num_experts_per_tok", f"({per_token}) is more than the {experts} "
                      "experts")
    layers = max((cfg[k] for k in _LAYER_KEYS if isinstance(cfg.get(k), int)), default=1)
    if layers * experts > MAX_EXPERT_BLOCKS:
        raise _refuse(origin, "num_hidden_layers x experts", f"is {layers * experts:,} expert "
                      f"blocks, more than the {MAX_EXPERT_BLOCKS:,} chipfit sizes")
    params = estimated_params(cfg)
    if params > MAX_PARAMS:
        raise InvalidInputError(f"config {origin}: its figures make about {params:.2g} "
                                f"parameters, more than the {MAX_PARAMS:.0e} chipfit sizes; "
                                "check num_hidden_layers, hidden_size and intermediate_size")
    return dict(cfg)


def check_run_size(flag: str, value: Any, high: int) -> int:
    """A size given on the command line (``--batch``, ``--seq-len``): a positive integer of
    at most ``high``, else one line naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{flag} must be a positive integer, got {_what(value)}")
    if value > high:
        raise InvalidInputError(f"{flag} {_what(value)} is more than the {high:,} chipfit sizes")
    return value


def check_trace_size(cfg: Mapping[str, Any], batch: int, seq_len: int) -> None:
    """A shape-only trace of ``cfg`` at ``batch`` x ``seq_len`` describes no tensor larger than
    :data:`MAX_TENSOR_ELEMENTS` (the logits, the widest activation, the attention scores)."""
    check_run_size("--batch", batch, MAX_BATCH)
    check_run_size("--seq-len", seq_len, MAX_TOKENS)
    widest = max(_first(cfg, "vocab_size", default=1),
                 _first(cfg, "intermediate_size", "n_inner", "ffn_dim", "d_ff", default=1),
                 _first(cfg, "hidden_size", "n_embd", "d_model", default=1), seq_len)
    heads = _first(cfg, "num_attention_heads", "n_head", default=1)
    image = cfg.get("image_size") or 1
    pixels = image * image if isinstance(image, int) else math.prod(image[:2])
    elements = batch * max(seq_len * widest, heads * seq_len * seq_len,
                           pixels * _first(cfg, "num_channels", default=3))
    if elements > MAX_TENSOR_ELEMENTS:
        raise InvalidInputError(f"--batch {batch} x --seq-len {seq_len} makes tensors of "
                                f"{elements:.3g} elements with this config, more than the "
                                f"{MAX_TENSOR_ELEMENTS:.3g} a trace describes; use a smaller "
                                "batch or sequence")
