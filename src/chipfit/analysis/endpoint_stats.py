"""What a measured LLM server did: latency percentiles, token rates and goodput.

Pure: request records in (:class:`chipfit.backends.endpoint.RequestRecord`, or anything with
the same fields), numbers out. Definitions, as serving benchmarks use them (vLLM's
``benchmark_serving``, MLPerf Inference Server):

- TTFT: from a request's send to its first content chunk;
- ITL: the gaps between consecutive content chunks of one request, pooled over requests;
- TPOT: per request, (end-to-end - TTFT) / (output tokens - 1), for requests of 2+ tokens;
- e2e: from send to the end of the stream;
- rates over the span from the first send to the last end; prompt tokens are the server's
  counts (``usage.prompt_tokens``) where it sent them, otherwise the words sent;
- goodput: successful requests per second that met every SLO given (TTFT and TPOT).

Percentiles interpolate linearly between order statistics (numpy's default). Failed
requests count in ``failed`` and in the error kinds; they never enter a latency.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from chipfit.timing.contention import overloaded

__all__ = ["EndpointStats", "Percentiles", "RecordLike", "error_kind", "percentile",
           "summarize"]


class RecordLike(Protocol):
    index: int
    prompt_len: int
    gen_len: int
    sent_s: float
    first_token_s: float | None
    chunk_s: tuple[float, ...]
    end_s: float | None
    output_tokens: int
    prompt_tokens: int | None
    tokens_source: str
    status: str
    error: str


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear between order statistics; NaN when
    there are none."""
    data = sorted(v for v in values if math.isfinite(v))
    if not data:
        return math.nan
    pos = min(max(q, 0.0), 1.0) * (len(data) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


@dataclass(frozen=True)
class Percentiles:
    """p50, p90 and p99 of ``n`` values (seconds); NaN when ``n`` is 0."""

    p50: float
    p90: float
    p99: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        kept = [v for v in values if math.isfinite(v)]
        return cls(percentile(kept, 0.5), percentile(kept, 0.9), percentile(kept, 0.99),
                   len(kept))


def error_kind(error: str) -> str:
    """The kind of a failure, for counting: its text up to the first colon (``HTTP 500
    Internal Server Error``, ``malformed chunk (not JSON)``, ``connection failed``)."""
    return (error.split(":", 1)[0].strip() or "error")[:60]


def _tpot(r: RecordLike) -> float | None:
    if r.first_token_s is None or r.end_s is None or r.output_tokens < 2:
        return None
    return max(r.end_s - r.first_token_s, 0.0) / (r.output_tokens - 1)


@dataclass(frozen=True)
class EndpointStats:
    """A measured run of requests (``source="measured"``)."""

    requests: int
    ok: int
    failed: int
    errors: tuple[tuple[str, int], ...]  # kind -> count, most frequent first
    ttft: Percentiles
    itl: Percentiles
    tpot: Percentiles
    e2e: Percentiles
    output_tokens: int
    prompt_tokens: int
    prompt_tokens_source: str  # server | sent | mixed
    tokens_source: str  # usage | chunks | mixed (how output tokens were counted)
    span_s: float
    output_tokens_per_s: float
    total_tokens_per_s: float
    request_rate: float  # successful requests per second achieved
    offered_rate: float | None  # --rate asked (Poisson), None in closed loop
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    good: int | None  # successful requests within every SLO (None: no SLO given)
    goodput: float | None  # good requests per second
    busy: bool | None  # the client's machine was overloaded (None: load not known)
    source: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = dict(self.errors)
        return _finite(data)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _source(kinds: set[str], one: str) -> str:
    return next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else one)


def summarize(records: Sequence[RecordLike], slo_ttft_s: float | None = None,
              slo_tpot_s: float | None = None, offered_rate: float | None = None,
              loads: Sequence[tuple[float, float]] = ()) -> EndpointStats:
    """The statistics of ``records``. ``loads``: (1-minute load, CPUs) pairs read on the
    client machine during the run; ``busy`` is whether any was overloaded
    (:func:`chipfit.timing.contention.overloaded`)."""
    ok = [r for r in records if r.status == "ok"]
    failed = [r for r in records if r.status != "ok"]
    ttft = [r.first_token_s for r in ok if r.first_token_s is not None]
    itl = [b - a for r in ok for a, b in zip(r.chunk_s, r.chunk_s[1:], strict=False)]
    tpots = {r.index: _tpot(r) for r in ok}
    e2e = [r.end_s for r in ok if r.end_s is not None]
    starts = [r.sent_s for r in records]
    ends = [r.sent_s + r.end_s for r in records if r.end_s is not None]
    span = max(ends) - min(starts) if ends and starts else 0.0
    out_tokens = sum(r.output_tokens for r in ok)
    prompt = sum(r.prompt_tokens if r.prompt_tokens is not None else r.prompt_len for r in ok)
    prompt_kinds = {"server" if r.prompt_tokens is not None else "sent" for r in ok}

    def rate(count: float) -> float:
        return count / span if span > 0 else math.nan

    good = None
    if slo_ttft_s is not None or slo_tpot_s is not None:
        good = sum(1 for r in ok
                   if (slo_ttft_s is None or (r.first_token_s is not None
                                              and r.first_token_s <= slo_ttft_s))
                   and (slo_tpot_s is None or (tpots[r.index] or 0.0) <= slo_tpot_s))
    busy = any(overloaded(load, cpus) for load, cpus in loads) if loads else None
    return EndpointStats(
        requests=len(records), ok=len(ok), failed=len(failed),
        errors=tuple(Counter(error_kind(r.error) for r in failed).most_common()),
        ttft=Percentiles.of(ttft), itl=Percentiles.of(itl),
        tpot=Percentiles.of([t for t in tpots.values() if t is not None]),
        e2e=Percentiles.of(e2e), output_tokens=out_tokens, prompt_tokens=prompt,
        prompt_tokens_source=_source(prompt_kinds, "sent"),
        tokens_source=_source({r.tokens_source for r in ok}, "chunks"),
        span_s=span, output_tokens_per_s=rate(out_tokens),
        total_tokens_per_s=rate(out_tokens + prompt), request_rate=rate(len(ok)),
        offered_rate=offered_rate, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s,
        good=good, goodput=None if good is None else rate(good), busy=busy)
