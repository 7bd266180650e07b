"""Hostile user inputs: files that are not files, model configs with wrong figures, factories
that misbehave.

- Every file a user names is read by one bounded reader (``chipfit.paths.read_user_file``):
  a FIFO, a device, a directory or a file over the size limit is refused in one line before
  a byte is read, so nothing blocks on a named pipe or reads ``/dev/zero`` forever.
- Every model config (``chipfit llm`` and ``chipfit predict`` alike) passes one schema
  (``chipfit.workloads.config_schema``): each size field a positive integer within what the
  machine and the predictor can represent, booleans real booleans, names strings, nothing
  non-finite, nothing nested without end; one line naming the field, before anything is built.
- User model code (a factory, a forward, a TorchScript module) can print what it likes: stdout
  carries only chipfit's JSON; a forward that returns no tensor and a model process that exits
  on its own are each one line that says so.

A FIFO that chipfit would block on is opened for writing after a few seconds by a watchdog, so
a regression fails its test (with "blocked on the FIFO") instead of hanging the suite.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.hostile._support import assert_refused

# A tiny llama that both `llm` and `predict` accept (predict builds it on the meta device).
TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
    "tie_word_embeddings": False, "rope_theta": 10000.0,
}
LLM = ("-H", "h100-sxm", "--prompt-len", "32", "--gen-len", "8")
PREDICT = ("-H", "h100-sxm", "--seq-len", "16")


# ---- the FIFO watchdog ---------------------------------------------------------------------
class Fifos:
    """FIFOs made for one test; a watchdog unblocks a reader that waits on one."""

    def __init__(self, after_s: float = 6.0) -> None:
        self.paths: list[Path] = []
        self.after_s = after_s
        self.unblocked: list[Path] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def make(self, path: Path) -> str:
        os.mkfifo(path)
        self.paths.append(path)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return str(path)

    def _watch(self) -> None:
        if self._stop.wait(self.after_s):
            return
        while not self._stop.is_set():  # a reader is blocked: give it a writer, then EOF
            for path in self.paths:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:  # ENXIO: nobody is reading it right now
                    if exc.errno not in (errno.ENXIO, errno.ENOENT):
                        raise
                    continue
                os.close(fd)
                self.unblocked.append(path)
            self._stop.wait(0.2)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class Ctx:
    request: pytest.FixtureRequest
    tmp: Path
    fifos: Fifos
    state: dict[str, Any] = field(default_factory=dict)

    def fifo(self, name: str) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.fifos.make(path)

    def config(self, name: str = "cfg.json", raw: str | None = None, **changes: Any) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(raw if raw is not None else json.dumps({**TINY, **changes}))
        return str(path)

    def sparse(self, name: str, size: int) -> str:
        path = self.tmp / name
        with open(path, "wb") as fh:
            fh.truncate(size)  # no blocks written: a huge file that costs nothing
        return str(path)

    def link(self, name: str, target: str) -> str:
        (self.tmp / name).symlink_to(target)
        return str(self.tmp / name)

    def folder(self, name: str) -> str:
        (self.tmp / name).mkdir(parents=True)
        return str(self.tmp / name)

    @property
    def run(self):  # the session's real stored run (one quick bench)
        return self.request.getfixturevalue("stored_run")


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Ctx], list[str]]
    says: str | None = None
    code: int = 2


def _raw_layers(text: str) -> Callable[[Ctx], str]:
    """A config whose num_hidden_layers is ``text`` verbatim (JSON json.dumps cannot write)."""
    def make(ctx: Ctx) -> str:
        body = json.dumps({**TINY, "num_hidden_layers": 1}).replace(
            '"num_hidden_layers": 1', f'"num_hidden_layers": {text}')
        return ctx.config(raw=body)
    return make


def _nested(ctx: Ctx) -> str:
    return ctx.config(raw=json.dumps(TINY)[:-1] + ', "rope_scaling": ' + "[" * 100_000
                      + "]" * 100_000 + "}")


def _nested_a_little(ctx: Ctx) -> str:  # parses, but deeper than any real config
    return ctx.config(raw=json.dumps(TINY)[:-1] + ', "rope_scaling": ' + '{"a": ' * 200 + "1"
                      + "}" * 200 + "}")


# Each defect: (id, config maker, what the one line must name)
DEFECTS: list[tuple[str, Callable[[Ctx], str], str]] = [
    ("layers-400-digits", _raw_layers("9" * 400), "num_hidden_layers"),
    ("layers-5000-digits", _raw_layers("9" * 5000), "num_hidden_layers"),
    ("layers-negative", lambda c: c.config(num_hidden_layers=-3), "num_hidden_layers"),
    ("layers-zero", lambda c: c.config(num_hidden_layers=0), "num_hidden_layers"),
    ("layers-nan", _raw_layers("NaN"), "num_hidden_layers"),
    ("layers-infinity", _raw_layers("Infinity"), "num_hidden_layers"),
    ("layers-string", lambda c: c.config(num_hidden_layers="2"), "num_hidden_layers"),
    ("layers-float", lambda c: c.config(num_hidden_layers=2.5), "num_hidden_layers"),
    ("layers-bool", lambda c: c.config(num_hidden_layers=True), "num_hidden_layers"),
    ("layers-10e12", lambda c: c.config(num_hidden_layers=10**12), "num_hidden_layers"),
    ("hidden-huge", lambda c: c.config(hidden_size=2**40), "hidden_size"),
    ("vocab-huge", lambda c: c.config(vocab_size=10**10), "vocab_size"),
    ("heads-list", lambda c: c.config(num_attention_heads=[4]), "num_attention_heads"),
    ("experts-million", lambda c: c.config(model_type="mixtral", num_local_experts=10**6,
                                           num_experts_per_tok=2,
                                           architectures=["MixtralForCausalLM"]),
     "num_local_experts"),
    ("architectures-int", lambda c: c.config(architectures=5), "architectures"),
    ("model-type-list", lambda c: c.config(model_type=["llama"]), "model_type"),
    ("model-type-missing", lambda c: c.config(raw=json.dumps(
        {k: v for k, v in TINY.items() if k != "model_type"})), "model_type"),
    ("tie-string-false", lambda c: c.config(tie_word_embeddings="false"), "tie_word_embeddings"),
    ("bool-string-anywhere", lambda c: c.config(use_cache="true"), "use_cache"),
    ("rope-theta-infinity", lambda c: c.config(raw=json.dumps(TINY).replace(
        "10000.0", "Infinity")), "rope_theta"),
    ("rope-theta-string", lambda c: c.config(rope_theta="10000"), "rope_theta"),
    ("nested-beyond-the-parser", _nested, "nested"),
    ("nested-beyond-any-config", _nested_a_little, "rope_scaling"),
    ("top-level-list", lambda c: c.config(raw=json.dumps([TINY])), "JSON object"),
]


def _newest_is_a_fifo(ctx: Ctx) -> list[str]:
    """A FIFO named like a run file in the data directory, beside a real run."""
    runs = Path(os.environ["CHIPFIT_HOME"]) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    shutil.copy(ctx.run.json, runs / "a-run.json")
    ctx.fifos.make(runs / "zz-newer.json")
    return ["report", "-o", str(ctx.tmp / "r.html")]


def _gpu_data(member: Callable[[Ctx, Path], None]) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        folder = ctx.tmp / "gpu"
        (folder / "kernels").mkdir(parents=True)
        member(ctx, folder / "kernels" / "bmm.csv.gz")
        return ["validate", "--gpu-data", str(folder)]
    return make


CASES: list[Case] = [
    # FIFOs: refused at once, never waited on
    Case("llm-config-fifo", lambda c: ["llm", c.fifo("cfg.json"), *LLM], "FIFO"),
    Case("llm-config-folder-holds-a-fifo", lambda c: [
        "llm", str(Path(c.fifo("model/config.json")).parent), *LLM], "FIFO"),
    Case("predict-config-fifo", lambda c: ["predict", c.fifo("cfg.json"), *PREDICT], "FIFO"),
    Case("advise-config-fifo", lambda c: ["advise", c.fifo("cfg.json"), "--hardware",
                                          "h100-sxm"], "FIFO"),
    Case("report-run-fifo", lambda c: ["report", c.fifo("run.json"), "-o",
                                       str(c.tmp / "r.html")], "FIFO"),
    Case("report-llm-fifo", lambda c: ["report", str(c.run.json), "-o", str(c.tmp / "r.html"),
                                       "--llm", c.fifo("cfg.json")], "FIFO"),
    Case("show-run-fifo", lambda c: ["show", c.fifo("run.json")], "FIFO"),
    Case("compare-run-fifo", lambda c: ["compare", str(c.run.json), c.fifo("b.json")], "FIFO"),
    Case("gpu-data-fifo", _gpu_data(lambda c, p: c.fifos.make(p)), "FIFO"),
    Case("advise-model-file-fifo", lambda c: ["advise", c.fifo("model.pt2"), "--input", "1x16"],
         "FIFO"),
    Case("advise-factory-file-fifo", lambda c: ["advise", c.fifo("facs.py") + ":make",
                                                "--input", "1x16"], "FIFO"),
    Case("predict-factory-file-fifo", lambda c: ["predict", c.fifo("facs.py") + ":make",
                                                 "--input", "1x16", "-H", "h100-sxm"], "FIFO"),
    Case("advise-weights-fifo", lambda c: ["advise", c.config(name="f.py", raw="def make(): 0\n")
                                           + ":make", "--input", "1x16", "--weights",
                                           c.fifo("w.safetensors")], "FIFO"),
    Case("report-with-a-fifo-in-the-runs-folder", _newest_is_a_fifo, None, code=0),
    # devices, through a link with a .json name
    Case("llm-config-dev-zero", lambda c: ["llm", "/dev/zero", *LLM], "character device"),
    Case("llm-config-link-to-dev-zero", lambda c: ["llm", c.link("z.json", "/dev/zero"), *LLM],
         "character device"),
    Case("predict-config-link-to-dev-zero", lambda c: [
        "predict", c.link("z.json", "/dev/zero"), *PREDICT], "character device"),
    Case("report-run-link-to-dev-zero", lambda c: [
        "report", c.link("z.json", "/dev/zero"), "-o", str(c.tmp / "r.html")],
         "character device"),
    Case("show-run-link-to-dev-urandom", lambda c: ["show", c.link("u.json", "/dev/urandom")],
         "character device"),
    Case("advise-weights-link-to-dev-zero", lambda c: [
        "advise", c.config(name="f.py", raw="def make(): 0\n") + ":make", "--input", "1x16",
        "--weights", c.link("w.safetensors", "/dev/zero")], "character device"),
    # directories
    Case("predict-config-is-a-directory", lambda c: ["predict", c.folder("d.json"), *PREDICT],
         "directory"),
    Case("report-run-is-a-directory", lambda c: ["report", c.folder("d.json"), "-o",
                                                 str(c.tmp / "r.html")], "directory"),
    Case("show-run-is-a-directory", lambda c: ["show", c.folder("d.json")], "directory"),
    Case("llm-config-folder-holds-a-folder", lambda c: [
        "llm", str(Path(c.folder("m/config.json")).parent), *LLM], "directory"),
    # huge files: refused by their size, not read
    Case("llm-config-huge", lambda c: ["llm", c.sparse("big.json", 2**30), *LLM], "larger than"),
    Case("predict-config-huge", lambda c: ["predict", c.sparse("big.json", 2**30), *PREDICT],
         "larger than"),
    Case("report-run-huge", lambda c: ["report", c.sparse("big.json", 2**40), "-o",
                                       str(c.tmp / "r.html")], "larger than"),
    Case("show-run-huge", lambda c: ["show", c.sparse("big.json", 2**40)], "larger than"),
    # the GPU kernel data: a damaged file named
    Case("gpu-data-not-gzip", _gpu_data(lambda c, p: p.write_text("device,latency_ms\n")),
         "bmm.csv.gz"),
    Case("gpu-data-truncated-gzip", _gpu_data(
        lambda c, p: p.write_bytes(gzip.compress(b"device,latency_ms\n" * 1000)[:40])),
         "bmm.csv.gz"),
    Case("gpu-data-is-a-directory", _gpu_data(lambda c, p: p.mkdir()), "directory"),
    # sizes given on the command line
    Case("llm-batch-400-digits", lambda c: ["llm", "llama-3.1-8b", "-H", "h100-sxm", "--batch",
                                            "1" + "0" * 400], "--batch"),
    Case("llm-prompt-len-huge", lambda c: ["llm", "llama-3.1-8b", "-H", "h100-sxm",
                                           "--prompt-len", str(10**30)], "--prompt-len"),
    Case("predict-batch-times-seq-len-overflow", lambda c: [
        "predict", c.config(), "-H", "h100-sxm", "--batch", str(10**11), "--seq-len",
        str(10**8)], "--batch"),
    Case("predict-batch-5000-digits", lambda c: ["predict", c.config(), "-H", "h100-sxm",
                                                 "--batch", "9" * 5000], "--batch"),
    Case("predict-seq-len-huge", lambda c: ["predict", c.config(), "-H", "h100-sxm",
                                            "--seq-len", str(10**30)], "--seq-len"),
]
def _args(command: str, make: Callable[[Any], str], rest: Sequence[str]
          ) -> Callable[[Any], list[str]]:
    """``command``'s arguments for a defect: the defective config, then ``rest``."""
    return lambda c: [command, make(c), *rest]


CASES += [Case(f"llm-{name}", _args("llm", make, LLM), says) for name, make, says in DEFECTS]
CASES += [Case(f"predict-{name}", _args("predict", make, PREDICT), says)
          for name, make, says in DEFECTS]
CASES += [  # what only predict reads: the class to build, and the advise route to llm
    Case("predict-architectures-not-a-model", lambda c: [
        "predict", c.config(architectures=["AutoTokenizer"]), *PREDICT], "architectures"),
    Case("predict-architectures-a-function", lambda c: [
        "predict", c.config(architectures=["pipeline"]), *PREDICT], "architectures"),
    Case("advise-config-layers-string", lambda c: [
        "advise", c.config(num_hidden_layers="2"), "--hardware", "h100-sxm"],
         "num_hidden_layers"),
    Case("advise-config-not-a-decoder", lambda c: [
        "advise", c.config(raw=json.dumps({"model_type": "bert", "hidden_size": 64})),
        "--hardware", "h100-sxm"], "decoder-only"),
    Case("advise-config-not-a-config", lambda c: [
        "advise", c.config(raw=json.dumps({"format": "chipfit-results"})), "--hardware",
        "h100-sxm"], "model_type"),
]


@pytest.fixture
def fifos() -> Iterator[Fifos]:
    made = Fifos()
    yield made
    made.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_user_input_is_refused_in_one_line(case: Case, cli, request, tmp_path: Path,
                                           fifos: Fifos) -> None:
    ctx = Ctx(request, tmp_path, fifos)
    proc = cli(*case.args(ctx), timeout=120)
    assert not fifos.unblocked, f"chipfit blocked on the FIFO {fifos.unblocked[0]}"
    if case.code == 0:
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return
    assert_refused(proc, case.code, case.says)


# ---- the reader itself ------------------------------------------------------------------------
def test_the_reader_refuses_what_is_not_a_regular_file(tmp_path: Path, fifos: Fifos) -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.paths import read_user_file

    for target, words in ((fifos.make(tmp_path / "p"), "FIFO"), ("/dev/zero", "character"),
                          (str(tmp_path), "directory"), (str(tmp_path / "nope"), "does not exist")):
        with pytest.raises(InvalidInputError, match=words) as info:
            read_user_file(target, 1024, "config")
        assert "\n" not in str(info.value) and "config" in str(info.value)
    assert not fifos.unblocked


def test_the_reader_reads_at_most_its_limit(tmp_path: Path) -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.paths import read_user_file

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    assert read_user_file(path, 100, "data") == b"x" * 100
    with pytest.raises(InvalidInputError, match=r"larger than 99 bytes"):
        read_user_file(path, 99, "data")
    link = tmp_path / "link"
    link.symlink_to(path)  # a link to a regular file is read (the Hub's cache is links)
    assert read_user_file(link, 100, "data") == b"x" * 100


def test_gzip_is_bounded_after_decompression_too(tmp_path: Path) -> None:
    """A gzip bomb: 20 KB on disk, 20 MB inflated; the limit applies to what is inflated."""
    from chipfit.errors import InvalidInputError
    from chipfit.paths import read_user_file

    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 20_000_000, compresslevel=9))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InvalidInputError, match=r"bomb.csv.gz.*larger than .* uncompressed"):
        read_user_file(bomb, 1_000_000, "kernel data", gzipped=True)
    small = tmp_path / "ok.csv.gz"
    small.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read_user_file(small, 100, "kernel data", gzipped=True) == b"a,b\n1,2\n"
    plain = tmp_path / "plain.csv.gz"
    plain.write_text("a,b\n")
    with pytest.raises(InvalidInputError, match="plain.csv.gz is not a gzip file"):
        read_user_file(plain, 100, "kernel data", gzipped=True)


def test_a_catalog_file_is_read_bounded_and_nested_toml_is_one_line(tmp_path: Path,
                                                                    fifos: Fifos) -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.hardware.catalog import load_catalog

    deep = tmp_path / "deep.toml"
    deep.write_text("schema_version = 1\na = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n")
    for path, words in ((fifos.make(tmp_path / "c.toml"), "FIFO"), (deep, "nested"),
                        ("/dev/zero", "character device")):
        with pytest.raises(InvalidInputError, match=words):
            load_catalog(path)
    assert not fifos.unblocked


def test_json_reads_refuse_what_the_parser_cannot_take(tmp_path: Path) -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.paths import read_user_json

    for raw, words in (("[" * 100_000, "nested"), ("{", "not valid JSON"),
                       ('{"a": ' + "9" * 5000 + "}", "digits"), ("\xff", "UTF-8")):
        path = tmp_path / "x.json"
        path.write_bytes(raw.encode("latin-1"))
        with pytest.raises(InvalidInputError, match=words):
            read_user_json(path, 2**20, "config")


# ---- configs: what is right still reads, and reads right -------------------------------------
def test_a_local_configs_source_is_its_path_not_its_own_claim(cli, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**TINY, "_source": "https://huggingface.co/meta-llama/x",
                                "_name": "llama-3.1-405b"}))
    data = json.loads(cli("llm", str(path), *LLM, "--json", check=True).stdout)
    assert data["architecture"]["source"] == str(path)
    assert data["model"] == "mine"


def test_booleans_are_read_as_booleans(tmp_path: Path) -> None:
    from chipfit.workloads.llm import load_arch

    tied, untied = tmp_path / "tied.json", tmp_path / "untied.json"
    tied.write_text(json.dumps({**TINY, "tie_word_embeddings": True}))
    untied.write_text(json.dumps({**TINY, "tie_word_embeddings": False}))
    head = TINY["vocab_size"] * TINY["hidden_size"]
    assert load_arch(str(untied)).params - load_arch(str(tied)).params == head


def test_real_configs_with_nulls_and_hub_keys_still_read(tmp_path: Path) -> None:
    """What the Hub's config.json files hold: nulls for unset figures, `_name_or_path`,
    `transformers_version`, nested rope_scaling, token ids."""
    from chipfit.workloads.config_schema import check_config
    from chipfit.workloads.llm import load_arch

    cfg = {**TINY, "_name_or_path": "meta-llama/Llama-3.2-1B", "transformers_version": "4.45.0",
           "rope_scaling": {"factor": 32.0, "rope_type": "llama3", "high_freq_factor": 4.0},
           "bos_token_id": 128000, "eos_token_id": [128001, 128008], "pad_token_id": None,
           "sliding_window": None, "head_dim": None, "torch_dtype": "bfloat16",
           "hidden_act": "silu", "rms_norm_eps": 1e-5, "attention_bias": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert load_arch(str(path)).layers == 2
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
            "vocab_size": 50257, "n_positions": 1024, "architectures": ["GPT2LMHeadModel"],
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
    assert check_config(gpt2, "gpt2") == gpt2


def test_a_config_meta_tensors_cannot_trace_is_one_line(cli, tmp_path: Path) -> None:
    """A valid mixture-of-experts config: transformers' grouped-matmul experts refuse float32
    on the meta device (RuntimeError, a traceback before); predict says so in one line."""
    path = tmp_path / "moe.json"
    path.write_text(json.dumps({**TINY, "model_type": "mixtral", "num_local_experts": 4,
                                "num_experts_per_tok": 2, "architectures": ["MixtralForCausalLM"]}))
    proc = cli("predict", str(path), *PREDICT)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr
    if proc.returncode == 1:  # a later transformers may trace it: then it is a prediction
        assert lines[-1].startswith("chipfit: error:") and "shape-only" in lines[-1]
        assert all(not line.startswith("chipfit: error") for line in lines[:-1])


def test_the_builtins_pass_the_same_schema() -> None:
    from chipfit.workloads.config_schema import check_config
    from chipfit.workloads.llm import BUILTIN_CONFIGS

    for name, cfg in BUILTIN_CONFIGS.items():
        check_config(cfg, name)


# ---- factories that misbehave -----------------------------------------------------------------
_FACTORIES = '''
import os, torch

class Stringy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 4)

    def forward(self, x):
        return "not a tensor"

class Loud(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 4)

    def forward(self, x):
        print("LOUD forward")
        return self.lin(x)

def stringy():
    return Stringy()

def loud():
    print("LOUD factory")
    return Loud()

def exits_zero():
    os._exit(0)

def exits_three():
    os._exit(3)
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("factories")
    (folder / "facs.py").write_text(_FACTORIES)
    return folder / "facs.py"


@pytest.mark.parametrize("command", [
    ["advise", "{f}:stringy", "--input", "1x16", "--hardware", "h100-sxm", "--batches", "1",
     "--devices", "torch:cpu", "--quick", "--no-save"],
    ["predict", "{f}:stringy", "--input", "1x16", "--hardware", "h100-sxm"],
    ["predict", "{f}:stringy", "--input", "1x16", "--hardware", "h100-sxm", "--mode", "train"],
], ids=["advise", "predict", "predict-train"])
def test_a_forward_that_returns_no_tensor_is_one_line(cli, factories: Path, command) -> None:
    proc = cli(*[a.format(f=factories) for a in command])
    assert_refused(proc, 2, "returned a str")


@pytest.mark.slow
def test_a_model_that_exits_is_not_blamed_on_memory(cli_batch, factories: Path) -> None:
    # a fresh process, not this one: a factory that exits here would end the test run (both
    # calls in one: each is refused once the probe's child has exited, before anything else)
    calls = [(["advise", "{f}:{fn}", "--input", "1x16", "--hardware", "h100-sxm", "--batches",
               "1", "--devices", "torch:cpu", "--quick", "--no-save"], "exits_zero", 0),
             (["predict", "{f}:{fn}", "--input", "1x16", "--hardware", "h100-sxm"],
              "exits_three", 3)]
    procs = cli_batch(*[tuple(a.format(f=factories, fn=fn) for a in command)
                        for command, fn, _ in calls])
    for proc, (_, _, code) in zip(procs, calls, strict=True):
        assert_refused(proc, 2, f"exited with code {code}")
        assert "memory" not in proc.stderr


def _scripted_loud(folder: Path) -> Path:
    import torch

    class Loud(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            print("LOUD torchscript")
            return self.lin(x)

    path = folder / "loud_ts.pt"
    torch.jit.save(torch.jit.script(Loud()), str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command, isolated", [
    (["predict", "{f}:loud", "--input", "1x16", "--hardware", "h100-sxm", "--json"], False),
    (["advise", "{f}:loud", "--input", "1x16", "--hardware", "h100-sxm", "--batches", "1",
      "--devices", "torch:cpu", "--quick", "--no-save", "--json", "-"], False),
    # in its own process: TorchScript prints from C++ to file descriptor 1, which only a real
    # process's stdout shows (and the probe's child prints there too)
    (["advise", "{ts}", "--input", "1x16", "--hardware", "h100-sxm", "--batches", "1",
      "--devices", "torch:cpu", "--quick", "--no-save", "--json", "-"], True),
], ids=["predict-factory", "advise-factory", "advise-torchscript"])
def test_stdout_carries_only_the_json_whatever_the_model_prints(cli, factories: Path,
                                                                command, isolated) -> None:
    ts = _scripted_loud(factories.parent)
    proc = cli(*[a.format(f=factories, ts=ts) for a in command], isolated=isolated)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # nothing but the JSON
    assert "LOUD" in proc.stderr


def test_model_output_goes_to_stderr_and_stdout_comes_back(capfd) -> None:
    """Python prints and writes to file descriptor 1 alike; nested and overlapping levels
    (threads) put stdout back only when the last one ends."""
    from chipfit.workloads.user import user_output_to_stderr

    print("before", flush=True)
    with user_output_to_stderr():
        print("model says")
        os.write(1, b"from C\n")
        with user_output_to_stderr():
            print("nested")
        entered, leave = threading.Event(), threading.Event()

        def other() -> None:
            with user_output_to_stderr():
                entered.set()
                leave.wait(5)
                print("other thread, after the first level ended")

        thread = threading.Thread(target=other)
        thread.start()
        entered.wait(5)
    leave.set()
    thread.join(5)
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert out.split() == ["before", "after"], out
    for words in ("model says", "from C", "nested", "other thread"):
        assert words in err


def test_llm_json_is_the_only_stdout(cli, tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(TINY))
    json.loads(cli("llm", str(path), *LLM, "--json", check=True).stdout)


def test_the_corpus_here_is_large_enough() -> None:
    assert len(CASES) >= 40
