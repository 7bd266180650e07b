"""Hostile flags, environments and consoles: every list flag, device thread pins, tiny
terminals, consoles that cannot show chipfit's characters, Ray addresses that lead nowhere,
scaling requests the machine cannot hold, and GPU kernel data that is not what it claims.

Each refusal is what the rest of the hostile suite expects: exit code 2, one line on stderr,
no traceback, and nothing started (the refusals come before any framework or cluster).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.hostile._support import assert_refused

CPUS = os.cpu_count() or 1


# ---- list flags: never empty, never a name twice ------------------------------------------------
EMPTY_LISTS = [
    ("predict", "--hardware", ["predict", "matmul", "-s", "64", "--hardware", ","]),
    ("predict-blank", "--hardware", ["predict", "matmul", "-s", "64", "--hardware", ""]),
    ("llm", "--hardware", ["llm", "llama-3.2-1b", "--hardware", " , ,"]),
    ("feed", "--hardware", ["feed", "resnet50", "--hardware", ","]),
    ("advise", "--hardware", ["advise", "resnet50", "--hardware", ","]),
    ("bench-devices", "--devices", ["bench", "-w", "matmul", "-d", ","]),
    ("sweep-devices", "--devices", ["sweep", "matmul", "-d", ","]),
    ("calibrate-devices", "--devices", ["calibrate", "--devices", ","]),
    ("validate-devices", "--devices", ["validate", "--devices", ","]),
    ("bench-dtypes", "--dtypes", ["bench", "-w", "matmul", "--dtypes", ","]),
    ("calibrate-dtypes", "--dtypes", ["calibrate", "--dtypes", ""]),
    ("bench-sizes", "--sizes", ["bench", "-w", "matmul", "-s", ","]),
    ("validate-sizes", "--sizes", ["validate", "-s", ","]),
    ("bench-workloads", "--workloads", ["bench", "-w", ","]),
    ("bench-stacks", "--stacks", ["bench", "-w", "matmul", "--stacks", ","]),
    ("bench-modes", "--modes", ["bench", "-w", "matmul", "--modes", ","]),
    ("advise-batches", "--batches", ["advise", "resnet50", "--batches", ","]),
    ("report-llm-hardware", "--llm-hardware", ["report", "--llm", "llama-3.2-1b",
                                               "--llm-hardware", ","]),
    ("feed-workers", "--workers", ["feed", "resnet50", "--workers", ","]),
    ("bench-labels", "--labels", ["bench", "-w", "matmul", "--labels", ","]),
    ("predict-input", "--input", ["predict", "matmul", "--input", ""]),
    ("advise-input", "--input", ["advise", "resnet50", "--input", " "]),
]


@pytest.mark.parametrize("args,flag", [(a, f) for _, f, a in EMPTY_LISTS],
                         ids=[i for i, _, _ in EMPTY_LISTS])
def test_an_empty_list_flag_is_refused_before_anything_runs(args, flag, cli) -> None:
    proc = cli(*args)
    assert_refused(proc, 2, f"{flag} is empty")
    home = Path(os.environ["CHIPFIT_HOME"])
    assert not (home / "chipfit.sqlite3").exists() and not (home / "runs").exists()


def test_a_malformed_input_shape_is_refused_before_any_model_loads(cli) -> None:
    assert_refused(cli("predict", "matmul", "--input", ","), 2, "malformed --input")


def test_a_device_listed_twice_is_ranked_once(cli) -> None:
    proc = cli("predict", "matmul", "-s", "64", "--hardware", "h100-sxm,H100-SXM , h100-sxm",
               "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["hardware"] for r in rows] == ["h100-sxm"], rows


@pytest.mark.parametrize("argv", [["advise", "resnet50", "--hardware", "h100-sxm,l4,h100-sxm"],
                                  ["feed", "resnet50", "--hardware", "h100-sxm,l4,h100-sxm"],
                                  ["advise", "resnet50", "--devices", "torch:cpu,l4,torch:cpu"]],
                         ids=["advise", "feed", "advise-devices"])
def test_every_command_sees_each_listed_name_once(argv) -> None:
    """advise ranked h100-sxm twice: the one list check hands every command each name once."""
    from chipfit.cli import build_parser
    from chipfit.commands._common import check_list_flags

    args = build_parser().parse_args(argv)
    check_list_flags(args)
    flag = argv[2].lstrip("-")
    assert getattr(args, flag).split(",") == argv[3].split(",")[:2]


def test_llm_ranks_a_device_listed_twice_once(cli) -> None:
    proc = cli("llm", "llama-3.2-1b", "--hardware", "l4,h100-sxm,l4", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["hardware"] for r in rows] == ["l4", "h100-sxm"]


def test_bench_measures_a_device_and_a_size_listed_twice_once(cli, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = cli("bench", "-w", "matmul,matmul", "-s", "16,16", "-d", "torch:cpu,TORCH:CPU",
               "--quick", "--no-save", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    points = [(m["workload"], m["size"], m["device"])
              for m in json.loads(out.read_text())["measurements"]]
    assert points == [("matmul", "16", "torch:cpu")]


THREADS = [
    ("llm-zero", ["llm", "llama-3.2-1b", "--hardware", "torch:cpu@0t"], "1 to"),
    ("predict-zero", ["predict", "matmul", "-s", "64", "--hardware", "torch:cpu@0t"], "1 to"),
    ("bench-zero", ["bench", "-w", "matmul", "-d", "torch:cpu@0t"], "1 to"),
    ("llm-more-than-cpus", ["llm", "llama-3.2-1b", "--hardware", f"torch:cpu@{CPUS + 1}t"],
     f"has {CPUS} cpu"),
    ("bench-more-than-cpus", ["bench", "-w", "matmul", "-d", f"torch:cpu@{CPUS + 1}t"],
     f"has {CPUS} cpu"),
    ("sweep-huge", ["sweep", "matmul", "-d", "torch:cpu@99999999t"], "1 to"),
    ("llm-not-a-cpu", ["llm", "llama-3.2-1b", "--hardware", "torch:cpuXYZ"], "unknown"),
    ("advise-malformed", ["advise", "resnet50", "--devices", "torch:cpu@t"], "malformed device"),
]


@pytest.mark.parametrize("args,says", [(a, s) for _, a, s in THREADS],
                         ids=[i for i, _, _ in THREADS])
def test_thread_pins_outside_one_to_the_machines_cpus_are_refused(args, says, cli) -> None:
    assert_refused(cli(*args), 2, says)


def test_a_list_flag_of_thousands_of_values_is_refused(cli) -> None:
    sizes = ",".join(str(16 + i) for i in range(5000))
    assert_refused(cli("bench", "-w", "matmul", "-s", sizes), 2, "at most")


# ---- narrow terminals -------------------------------------------------------------------------
def _widest(text: str) -> int:
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)


@pytest.mark.parametrize("columns", ["20", "1", "0", "45"])
def test_compare_keeps_to_a_narrow_terminal(columns: str, stored_run, cli) -> None:
    proc = cli("compare", str(stored_run.json), str(stored_run.json), env={"COLUMNS": columns})
    assert proc.returncode == 0, proc.stderr
    assert _widest(proc.stdout) <= max(40, int(columns)), proc.stdout
    words = proc.stdout.split()
    for key in ("matmul", "torch:cpu", "64", "96"):  # every key is still there, whole
        assert key in words, (key, proc.stdout)


NARROW_VIEWS = [
    ("show", ["show", "{json}"], ["{run_id}", "torch:cpu", "matmul"]),
    ("runs", ["runs", "--db", "{db}"], ["{run_id}"]),
    ("catalog", ["catalog"], ["h100-sxm", "tpu-v5e", "a100-sxm-80gb"]),
    ("workloads", ["workloads"], ["matmul", "resnet50", "transformer-block"]),
    ("llm", ["llm", "llama-3.2-1b", "--hardware", "h100-sxm,a100-sxm-80gb"],
     ["h100-sxm", "a100-sxm-80gb"]),
    ("predict", ["predict", "matmul", "-s", "64", "--hardware", "h100-sxm,a100-sxm-80gb"],
     ["h100-sxm", "a100-sxm-80gb"]),
]


def _words(text: str) -> set[str]:
    return set(text.replace("│", " ").replace("┃", " ").replace("|", " ").split())


@pytest.mark.parametrize("args,keys", [(a, k) for _, a, k in NARROW_VIEWS],
                         ids=[i for i, _, _ in NARROW_VIEWS])
def test_every_view_at_20_columns_gets_40_and_keeps_its_keys_whole(args, keys, stored_run,
                                                                   cli) -> None:
    def fill(text: str) -> str:
        return text.format(json=stored_run.json, db=stored_run.db, run_id=stored_run.run_id)

    proc = cli(*map(fill, args), env={"COLUMNS": "20"})
    assert proc.returncode == 0, proc.stderr
    assert _widest(proc.stdout) <= 40, proc.stdout
    words = _words(proc.stdout)
    for key in map(fill, keys):  # cut nowhere: not "h100-s…" nor "h100-" + "sxm"
        assert key in words or f"{key}:" in words or any(w.startswith(f"{key}") and
                                                         not w[len(key)].isalnum()
                                                         for w in words if len(w) > len(key)), (
            key, proc.stdout)


def test_compare_on_a_pipe_without_columns_still_prints_one_row_per_point(stored_run) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "chipfit", "compare", str(stored_run.json),
                           str(stored_run.json)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sum(line.startswith("│ matmul") for line in proc.stdout.splitlines()) == 2


# ---- consoles that cannot show chipfit's characters -------------------------------------------
ENCODED = [  # what prints chipfit's own non-ASCII characters: "—", "±", "×"
    ("llm", ["llm", "llama-3.2-1b", "--hardware", "h100-sxm"], ("ascii", "latin-1")),
    ("show", ["show", "{json}"], ("ascii", "latin-1")),
    ("compare", ["compare", "{json}", "{json}"], ("ascii",)),
]


@pytest.mark.parametrize("args,encoding", [(a, e) for _, a, es in ENCODED for e in es],
                         ids=[f"{i}-{e}" for i, _, es in ENCODED for e in es])
def test_a_console_that_cannot_show_a_character_gets_ascii_not_a_traceback(
        args, encoding: str, stored_run) -> None:
    args = [a.format(json=stored_run.json) for a in args]
    env = {**os.environ, "PYTHONIOENCODING": encoding, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-m", "chipfit", *args], capture_output=True,
                          env=env, timeout=120)
    out, err = proc.stdout.decode(encoding), proc.stderr.decode(encoding)
    assert "Traceback" not in out + err and "UnicodeEncodeError" not in out + err, err
    assert proc.returncode == 0, err
    if args[0] == "llm":  # "note —" and "±" read as "note -" and "+-"
        assert "note - " in out and "+-" in out, out


def test_an_error_quoting_unencodable_text_is_still_one_line(cli) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run([sys.executable, "-m", "chipfit", "llm", "llama-3.2-1b", "--hardware",
                           "h100—sxm±"], capture_output=True, env=env, timeout=120)
    text = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("ascii"),
                                       proc.stderr.decode("ascii"))
    assert_refused(text, 2, "h100")


# ---- Ray addresses that lead nowhere ----------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BENCH_TINY = ["bench", "-w", "matmul", "-s", "16", "-d", "torch:cpu", "--quick", "--no-save"]


# ---- calls that need a process of their own, all in one ----------------------------------------
@pytest.fixture(scope="module")
def own_process(cli_batch, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, subprocess.CompletedProcess[str]]:
    """This file's calls that each need a fresh interpreter (``scale``, whose XLA devices are
    fixed when JAX starts; a Ray driver; ``$RAY_ADDRESS``, read when Ray starts), run one after
    another in ONE fresh process (conftest's ``run_cli_batch``): each is refused before
    anything starts, which is what these tests check, so they cannot disturb each other; one
    interpreter start and one torch and JAX import instead of thirteen. By name; ``.seconds``
    is each call's own time."""
    closed = f"127.0.0.1:{_closed_port()}"
    calls: dict[str, object] = {
        "ray-address": (*BENCH_TINY, "--ray-address", closed),
        "executor-address": (*BENCH_TINY, "--executor", "ray", "--address", closed),
        "stray-env": ((*BENCH_TINY, "--json", str(tmp_path_factory.mktemp("stray") / "run.json")),
                      {"RAY_ADDRESS": closed}),
        "env-executor": ((*BENCH_TINY, "--executor", "ray"), {"RAY_ADDRESS": closed}),
        "scale-malformed-ray": ("scale", "--backend", "torch", "--ray-address",
                                "nowhere:notaport"),
        **{f"scale-{name}": ("scale", *args) for name, args, _ in SCALE},
    }
    return dict(zip(calls, cli_batch(*calls.values(), timeout=120), strict=True))


@pytest.mark.parametrize("name", ["ray-address", "executor-address"])
def test_a_closed_ray_port_is_one_line_within_seconds(name: str, own_process) -> None:
    proc = own_process[name]
    assert_refused(proc, 2, "cannot reach the ray cluster")
    assert proc.seconds < 45  # ray.init alone retried past 90 s


def test_a_port_that_is_not_a_ray_cluster_is_one_line_within_seconds(
        cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A silent port costs chipfit its whole connect timeout (5 s): the call runs in this
    process, so the test waits 1.5 s instead (the refusal does not depend on the length)."""
    from functools import partial

    from chipfit.execute import ray as ray_executor

    assert ray_executor.CONNECT_TIMEOUT_S < 45  # what a user waits at most
    monkeypatch.setattr(ray_executor, "check_reachable",
                        partial(ray_executor.check_reachable, timeout_s=1.5))
    with socket.socket() as server:  # accepts connections (the kernel's backlog), says nothing
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        start = time.monotonic()
        proc = cli(*BENCH_TINY, "--ray-address", f"127.0.0.1:{server.getsockname()[1]}",
                   timeout=90)
    assert_refused(proc, 2, "not a ray cluster")
    assert "waited at most 1.5 s" in proc.stderr  # chipfit's own check refused it, not ray.init
    assert time.monotonic() - start < 45  # ray.init waited past 120 s


def test_a_stray_ray_address_does_not_send_a_plain_bench_to_a_cluster(own_process) -> None:
    proc = own_process["stray-env"]
    assert proc.returncode == 0, proc.stderr
    out = Path(proc.args[proc.args.index("--json") + 1])
    assert json.loads(out.read_text())["settings"]["executor"] == "inline"


def test_ray_address_from_the_environment_with_executor_ray_is_checked_too(own_process) -> None:
    assert_refused(own_process["env-executor"], 2, "cannot reach the ray cluster")


@pytest.mark.parametrize("address", ["::::", "127.0.0.1:99999", "127.0.0.1:0", "ray://",
                                     "host:port", "http://10.0.0.1:6379", "a b:1",
                                     "10.0.0.1:6379/x"])
def test_a_malformed_ray_address_is_one_line(address: str, cli) -> None:
    assert_refused(cli(*BENCH_TINY, "--ray-address", address), 2, "malformed ray address")


def test_scale_refuses_a_malformed_ray_address(own_process) -> None:
    assert_refused(own_process["scale-malformed-ray"], 2, "malformed ray address")


# ---- scaling requests the machine cannot hold -------------------------------------------------
SCALE = [
    ("simulate-100000", ["--devices", "100000", "--simulate", "--quick"], "simulate 1 to"),
    ("simulate-zero", ["--devices", "0", "--simulate"], "at least 1"),
    ("negative-devices", ["--devices", "-4"], "at least 1"),
    ("torch-100000", ["--backend", "torch", "--devices", "100000", "--quick"], "at most"),
    ("zero-batch", ["--devices", "2", "--simulate", "--batch", "0"], "at least 1"),
    ("huge-batch", ["--devices", "2", "--simulate", "--batch", "1000000000000", "--quick"],
     "host memory"),
    ("torch-huge-batch", ["--backend", "torch", "--devices", "2", "--batch", "100000000000",
                          "--quick"], "host memory"),
    ("batch-past-any-count", ["--devices", "2", "--simulate", "--batch", str(2**60)], "large"),
]


@pytest.mark.parametrize("name,says", [(i, s) for i, _, s in SCALE], ids=[i for i, _, _ in SCALE])
def test_scale_refuses_what_the_machine_cannot_hold_at_once(name, says, own_process) -> None:
    proc = own_process[f"scale-{name}"]  # (run in the fixture above, with the others)
    assert_refused(proc, 2, says)
    assert proc.seconds < 60  # refused, not started: 100000 devices took minutes


# ---- GPU kernel data that is not what it claims -----------------------------------------------
def _gz(path: Path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode()))


GPU_DATA = {
    "no-file": ({}, "bmm.csv.gz"),
    "not-gzip": ({"bmm.csv.gz": b"device,latency_ms\nV100,1\n"}, "not a gzip"),
    "missing-columns": ({"bmm.csv.gz": "device,foo\nV100,1\n"}, "missing column(s) latency_ms"),
    "bad-number": ({"bmm.csv.gz": "device,latency_ms,B,M,N,K\nTesla T4,fast,1,2,3,4\n"}, "line 2"),
    "unknown-gpu": ({"bmm.csv.gz": "device,latency_ms,B,M,N,K\nV100,1,1,2,3,4\n"}, "unknown gpu"),
    "nan-latency": ({"bmm.csv.gz": "device,latency_ms,B,M,N,K\nTesla T4,nan,1,2,3,4\n"},
                    "latency_ms"),
    "not-utf8": ({"bmm.csv.gz": "device,latency_ms\n\udcff,1\n"}, "utf-8"),
}


@pytest.mark.parametrize("name", list(GPU_DATA))
def test_gpu_data_that_is_not_kernel_data_is_one_line_naming_the_file(name: str, cli,
                                                                     tmp_path: Path) -> None:
    files, says = GPU_DATA[name]
    (tmp_path / "kernels").mkdir()
    for file, content in files.items():
        if isinstance(content, bytes):
            (tmp_path / "kernels" / file).write_bytes(content)
        elif "\udcff" in content:
            (tmp_path / "kernels" / file).write_bytes(gzip.compress(
                content.encode("utf-8", "surrogateescape")))
        else:
            _gz(tmp_path / "kernels" / file, content)
    proc = cli("validate", "--gpu-data", str(tmp_path))
    assert_refused(proc, 2, says)
    assert "bmm.csv.gz" in proc.stderr


# ---- counts a sweep or a prediction cannot hold -----------------------------------------------
def test_a_sweep_of_a_billion_points_is_refused_at_once(cli) -> None:
    start = time.monotonic()
    assert_refused(cli("sweep", "matmul", "-d", "torch:cpu", "--points", "1000000000",
                       "--no-save", timeout=60), 2, "--points")
    assert time.monotonic() - start < 30  # the ladder of 10^9 points took minutes


def test_a_batch_no_allocator_can_hold_is_one_line_not_a_traceback(cli) -> None:
    proc = cli("predict", "resnet50", "-s", "1000000000000", "--hardware", "h100-sxm",
               timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode in (1, 2) and lines and lines[-1].startswith("chipfit: error:"), (
        proc.stderr)
    assert all(not line.startswith("chipfit: error") for line in lines[:-1])


def test_seq_len_for_a_built_in_workload_is_refused_not_ignored(cli) -> None:
    """--seq-len sizes config.json models; a built-in ignored it and printed a prediction
    for its own sequence length, even for 10^12."""
    from tests.hostile._support import assert_refused

    proc = cli("predict", "bert-base", "--seq-len", str(10**12), "-H", "t4", "--no-measure")
    assert_refused(proc, 2, "--seq-len applies to a config.json model")


@pytest.mark.parametrize("seq_len", ["0", "-3", "abc", "1e3", str(10**30), "<b>9</b>"])
def test_an_engine_seq_len_that_is_no_token_count_is_refused(cli, tmp_path, seq_len) -> None:
    """--seq-len under an engine stack is the real tokens per sequence: anything but a
    positive count of a sane size is one line and exit 2, before a model is built."""
    path = tmp_path / "bert.json"
    path.write_text('{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, '
                    '"num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}')
    proc = cli("predict", str(path), "--stack", "tensorrt", "-H", "t4", f"--seq-len={seq_len}")
    assert_refused(proc, 2, "seq-len")
