"""``chipfit llm --endpoint`` against a real server: tests/_llm_server.py, a tiny transformers
GPT-2 (random weights) served over HTTP on 127.0.0.1 by its own process, streaming tokens as
OpenAI server-sent events. One server serves the module (its fault modes are URL paths); the
test that kills a server mid-run starts its own. Each run is a few requests of a few tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import run_cli

from _store_peek import count, rows
from chipfit.errors import BackendUnavailableError
from chipfit.pipelines.endpoint import measure_endpoint, records_of
from chipfit.store import open_store

SERVER = Path(__file__).resolve().parents[1] / "_llm_server.py"
SMALL = ("--prompt-len", "12", "--gen-len", "5")


@contextlib.contextmanager
def serve(*args: str) -> Iterator[str]:
    """A server process; its base URL. Always killed on the way out."""
    proc = subprocess.Popen([sys.executable, str(SERVER), "--max-seconds", "150", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, line = time.monotonic() + 90, ""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                break
        assert line.startswith("READY"), f"server did not start: {proc.stderr.read()[-2000:]}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(timeout=30)


class _Server:
    """The module's server, started again if a test killed it (``/die/``)."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.url = self.stack.enter_context(serve())

    def __str__(self) -> str:
        return self.url


@pytest.fixture(scope="module")
def live() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.stack.close()


@pytest.fixture
def server(live: _Server) -> str:
    try:
        socket.create_connection(("127.0.0.1", int(live.url.rsplit(":", 1)[1])), 5).close()
    except OSError:  # killed by the dying-server test, which ran before on this worker
        live.stack.close()
        live.__init__()
    return live.url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_normal_run_is_measured_stored_and_shown(server, tmp_path):
    db = tmp_path / "c.sqlite3"
    with open_store(db) as store:
        report = measure_endpoint(server, "tiny", prompt_len=12, gen_len=5, concurrency=2,
                                  max_requests=6, slo_ttft_s=30.0, store=store)
    s = report.stats
    assert (s.requests, s.ok, s.failed) == (6, 6, 0)
    assert s.tokens_source == "usage" and s.output_tokens == 30  # ignore_eos: 5 each
    assert s.prompt_tokens_source == "server" and s.prompt_tokens > 6 * 12  # bytes, not words
    assert 0 < s.ttft.p50 <= s.ttft.p90 <= s.ttft.p99 < s.e2e.p99 < 30
    assert s.itl.n == 6 * 4 and s.tpot.n == 6 and s.good == 6
    assert sorted(r.index for r in report.records) == list(range(6))
    assert all(len(r.chunk_s) == 5 and r.first_token_s == r.chunk_s[0] for r in report.records)
    with open_store(db) as store:
        run = store.load_run(report.run_id)
    assert run.command == "llm endpoint" and not run.interrupted and run.finished_at
    assert sorted(records_of(run), key=lambda r: r.index) == list(report.records)
    shown = run_cli("show", report.run_id, "--db", str(db))
    assert shown.returncode == 0 and "time to first token" in shown.stdout
    listed = run_cli("runs", "--db", str(db), "--json")
    assert f"endpoint:{server.split('//')[1]}" in listed.stdout


def test_cli_json_chat_rate_and_prediction(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPFIT_TEST_KEY", "sk-secret-123")
    db = tmp_path / "c.sqlite3"
    proc = run_cli("llm", "llama-3.2-1b", "-H", "l4", "--dtype", "int8", "--endpoint",
                   f"{server}/v1/chat/completions?key=q-secret", "--model", "tiny", "--rate", "20",
                   "--max-requests", "4", *SMALL, "--slo-ttft", "10", "--slo-tpot", "1",
                   "--api-key-env", "CHIPFIT_TEST_KEY", "--json", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["api"] == "chat" and data["measured"]["ok"] == 4
    assert data["measured"]["source"] == "measured" and data["measured"]["good"] == 4
    [pred] = data["predicted"]
    assert pred["hardware"] == "l4" and pred["source"] == "predicted" and pred["band"] > 0
    # the serving simulator, fed the four requests sent and Poisson arrivals at 20/s
    assert pred["devices"] == 1 and "TP1" in pred["basis"] and 0 < pred["ttft_s"] < pred["e2e_s"]
    assert any("continuous batching (simulated)" in n and "the 4 requests' own lengths" in n
               for n in data["notes"]), data["notes"]
    stored = json.dumps(rows(db, "SELECT * FROM runs")) + json.dumps(
        rows(db, "SELECT data_json FROM measurements"))
    assert "sk-secret" not in proc.stdout + proc.stderr + stored
    assert "q-secret" not in proc.stdout + proc.stderr + stored  # the query is sent, not kept
    table = run_cli("llm", "--endpoint", server, "--max-requests", "2", *SMALL, "--no-save",
                    env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    assert "2 of 2 requests ok" in table.stdout


@pytest.mark.parametrize("mode, flags, error", [
    ("fail500", (), "HTTP 500"),
    ("slow", ("--request-timeout", "0.6"), "per-request timeout"),
    ("malformed", (), "malformed chunk (not JSON)"),
    ("endless", ("--request-timeout", "0.5"), "timeout|endless stream cut"),
    ("huge", (), "stream line over 1 MiB"),
    ("json", (), "answered JSON, not a stream"),
])
def test_failures_are_records_with_partial_results(server, tmp_path, mode, flags, error):
    db = tmp_path / "c.sqlite3"
    proc = run_cli("llm", "--endpoint", f"{server}/{mode}/v1/completions", "--max-requests",
                   "2", *SMALL, *flags, "--json", "--db", str(db))
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    failed = [r for r in data["requests"] if r["status"] == "error"]
    assert failed and all(any(e in r["error"] for e in error.split("|")) for r in failed), \
        data["requests"]
    assert data["measured"]["failed"] == len(failed) and count(db) == 2
    assert proc.returncode == (0 if data["measured"]["ok"] else 1)
    if mode == "malformed":
        assert all(len(r["chunk_s"]) == 2 for r in failed)  # what came before is kept
    if mode == "fail500":
        assert data["measured"]["ok"] == 1
        shown = run_cli("show", data["run_id"], "--db", str(db))
        table = run_cli("llm", "--endpoint", f"{server}/{mode}/v1/completions", "--no-save",
                        "--max-requests", "2", *SMALL)
        assert "failed: 1 x HTTP 500" in shown.stdout
        assert "\x1b" not in table.stdout + shown.stdout  # the server's escape, shown inert
        assert "[red]injected[/red]" in table.stdout  # markup printed as written


def test_a_server_that_never_answers_is_cut_at_the_request_timeout():
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        report = measure_endpoint(f"http://127.0.0.1:{silent.getsockname()[1]}",
                                  max_requests=2, concurrency=2, request_timeout_s=0.5)
    assert [r.status for r in report.records] == ["error", "error"]
    assert all("per-request timeout" in r.error for r in report.records)  # not a hang


def test_refused_connection_is_one_line(tmp_path):
    proc = run_cli("llm", "--endpoint", f"http://127.0.0.1:{_free_port()}", "--db",
                   str(tmp_path / "c.sqlite3"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "cannot reach 127.0.0.1" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(BackendUnavailableError):
        measure_endpoint(f"http://127.0.0.1:{_free_port()}/v1", max_requests=1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_mid_run_keeps_partial_results(server, tmp_path, sig):
    db = tmp_path / "c.sqlite3"
    proc = subprocess.Popen([sys.executable, "-m", "chipfit", "llm", "--endpoint",
                             f"{server}/slow/v1/completions", "--concurrency", "2",
                             "--max-requests", "40", "--prompt-len", "8", "--gen-len", "2",
                             "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and count(db) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    kept = count(db)
    assert 2 <= kept < 40
    [(finished, interrupted)] = rows(db, "SELECT finished_at, interrupted FROM runs")
    if sig != signal.SIGKILL:  # Ctrl-C or SIGTERM: the run says it was cut short
        assert proc.returncode == (143 if sig == signal.SIGTERM else 130)
        assert interrupted == 1 and finished
        assert "interrupted: kept" in err and "time to first token" in out
    else:  # nothing could run: every request that ended before the kill is still there
        assert proc.returncode == -signal.SIGKILL and not finished
    shown = run_cli("show", "latest", "--db", str(db))
    assert shown.returncode == 0 and "time to first token" in shown.stdout


@pytest.mark.parametrize("flags, words", [
    (("--endpoint", "file:///etc/passwd"), "only http:// and https://"),
    (("--endpoint", "ftp://127.0.0.1/v1"), "only http:// and https://"),
    (("--endpoint", "http://u:p@127.0.0.1/v1"), "--api-key-env"),
    (("--endpoint", "http://127.0.0.1:1", "--rate", "-2"), "--rate"),
    (("--endpoint", "http://127.0.0.1:1", "--rate", "nan"), "--rate"),
    (("--endpoint", "http://127.0.0.1:1", "--concurrency", "99999999"), "--concurrency"),
    (("--endpoint", "http://127.0.0.1:1", "--max-requests", "1e9"), "--max-requests"),
    (("--endpoint", "http://127.0.0.1:1", "--max-requests", str(10**30)), "--max-requests"),
    (("--endpoint", "http://127.0.0.1:1", "--rate", "1", "--concurrency", "2"), "not both"),
    (("--endpoint", "http://127.0.0.1:1", "--slo-ttft", "-1"), "--slo-ttft"),
    (("--endpoint", "http://127.0.0.1:1", "--api-key-env", "NO_SUCH_VAR_X"), "not set"),
    (("--endpoint", "http://127.0.0.1:1", "--api-key-env", "$(rm -rf)"), "--api-key-env"),
    (("--endpoint", "http://127.0.0.1:1", "--published"), "does not go with --endpoint"),
    (("--endpoint", "http://127.0.0.1:1", "--batch", "8"), "--concurrency"),
    (("--endpoint", "http://127.0.0.1:1", "--api-key-env", "CHIPFIT_ODD_KEY"), "non-ASCII"),
    (("--endpoint", "[red]http://x"), "only http://"),
    (("--endpoint", "http://127.0.0.1:1", "--model", "x" * 600), "--model"),
    (("--endpoint", "http://127.0.0.1:1", "--duration", "0"), "--duration"),
    (("--endpoint", "http://127.0.0.1:1", "--request-timeout", "1e9"), "--request-timeout"),
])
def test_hostile_flags_are_one_line_errors(tmp_path, monkeypatch, flags, words):
    monkeypatch.setenv("CHIPFIT_ODD_KEY", "k\u00e9y\u202e")
    proc = run_cli("llm", *flags, "--db", str(tmp_path / "c.sqlite3"))
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") <= 1  # argparse: usage line + error line


def test_remote_host_is_announced_before_anything_is_sent():
    said: list[str] = []
    with pytest.raises(BackendUnavailableError):
        measure_endpoint("http://chipfit-test.invalid:8000/v1", max_requests=1,
                         request_timeout_s=2, progress=said.append)
    assert said and "not this machine" in said[0]


# last: it kills the module's server (a test after it on this worker starts another)
def test_server_dying_mid_run_keeps_what_was_measured(server):
    report = measure_endpoint(f"{server}/die/v1/completions", prompt_len=12, gen_len=5,
                              max_requests=5, request_timeout_s=10)
    statuses = [r.status for r in report.records]
    assert statuses[:2] == ["ok", "ok"] and set(statuses[2:]) == {"error"}
    dying = report.records[2]
    assert len(dying.chunk_s) == 2 and ("before [DONE]" in dying.error
                                        or "connection failed" in dying.error)
    assert all("connection failed" in r.error for r in report.records[3:])
    assert report.stats.ok == 2 and report.stats.failed == 3
