"""``chipfit llm --endpoint``'s pure parts: URL checks, the workload, and the statistics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.analysis.endpoint_stats import error_kind, percentile, summarize
from chipfit.backends.endpoint import EndpointLoad, RequestRecord, parse_endpoint
from chipfit.errors import InvalidInputError


def _rec(i: int, sent: float, ttft: float, gaps: list[float], ok: bool = True,
         usage: int | None = None, error: str = "") -> RequestRecord:
    chunks = [ttft]
    for g in gaps:
        chunks.append(chunks[-1] + g)
    tokens = usage if usage is not None else len(chunks)
    return RequestRecord(i, 8, len(chunks), sent, ttft, tuple(chunks), chunks[-1] + 0.001,
                         tokens, 8 if usage is not None else None,
                         "usage" if usage is not None else "chunks",
                         "ok" if ok else "error", 200, error)


def test_percentile_interpolates_like_numpy():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0
    assert math.isnan(percentile([], 0.5))
    assert percentile([0.0, 10.0], 0.9) == pytest.approx(9.0)


def test_summary_of_known_records():
    records = [_rec(0, 0.0, 0.1, [0.01] * 4), _rec(1, 0.5, 0.3, [0.02] * 4),
               _rec(2, 1.0, 0.2, [], ok=False, error="HTTP 500 Internal: boom")]
    s = summarize(records, slo_ttft_s=0.2, slo_tpot_s=0.05, loads=[(0.5, 2.0)])
    assert (s.requests, s.ok, s.failed) == (3, 2, 1)
    assert s.errors == (("HTTP 500 Internal", 1),)
    assert s.ttft.n == 2 and s.ttft.p50 == pytest.approx(0.2)
    assert s.itl.n == 8 and s.itl.p50 == pytest.approx(0.015)
    assert s.output_tokens == 10 and s.tokens_source == "chunks"
    assert s.good == 1  # request 1 misses the TTFT SLO
    assert s.span_s == pytest.approx(1.0 + 0.2 + 0.001)  # the failed one ends last
    assert s.output_tokens_per_s == pytest.approx(10 / s.span_s)
    assert s.busy is False and s.to_dict()["errors"] == {"HTTP 500 Internal": 1}


def test_no_slo_means_no_goodput_and_busy_unknown_without_loads():
    s = summarize([_rec(0, 0.0, 0.1, [0.01])])
    assert s.good is None and s.goodput is None and s.busy is None
    assert summarize([_rec(0, 0.0, 0.1, [])], loads=[(40.0, 2.0)]).busy is True


def test_error_kind_is_the_text_before_the_colon():
    assert error_kind("connection failed: Connection refused") == "connection failed"
    assert error_kind("") == "error"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 5),
                          st.lists(st.floats(0, 1), max_size=6), st.booleans()),
                min_size=0, max_size=12),
       st.one_of(st.none(), st.floats(0.001, 10)))
def test_statistics_properties(rows, slo):
    records = [_rec(i, sent, ttft, gaps, ok) for i, (sent, ttft, gaps, ok) in enumerate(rows)]
    s = summarize(records, slo_ttft_s=slo)
    assert s.ok + s.failed == s.requests == len(records)
    assert sum(n for _, n in s.errors) == s.failed
    for p in (s.ttft, s.itl, s.tpot, s.e2e):
        if p.n:
            assert p.p50 <= p.p90 + 1e-12 and p.p90 <= p.p99 + 1e-12
        else:
            assert math.isnan(p.p50)
    if s.ttft.n and s.e2e.n:
        assert s.ttft.p50 <= s.e2e.p99 + 1e-9  # the first token comes before the end
    if slo is not None:
        assert 0 <= s.good <= s.ok
    if s.span_s > 0:
        assert s.output_tokens_per_s >= 0 and s.request_rate <= s.requests / s.span_s + 1e-9
    s.to_dict()  # always serialisable: no NaN left


@pytest.mark.parametrize("url, api, path", [
    ("http://127.0.0.1:8000", "completions", "/v1/completions"),
    ("http://localhost:8000/v1/", "completions", "/v1/completions"),
    ("https://host.example/v1/chat/completions", "chat", "/v1/chat/completions"),
    ("http://[::1]:9/x/v1/completions?a=1", "completions", "/x/v1/completions?a=1"),
])
def test_parse_endpoint_accepts_servers(url, api, path):
    e = parse_endpoint(url)
    assert (e.api, e.path) == (api, path) and "?" not in e.url
    assert e.local == ("example" not in url)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.1/v1", "javascript:alert(1)", "http://", "",
    "127.0.0.1:8000", "http://user:pw@127.0.0.1/v1", "http://127.0.0.1/v1/other",
    "http://127.0.0.1:99999/v1", "http://127.0.0.1/\x1b[31m", "http://h/" + "a" * 3000,
    "http://127.0.0.1 /v1", 42,
])
def test_parse_endpoint_refuses(url):
    with pytest.raises(InvalidInputError) as info:
        parse_endpoint(url)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [
    {"rate": -1.0}, {"rate": 0.0}, {"rate": math.inf}, {"rate": 1e9}, {"concurrency": 0},
    {"concurrency": 10**6}, {"max_requests": 10**9}, {"max_requests": 0},
    {"rate": 1.0, "concurrency": 2}, {"duration_s": -5.0}, {"request_timeout_s": math.nan},
    {"prompt_len": 0}, {"gen_len": True}, {"lengths": "[red]x"}, {"seed": "1"},
])
def test_load_refuses_bad_workloads(kwargs):
    with pytest.raises(InvalidInputError):
        EndpointLoad(**kwargs).checked()


def test_load_shapes_and_arrivals_are_seeded():
    load = EndpointLoad(prompt_len=100, gen_len=10, lengths="uniform", rate=4.0,
                        max_requests=50, seed=3)
    assert load.shapes() == load.shapes() and load.arrivals() == load.arrivals()
    assert all(50 <= p <= 150 and 5 <= g <= 15 for p, g in load.shapes())
    gaps = [b - a for a, b in zip(load.arrivals(), load.arrivals()[1:], strict=False)]
    assert 0.1 < sum(gaps) / len(gaps) < 0.5  # Poisson at 4/s: mean gap 0.25 s
    assert EndpointLoad(gen_len=7).shapes()[0] == (512, 7)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=80),
                 st.builds(lambda s, rest: f"{s}://{rest}",
                           st.sampled_from(["http", "https", "HTTP", "file", "ftp", "data", ""]),
                           st.text(alphabet="ab1:/@[]%.?#v ", max_size=40))))
def test_any_endpoint_text_is_an_http_server_or_one_line_error(text):
    try:
        e = parse_endpoint(text)
    except InvalidInputError as exc:
        assert "\n" not in str(exc)
        return
    assert e.scheme in ("http", "https") and e.host and 1 <= e.port <= 65535
    assert e.api in ("completions", "chat") and e.path.startswith("/")
    assert not any(c.isspace() for c in e.url)


def test_prediction_beside_the_measurement_simulates_the_requests_sent():
    from chipfit.pipelines.endpoint import _predictions

    load = EndpointLoad(prompt_len=64, gen_len=16, lengths="uniform", concurrency=2,
                        max_requests=4)
    stats = summarize([_rec(i, 0.0, 0.1, [0.01] * 3) for i in range(4)])
    [bf16], notes = _predictions("llama-3.2-1b", ["l4"], load, stats, {})
    [int8], _ = _predictions("llama-3.2-1b", ["l4"], load, stats, {"dtype": "int8"})
    assert bf16.source == "predicted" and bf16.band > 0 and bf16.devices == 1
    assert 1 <= bf16.batch <= 2  # two users' sequences decode together at most
    assert int8.tpot_s < bf16.tpot_s  # half the weight bytes per decode step
    assert bf16.ttft_s < bf16.e2e_s and "medians" in bf16.basis
    assert "continuous batching (simulated)" in notes[0] and "2 concurrent users" in notes[0]
    # the four requests' own lengths, not the medians asked
    shapes = load.shapes()
    mean = round(sum(p for p, _ in shapes) / 4)
    assert f"the 4 requests' own lengths (mean prompt {mean}," in notes[0]
    # a local device or the eager stack has no continuous batching: the static batch
    [local], why = _predictions("llama-3.2-1b", ["l4"], load, stats, {"stack": "eager"})
    assert local.batch == 2 and "static batch of 2 concurrent" in why[0]
    assert "--stack eager" in why[0]
    none, why = _predictions("no-such-model", ["l4"], load, stats, {})
    assert none == () and "no prediction" in why[0]
