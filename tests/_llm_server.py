"""A real OpenAI-compatible streaming LLM server for the tests of ``chipfit llm --endpoint``.

Run as a process: ``python tests/_llm_server.py [--die-after N] [--max-seconds S]``. It binds
127.0.0.1 on an ephemeral port, prints ``READY <port>`` and serves a tiny transformers causal
LM (GPT-2 config: 2 layers, 32 wide, 256-token vocabulary; random weights built from the
config, nothing downloaded). Tokens are bytes: the prompt's UTF-8 bytes are its token ids,
and each generated id is sent as one printable character, one SSE chunk per token, then a
usage chunk and ``data: [DONE]``, as vLLM streams ``/v1/completions`` and
``/v1/chat/completions``.

Fault modes, chosen by the path's first segment (``/MODE/v1/completions``):

- ``fail500``: every second request (counted over the server) answers HTTP 500, its body
  holding markup and a terminal escape;
- ``slow``: 0.4 s between tokens;
- ``malformed``: two good chunks, then ``data: {not json``;
- ``endless``: ignores max_tokens and streams until the client goes (at most 30 s);
- ``huge``: a 2 MiB line without a newline;
- ``json``: a plain JSON answer, not a stream;
- ``die``: the third such request kills the server (``os._exit``) in the middle of its
  stream (``--die-after N``: the (N+1)th request of any mode does).
The server ends by itself after ``--max-seconds`` (default 120) or 2000 requests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging

warnings.filterwarnings("ignore")
logging.set_verbosity_error()

torch.set_num_threads(1)
torch.manual_seed(0)
MODEL = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=256,
                                   n_positions=1024, bos_token_id=0,
                                   eos_token_id=0)).eval()
LOCK = threading.Lock()
STATE = {"requests": 0, "die_after": None, "die": 0}
MODES = ("fail500", "slow", "malformed", "endless", "huge", "json", "die")


def generate(ids: list[int], steps: int):
    """Greedy decoding with the KV cache: yields one token id per step."""
    with torch.no_grad():
        past, x = None, torch.tensor([ids[-256:] or [32]])
        for _ in range(steps):
            result = MODEL(input_ids=x, past_key_values=past, use_cache=True)
            past = result.past_key_values
            token = int(result.logits[0, -1].argmax())
            yield token
            x = torch.tensor([[token]])


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with chunked transfer encoding for the streams, as uvicorn (vLLM, SGLang)
    # sends them; every connection is closed after its one response.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _json(self, status: int, data: bytes) -> None:
        """A whole (not streamed) JSON reply."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._send(data)

    def _chunk(self, data: bytes) -> None:
        """One piece of a chunked body (b"" ends the body)."""
        self._send(b"%x\r\n" % len(data) + data + b"\r\n")

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.close_connection = True
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        mode = parts[0] if parts and parts[0] in MODES else ""
        with LOCK:
            STATE["requests"] += 1
            STATE["die"] += mode == "die"
            number, dying = STATE["requests"], STATE["die"]
        chat = path.rstrip("/").endswith("chat/completions")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(min(length, 1 << 22)))
            prompt = (body["messages"][-1]["content"] if chat else body["prompt"])
            max_tokens = int(body.get("max_tokens", 16))
        except (ValueError, KeyError, TypeError, IndexError):
            self.send_error(400, "bad request body")
            return
        if mode == "fail500" and number % 2 == 0:  # a body with markup and a terminal escape
            self._json(500, b'{"error": "[red]injected[/red] failure \x1b[2J"}')
            return
        if mode == "json":
            self._json(200, json.dumps({"choices": [{"text": "x"}]}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if mode == "huge":
            self._chunk(b"data: " + b"x" * (2 << 20))
            self._chunk(b"")
            return
        ids = list(prompt.encode("utf-8"))
        steps = 10**6 if mode == "endless" else max_tokens
        die = (STATE["die_after"] is not None and number > STATE["die_after"]) or dying > 2
        start = time.monotonic()
        sent = 0
        try:
            for token in generate(ids, steps):
                if mode == "endless" and time.monotonic() - start > 30:
                    return
                if die and sent == 2:
                    os._exit(3)  # the server dies mid-stream
                if mode == "malformed" and sent == 2:
                    self._chunk(b"data: {not json\n\n")
                    self._chunk(b"")
                    return
                text = chr(33 + token % 94)
                choice = ({"index": 0, "delta": {"content": text}} if chat else
                          {"index": 0, "text": text})
                self._chunk(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
                sent += 1
                if mode == "slow":
                    time.sleep(0.4)
            usage = {"prompt_tokens": len(ids), "completion_tokens": sent,
                     "total_tokens": len(ids) + sent}
            self._chunk(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                        + b"\n\ndata: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--die-after", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    STATE["die_after"] = args.die_after
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Timer(args.max_seconds, lambda: os._exit(0)).start()
    list(generate([65], 2))  # warm up before READY: the first request is not the slowest
    sys.stdout.write(f"READY {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
