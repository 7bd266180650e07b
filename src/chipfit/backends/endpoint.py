"""A client for an OpenAI-compatible streaming LLM server (``chipfit llm --endpoint URL``).

Standard library only (``http.client``, threads). It sends a workload of requests to
``/v1/completions`` or ``/v1/chat/completions`` with ``"stream": true`` and records, per
request, when it was sent, when each content chunk of the server-sent-event stream arrived,
when the stream ended, how many tokens it carried and how it failed, if it did.

Arrivals are either Poisson at ``rate`` requests/s (seeded) or a closed loop of
``concurrency`` clients, each sending its next request when the last one ends. The run is
bounded by ``max_requests`` and ``duration_s`` (no request starts after it), and each
request by ``request_timeout_s`` (every socket operation included): nothing waits for ever,
whatever the server does. Failures are records (``status="error"``, partial timings kept),
never exceptions, so one bad request never loses the others.

Every number here is a measurement of this client's view of the server: the network and
this machine's own load are part of it.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import math
import queue
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from chipfit.errors import BackendUnavailableError, InvalidInputError

__all__ = ["APIS", "LENGTHS", "Endpoint", "EndpointLoad", "RequestRecord", "check_reachable",
           "drive", "parse_endpoint"]

APIS = ("completions", "chat")
LENGTHS = ("fixed", "lognormal", "uniform", "exponential")
#: sigma of log-length in the ``lognormal`` workload: the serving simulator's ShareGPT-like
#: spread (analysis/serving.LOGNORMAL_SIGMA), so measured and predicted loads are the same
LOGNORMAL_SIGMA = 1.0
#: One line of the event stream may hold this much; a longer one is a broken (or hostile)
#: server, refused rather than buffered.
MAX_LINE_BYTES = 1 << 20
#: All bytes of one response, error bodies included.
MAX_RESPONSE_BYTES = 64 << 20
#: Chunk arrival times kept per request (a stream with more keeps the first ones).
MAX_CHUNK_TIMES = 100_000
#: Requests in flight at once in --rate mode; an arrival beyond them waits (its send time
#: is when it was really sent, so the delay shows in the achieved rate).
MAX_IN_FLIGHT = 256
#: Bounds of the workload's numbers: far beyond any real benchmark, and a bound on the work.
LIMITS = {"prompt_len": (1, 1_000_000), "gen_len": (1, 1_000_000),
          "concurrency": (1, MAX_IN_FLIGHT), "max_requests": (1, 1_000_000)}
MAX_RATE = 10_000.0
MAX_DURATION_S = 24 * 3600.0
MAX_TIMEOUT_S = 3600.0
_WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
          "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
          "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we")


@dataclass(frozen=True)
class Endpoint:
    """A checked server URL: where requests go and which API they speak."""

    url: str  # as shown and stored: without its query string
    scheme: str
    host: str
    port: int
    path: str
    api: str  # completions | chat

    @property
    def local(self) -> bool:
        """Whether the host is this machine (loopback), so no request leaves it."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def where(self) -> str:
        """host:port, as the device of the stored run (``endpoint:host:port``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: object) -> Endpoint:
    """``--endpoint``: an http(s) URL of an OpenAI-compatible server. A bare server
    (``http://host:8000`` or ``.../v1``) means ``/v1/completions``; a path ending in
    ``/chat/completions`` or ``/completions`` is used as given. Anything else is one
    InvalidInputError: another scheme (``file://``, ``ftp://``), credentials in the URL, no
    host, a bad port, spaces or control characters, an unknown path."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("--endpoint is empty: give the server's URL, e.g. "
                                "http://127.0.0.1:8000/v1/completions")
    text = text.strip()
    shown = repr(text[:80]) + ("..." if len(text) > 80 else "")
    if len(text) > 2048:
        raise InvalidInputError(f"--endpoint {shown} is {len(text)} characters long; at "
                                "most 2048")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInputError(f"--endpoint {shown} holds spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(f"--endpoint {shown} is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInputError(f"--endpoint {shown}: only http:// and https:// servers are "
                                f"measured, not {scheme + '://' if scheme else 'a bare path'}")
    if parts.username is not None or parts.password is not None:
        raise InvalidInputError("--endpoint holds credentials: put the key in an environment "
                                "variable and name it with --api-key-env")
    host = parts.hostname or ""
    if not host:
        raise InvalidInputError(f"--endpoint {shown} names no host")
    path = parts.path.rstrip("/")
    if path in ("", "/v1"):
        path, api = "/v1/completions", "completions"
    elif path.endswith("/chat/completions"):
        api = "chat"
    elif path.endswith("/completions"):
        api = "completions"
    else:
        raise InvalidInputError(f"--endpoint {shown}: the path must end in /v1/completions or "
                                "/v1/chat/completions (or be the bare server URL)")
    port = port or (443 if scheme == "https" else 80)
    # the URL shown and stored leaves the query out: it is sent, but it may hold a key
    url = urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))
    if parts.query:
        path += "?" + parts.query
    return Endpoint(url, scheme, host, port, path, api)


def _bounded_int(name: str, value: object) -> int:
    low, high = LIMITS[name]
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{flag} must be a whole number, not {value!r:.40}")
    if not low <= value <= high:
        raise InvalidInputError(f"{flag} is {value}; give {low} to {high:,}")
    return value


def _bounded_float(flag: str, value: object, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{flag} must be a number, not {value!r:.40}")
    if not (math.isfinite(value) and 0 < value <= high):
        raise InvalidInputError(f"{flag} is {value}; give a number above 0 and at most {high:g}")
    return float(value)


@dataclass(frozen=True)
class EndpointLoad:
    """The workload: request shapes, arrivals and bounds. ``rate`` (Poisson, requests/s) or
    ``concurrency`` (closed loop); neither means one client at a time."""

    prompt_len: int = 512
    gen_len: int = 128
    lengths: str = "fixed"  # fixed | lognormal | uniform (0.5x-1.5x) | exponential (capped 4x)
    rate: float | None = None
    concurrency: int | None = None
    max_requests: int = 32
    duration_s: float = 30.0
    request_timeout_s: float = 60.0
    model: str = ""
    seed: int = 0

    def checked(self) -> EndpointLoad:
        """This load, every field checked (InvalidInputError naming the flag)."""
        _bounded_int("prompt_len", self.prompt_len)
        _bounded_int("gen_len", self.gen_len)
        _bounded_int("max_requests", self.max_requests)
        if self.lengths not in LENGTHS:
            raise InvalidInputError(f"--lengths {self.lengths!r:.40}: use one of "
                                    f"{', '.join(LENGTHS)}")
        if self.rate is not None and self.concurrency is not None:
            raise InvalidInputError("give --rate (Poisson arrivals) or --concurrency "
                                    "(closed loop), not both")
        if self.rate is not None:
            _bounded_float("--rate", self.rate, MAX_RATE)
        if self.concurrency is not None:
            _bounded_int("concurrency", self.concurrency)
        _bounded_float("--duration", self.duration_s, MAX_DURATION_S)
        _bounded_float("--request-timeout", self.request_timeout_s, MAX_TIMEOUT_S)
        if not isinstance(self.model, str) or len(self.model) > 512:
            raise InvalidInputError("--model must be a name of at most 512 characters")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidInputError(f"--seed must be a whole number, not {self.seed!r:.40}")
        return self

    @property
    def clients(self) -> int:
        return self.concurrency or 1

    def shapes(self) -> list[tuple[int, int]]:
        """(prompt, generated) tokens asked of each request, seeded."""
        rng = random.Random(self.seed)
        return [(self._draw(rng, self.prompt_len), self._draw(rng, self.gen_len))
                for _ in range(self.max_requests)]

    def _draw(self, rng: random.Random, mean: int) -> int:
        if self.lengths == "uniform":
            return max(1, round(rng.uniform(0.5, 1.5) * mean))
        if self.lengths == "exponential":
            return max(1, min(round(rng.expovariate(1.0 / mean)), 4 * mean))
        if self.lengths == "lognormal":
            return max(1, round(mean * math.exp(rng.gauss(0.0, LOGNORMAL_SIGMA))))
        return mean

    def arrivals(self) -> list[float]:
        """Send offsets (s from the start) of each request in --rate mode (Poisson)."""
        rng, at, out = random.Random(self.seed + 1), 0.0, []
        for _ in range(self.max_requests):
            out.append(at)
            at += rng.expovariate(self.rate or 1.0)
        return out


@dataclass(frozen=True)
class RequestRecord:
    """One request as this client saw it. Times are seconds: ``sent_s`` from the run's
    start, the others from this request's send. ``output_tokens`` is the server's own count
    (``usage.completion_tokens``) when it sends one (``tokens_source="usage"``), otherwise the
    content chunks counted (``"chunks"``: one token each, as servers stream them)."""

    index: int
    prompt_len: int  # asked (words sent; the server's count is prompt_tokens)
    gen_len: int  # asked (max_tokens)
    sent_s: float
    first_token_s: float | None = None
    chunk_s: tuple[float, ...] = ()
    end_s: float | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None
    tokens_source: str = "chunks"
    status: str = "ok"  # ok | error
    http_status: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class _Live:
    """A request in flight: its connection (shut down to cancel it) and what arrived."""

    index: int
    prompt_len: int
    gen_len: int
    sent_s: float
    t0: float
    conn: http.client.HTTPConnection | None = None
    chunk_s: list[float] = field(default_factory=list)
    tokens: int = 0
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    http_status: int | None = None

    def record(self, clock: float, error: str = "") -> RequestRecord:
        usage = self.usage_tokens is not None
        return RequestRecord(
            self.index, self.prompt_len, self.gen_len, self.sent_s,
            self.chunk_s[0] if self.chunk_s else None, tuple(self.chunk_s[:MAX_CHUNK_TIMES]),
            clock - self.t0, self.usage_tokens if usage else self.tokens, self.prompt_tokens,
            "usage" if usage else "chunks", "error" if error else "ok", self.http_status,
            error)


class _Failed(Exception):
    """One request failed: the message is its record's ``error``."""


def _prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def request_body(endpoint: Endpoint, load: EndpointLoad, prompt: str, gen_len: int) -> bytes:
    """The JSON body of one streaming request. ``ignore_eos`` (vLLM, SGLang, TGI accept it)
    asks for exactly ``max_tokens``; ``stream_options.include_usage`` asks for the server's
    own token counts in the last chunk."""
    body: dict[str, object] = {"model": load.model, "max_tokens": gen_len, "stream": True,
                               "temperature": 0.0, "ignore_eos": True,
                               "stream_options": {"include_usage": True}}
    if endpoint.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return json.dumps(body).encode()


def _connection(endpoint: Endpoint, timeout: float) -> http.client.HTTPConnection:
    if endpoint.scheme == "https":
        return http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)


def check_reachable(endpoint: Endpoint, timeout_s: float = 5.0) -> None:
    """A TCP connection to the server, before anything is sent: BackendUnavailableError in
    one line when nothing listens (the commonest mistake: the server is not up yet)."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BackendUnavailableError(f"cannot reach {endpoint.where} ({reason}): is the "
                                      "server running, and is the URL right?") from None


def _text_of(chunk: dict, api: str) -> str:
    """The generated text one parsed chunk carries ('' for role-only or usage chunks)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return ""
    first = choices[0]
    if not isinstance(first, dict):
        raise _Failed("malformed chunk: a choice is not an object")
    if api == "chat":
        delta = first.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = first.get("text")
    if text is not None and not isinstance(text, str):
        raise _Failed("malformed chunk: its text is not a string")
    return text or ""


def _snippet(data: bytes, limit: int = 120) -> str:
    text = " ".join(data[:4 * limit].decode("utf-8", "replace").split())[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)


def _stream(live: _Live, resp: http.client.HTTPResponse, endpoint: Endpoint,
            deadline: float, clock: Callable[[], float], sock_timeout: Callable[[], None]
            ) -> None:
    """Read the event stream of ``resp`` into ``live`` until ``[DONE]``; _Failed otherwise."""
    total, lines = 0, 0
    max_lines = 8 * live.gen_len + 1024  # an endless stream is cut here, or at the deadline
    while True:
        sock_timeout()
        line = resp.readline(MAX_LINE_BYTES + 1)
        now = clock()
        if not line:
            raise _Failed("stream ended before [DONE]: the server closed the connection")
        if len(line) > MAX_LINE_BYTES:
            raise _Failed(f"a stream line over {MAX_LINE_BYTES >> 20} MiB: not an event stream")
        total += len(line)
        lines += 1
        if total > MAX_RESPONSE_BYTES or lines > max_lines:
            raise _Failed(f"stream went on past {lines} lines / {total >> 10} KiB for "
                          f"max_tokens={live.gen_len}: endless stream cut")
        if now > deadline:
            raise _Failed("stream still going at the per-request timeout")
        text = line.strip()
        if not text or text.startswith(b":") or not text.startswith(b"data:"):
            continue  # blank separators, comments, event:/id: fields
        payload = text[5:].strip()
        if payload == b"[DONE]":
            return
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            raise _Failed(f"malformed chunk (not JSON): {_snippet(payload)!r}") from None
        if not isinstance(chunk, dict):
            raise _Failed(f"malformed chunk (not an object): {_snippet(payload)!r}")
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise _Failed(f"server error in the stream: {str(message)[:160]}")
        if _text_of(chunk, endpoint.api):
            live.tokens += 1
            live.chunk_s.append(now - live.t0)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            done, asked = usage.get("completion_tokens"), usage.get("prompt_tokens")
            if isinstance(done, int) and not isinstance(done, bool) and 0 <= done < 1 << 40:
                live.usage_tokens = done
            if isinstance(asked, int) and not isinstance(asked, bool) and 0 <= asked < 1 << 40:
                live.prompt_tokens = asked


def _one(live: _Live, endpoint: Endpoint, body: bytes, headers: dict[str, str],
         timeout_s: float, clock: Callable[[], float]) -> RequestRecord:
    """Send one request and read its stream; every failure becomes the record's error."""
    deadline = live.t0 + timeout_s
    conn = live.conn
    assert conn is not None

    def sock_timeout() -> None:  # every socket operation waits at most what is left
        left = max(deadline - clock(), 0.001)
        if conn.sock is not None:
            conn.sock.settimeout(left)

    try:
        conn.request("POST", endpoint.path, body=body, headers=headers)
        sock_timeout()
        resp = conn.getresponse()
        live.http_status = resp.status
        if resp.status != 200:
            raise _Failed(f"HTTP {resp.status} {_snippet(resp.reason.encode(), 40)}: "
                          f"{_snippet(resp.read(2048)) or 'no body'}")
        kind = (resp.getheader("Content-Type") or "").lower()
        if "application/json" in kind:
            raise _Failed(f"the server answered JSON, not a stream: "
                          f"{_snippet(resp.read(2048))!r} (does it support \"stream\": true?)")
        _stream(live, resp, endpoint, deadline, clock, sock_timeout)
        return live.record(clock())
    except _Failed as exc:
        return live.record(clock(), str(exc))
    except TimeoutError:
        return live.record(clock(), f"no data within the per-request timeout ({timeout_s:g} s)")
    except (OSError, http.client.HTTPException) as exc:
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
            str(exc)[:120] or type(exc).__name__)
        return live.record(clock(), f"connection failed: {what}")
    except Exception as exc:  # noqa: BLE001 - one request's surprise must not end the run
        return live.record(clock(), f"client error: {type(exc).__name__}: {str(exc)[:120]}")
    finally:
        conn.close()


def drive(endpoint: Endpoint, load: EndpointLoad, on_record: Callable[[RequestRecord], None],
          api_key: str | None = None, clock: Callable[[], float] = time.perf_counter) -> bool:
    """Send ``load`` to ``endpoint``; ``on_record`` gets each record as its request ends,
    in this (the calling) thread, so it may write to a store. Returns True if the run ended
    by itself, False if it was cut at its bound (duration + request timeout). Ctrl-C (a
    KeyboardInterrupt in this thread) cancels the requests in flight, hands their partial
    records to ``on_record`` and re-raises."""
    load = load.checked()
    shapes = load.shapes()
    rng = random.Random(load.seed + 2)
    prompts = {n: _prompt(rng, n) for n in sorted({p for p, _ in shapes})} if len(
        {p for p, _ in shapes}) <= 64 else None
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    done: queue.Queue[RequestRecord] = queue.Queue()
    stop = threading.Event()
    lock = threading.Lock()
    live: dict[int, _Live] = {}
    start = clock()
    stop_sending = start + load.duration_s

    def send(index: int) -> None:
        p, g = shapes[index]
        prompt = prompts[p] if prompts else _prompt(random.Random(load.seed + 3 + index), p)
        body = request_body(endpoint, load, prompt, g)
        now = clock()
        item = _Live(index, p, g, now - start, now,
                     _connection(endpoint, load.request_timeout_s))
        with lock:
            live[index] = item
        try:
            record = _one(item, endpoint, body, headers, load.request_timeout_s, clock)
            if api_key and api_key in record.error:
                record = _scrub(record, api_key)
        finally:
            with lock:
                live.pop(index, None)
        done.put(record)

    next_index = iter(range(load.max_requests))

    def claim() -> int | None:
        with lock:
            if stop.is_set() or clock() >= stop_sending:
                return None
            return next(next_index, None)

    def client() -> None:
        while (index := claim()) is not None:
            send(index)

    threads: list[threading.Thread] = []

    def poisson() -> None:
        slots = threading.Semaphore(MAX_IN_FLIGHT)
        for at in load.arrivals():
            if stop.wait(max(start + at - clock(), 0.0)) or (index := claim()) is None:
                return
            slots.acquire()

            def one(i: int = index) -> None:
                try:
                    send(i)
                finally:
                    slots.release()

            worker = threading.Thread(target=one, daemon=True, name=f"chipfit-request-{index}")
            with lock:
                threads.append(worker)
            worker.start()

    starters = ([threading.Thread(target=poisson, daemon=True, name="chipfit-arrivals")]
                if load.rate is not None else
                [threading.Thread(target=client, daemon=True, name=f"chipfit-client-{i}")
                 for i in range(load.clients)])
    for t in starters:
        t.start()
    bound = start + load.duration_s + load.request_timeout_s + 5.0
    finished = False
    try:
        while True:
            try:
                on_record(done.get(timeout=0.05))
                continue
            except queue.Empty:
                pass
            with lock:
                threads[:] = [t for t in threads if t.is_alive()]  # --rate: one per request
                busy = bool(live) or bool(threads)
            if not busy and not any(t.is_alive() for t in starters) and done.empty():
                finished = True
                break
            if clock() > bound:
                break
    except KeyboardInterrupt:
        _cancel(stop, lock, live, done, on_record, clock, "interrupted (Ctrl-C or SIGTERM)")
        raise
    if not finished:
        _cancel(stop, lock, live, done, on_record, clock, "cut at the run's bound")
    return finished


def _cancel(stop: threading.Event, lock: threading.Lock, live: dict[int, _Live],
            done: queue.Queue[RequestRecord], on_record: Callable[[RequestRecord], None],
            clock: Callable[[], float], why: str) -> None:
    """Stop sending, shut the connections in flight, and hand on what they had."""
    stop.set()
    with lock:
        pending = list(live.values())
    for item in pending:
        with contextlib.suppress(OSError, AttributeError):
            if item.conn is not None and item.conn.sock is not None:
                item.conn.sock.shutdown(socket.SHUT_RDWR)
    reported, until = set(), clock() + 1.0
    while clock() < until and len(reported) < len(pending):
        try:
            record = done.get(timeout=0.05)
        except queue.Empty:
            continue
        reported.add(record.index)
        cut = not record.ok and any(p.index == record.index for p in pending)
        on_record(replace(record, error=why) if cut else record)
    for item in pending:
        if item.index not in reported:
            on_record(item.record(clock(), why))
    for record in _drain(done):
        on_record(record)


def _drain(done: queue.Queue[RequestRecord]) -> Iterator[RequestRecord]:
    while True:
        try:
            yield done.get_nowait()
        except queue.Empty:
            return


def _scrub(record: RequestRecord, secret: str) -> RequestRecord:
    return replace(record, error=record.error.replace(secret, "***"))
