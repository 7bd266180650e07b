"""Property tests of the model-config boundary and the bounded file reader.

- A real config (the built-ins, and Hub-style GPT-2, BERT, T5 and ViT configs) mutated any
  way at all, in its values or in its JSON text, goes through the same doors ``chipfit llm``
  and ``chipfit predict`` use; each answers a valid result or chipfit's one-line usage error,
  never another exception.
- The bounded reader, given any content, limit and kind of file, returns exactly the content
  or a one-line error; it never reads past its limit and never blocks.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipfit.errors import ChipfitError, UsageError
from chipfit.paths import read_user_file, read_user_json
from chipfit.workloads.config_schema import check_config, check_trace_size
from chipfit.workloads.llm import BUILTIN_CONFIGS, LlmArch, arch_from_config, load_config

FAST = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

HUB = {
    "gpt2": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 768,
             "n_layer": 12, "n_head": 12, "n_inner": None, "n_positions": 1024,
             "vocab_size": 50257, "activation_function": "gelu_new",
             "layer_norm_epsilon": 1e-05, "bos_token_id": 50256, "eos_token_id": 50256,
             "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}},
    "bert": {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 768,
             "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
             "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0},
    "t5": {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 512,
           "d_ff": 2048, "d_kv": 64, "num_heads": 8, "num_layers": 6, "num_decoder_layers": 6,
           "vocab_size": 32128, "is_encoder_decoder": True, "relative_attention_num_buckets": 32},
    "vit": {"architectures": ["ViTForImageClassification"], "model_type": "vit",
            "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "image_size": 224, "patch_size": 16, "num_channels": 3,
            "id2label": {"0": "false", "1": "true"}, "label2id": {"false": 0, "true": 1}},
}
BASES = {**{k: {kk: vv for kk, vv in v.items() if kk != "_source"}
            for k, v in BUILTIN_CONFIGS.items()}, **HUB}
KEYS = sorted({k for cfg in BASES.values() for k in cfg} | {
    "num_key_value_heads", "head_dim", "num_local_experts", "num_experts_per_tok",
    "tie_word_embeddings", "sliding_window", "rope_scaling", "architectures", "depths"})

_SCALARS = st.one_of(
    st.integers(-10**6, 10**6), st.integers(-2**70, 2**70), st.sampled_from([0, 1, -1, 2**63, 10**40]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.sampled_from(["true", "false", "True", "2", "", "llama", "x" * 300, "LlamaForCausalLM",
                     "AutoTokenizer", "../etc/passwd", "1e400", "NaN"]),
    st.text(max_size=12))
VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


MUTATION = st.tuples(st.sampled_from(KEYS), st.one_of(VALUES, st.integers(1, 80).map(_deep)))


def _one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    assert len(text) < 600, text


def _through_llm(cfg: dict[str, Any]) -> None:
    try:
        arch = arch_from_config({"_name": "mutant", **cfg})
    except UsageError as exc:
        _one_line(exc)
        return
    assert isinstance(arch, LlmArch)
    assert arch.params > 0 and math.isfinite(float(arch.params))
    assert isinstance(arch.tied_embeddings, bool)


def _through_predict(cfg: dict[str, Any], batch: int, seq_len: int) -> None:
    """What predict does before it builds: read (here: given), check, size, the transformers
    config and the class to build (the meta build itself is the slow part, left out)."""
    from chipfit.workloads.gpu_trace import hf_config, model_class

    try:
        raw = check_config(cfg, "mutant")
        check_trace_size(raw, batch, seq_len)
        hf_config(raw, "mutant")
        model_class(raw, "mutant")
    except UsageError as exc:
        _one_line(exc)


@FAST
@given(st.sampled_from(sorted(BASES)), st.lists(MUTATION, min_size=1, max_size=3),
       st.integers(1, 2**22), st.integers(1, 2**26))
def test_a_mutated_config_is_a_result_or_one_line(base: str, mutations, batch: int,
                                                  seq_len: int) -> None:
    cfg = dict(BASES[base])
    for key, value in mutations:
        cfg[key] = value
    _through_llm(cfg)
    _through_predict(cfg, batch, seq_len)


@FAST
@given(st.sampled_from(sorted(BASES)), st.sampled_from(KEYS), st.one_of(
    st.integers(0, 6000).map(lambda n: "9" * max(n, 1)),
    st.integers(0, 6000).map(lambda n: "-" + "9" * max(n, 1)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "0.5", '"2"', '"false"',
                     "true", "null", "[]", "{}", "[" * 3000 + "]" * 3000,
                     "[" * 200000 + "]" * 200000, '{"a":' * 300 + "1" + "}" * 300])))
def test_a_config_file_with_any_literal_is_a_result_or_one_line(base: str, key: str,
                                                                literal: str) -> None:
    """The JSON text itself mutated: literals json.dumps would never write (5000-digit
    numbers, NaN, nesting beyond the parser), read through the file door of both commands."""
    cfg = {**BASES[base], key: "SLOT"}
    text = json.dumps(cfg).replace('"SLOT"', literal, 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        path.write_text(text)
        try:
            loaded = load_config(str(path))
        except UsageError as exc:
            _one_line(exc)
        else:
            assert loaded["_source"] == str(path)
            _through_llm({k: v for k, v in loaded.items() if not k.startswith("_")})
        from chipfit.workloads.gpu_trace import read_config

        try:
            read_config(path)
        except UsageError as exc:
            _one_line(exc)


def test_every_unmutated_base_passes() -> None:
    for name, cfg in BASES.items():
        assert check_config(cfg, name) == cfg
    assert arch_from_config(HUB["gpt2"]).layers == 12


# ---- the bounded reader --------------------------------------------------------------------
KINDS = st.sampled_from(["file", "gzip", "garbage-gzip", "fifo", "directory", "dev-zero",
                         "link-to-file", "missing"])


@FAST
@given(KINDS, st.binary(max_size=3000), st.integers(0, 4000))
def test_the_reader_returns_the_content_or_one_line(kind: str, content: bytes,
                                                    limit: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input"
        gzipped = kind in ("gzip", "garbage-gzip")
        if kind in ("file", "garbage-gzip"):
            path.write_bytes(content)
        elif kind == "gzip":
            path.write_bytes(gzip.compress(content))
        elif kind == "fifo":
            os.mkfifo(path)  # no writer ever comes: a blocking read would hang the test
        elif kind == "directory":
            path.mkdir()
        elif kind == "dev-zero":
            path.symlink_to("/dev/zero")
        elif kind == "link-to-file":
            (Path(folder) / "real").write_bytes(content)
            path.symlink_to(Path(folder) / "real")
        try:
            data = read_user_file(path, limit, "input", gzipped=gzipped)
        except UsageError as exc:
            _one_line(exc)
            assert str(path) in str(exc)
            if kind in ("file", "gzip", "link-to-file"):
                assert len(content) > limit or (kind == "gzip" and os.path.getsize(path) > limit)
            return
        assert kind in ("file", "gzip", "garbage-gzip", "link-to-file")
        assert len(data) <= limit
        if kind != "garbage-gzip":
            assert data == content


@FAST
@given(st.one_of(st.text(alphabet='[]{}":,0123456789-.eE truefalsnNaIiy', max_size=300),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_json_text_of_any_shape_is_a_value_or_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.json"
        path.write_bytes(text.encode("latin-1", errors="replace"))
        try:
            read_user_json(path, 2**20, "config")
        except UsageError as exc:
            _one_line(exc)


def test_an_error_names_the_field_of_a_long_number(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"measurements": [{"flops": 1}, {"flops": ' + "7" * 500 + "}]}")
    with pytest.raises(ChipfitError, match=re.escape("measurements[1].flops is a 500-digit")):
        read_user_json(path, 2**20, "results file")
