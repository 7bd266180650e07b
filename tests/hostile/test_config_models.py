"""Hostile and damaged transformers config.json files handed to ``chipfit predict``.

A config names the class chipfit builds (``architectures[0]``): only a transformers model
class may be built from it, never another callable the library exports; anything else is one
line on stderr and exit 2, before any model is built.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}

CASES = [
    ("architectures-a-string", {"architectures": "BertModel"}, "architectures must be a list"),
    ("architectures-a-number", {"architectures": [123]}, "architectures must be a list"),
    ("architectures-nested", {"architectures": [["BertModel"]]}, "architectures must be a list"),
    ("architectures-empty-name", {"architectures": [""]}, "architectures must be a list"),
    ("architectures-a-function", {"architectures": ["pipeline"]}, "not a transformers model"),
    ("architectures-a-module", {"architectures": ["logging"]}, "not a transformers model"),
    ("architectures-a-config-class", {"architectures": ["AutoConfig"]},
     "not a transformers model"),
    ("architectures-a-tokenizer", {"architectures": ["BertTokenizer"]},
     "not a transformers model"),
    ("model-type-a-number", {"model_type": 5}, "model_type must be a name"),
    ("heads-do-not-divide-width", {"hidden_size": 30, "num_attention_heads": 7}, "cannot build"),
]


@pytest.mark.parametrize(("name", "change", "says"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_config_is_one_line_and_exit_2(cli, tmp_path, name, change, says):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**BERT, **change}))
    proc = cli("predict", str(path), "--hardware", "t4", "--seq-len", "8")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("chipfit: error")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0]
    assert says in errors[0] and len(errors[0]) < 400, errors[0]
