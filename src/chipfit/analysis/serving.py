"""Serving a language model: continuous batching, chunked prefill, a paged KV cache.

Pure: a per-step cost (:class:`StepCost`, built from :mod:`chipfit.analysis.llm`'s roofline
by :func:`step_cost`), an engine's limits (:class:`Engine`) and a workload
(:class:`Workload`) in; per-request latencies, throughput, goodput and cost out. Nothing
here reads the catalog or measures.

The engine is simulated step by step (iteration-level scheduling, as Orca, OSDI 2022, and
vLLM, SOSP 2023, do), over a bounded number of requests:

- every step decodes one token for each running sequence and spends the rest of a token
  budget (``Engine.token_budget``) on prompt chunks of the waiting requests, first come
  first served (chunked prefill, Agrawal et al., "Sarathi-Serve", OSDI 2024);
- a request is admitted when the paged KV cache can reserve its prompt and its whole
  generation, in blocks of ``Engine.block`` tokens (no preemption: TensorRT-LLM's
  "guaranteed no evict" policy); the cache's capacity therefore sets how many sequences run
  at once, up to ``Engine.max_seqs``;
- a step's time is the roofline of its tokens (:class:`StepCost`): the matrix products of
  all its tokens at once (the weights read once), the KV cache each sequence reads, and
  prefill attention's query-key pairs;
- the first token of a request comes out of the step that finishes its prompt; each later
  step gives one more. TTFT is arrival to that step's end (queueing included), TPOT the
  mean gap of the later tokens, e2e arrival to the last token.

Arrivals are Poisson at ``rate`` requests/s (seeded) or a closed loop of ``concurrency``
users, each sending its next request when the last one ends (no think time; the users' first
requests spread over one lone request's time, so they do not run in lock-step). Replicas split
the load evenly (a random split of a Poisson stream is Poisson at ``rate / replicas``).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.errors import InvalidInputError

__all__ = ["DISTRIBUTIONS", "Engine", "Plan", "ServingResult", "Slo", "StepCost", "Workload",
           "max_load", "percentile", "plan_for", "saturation_rate", "simulate", "step_cost",
           "with_users"]

DISTRIBUTIONS = ("fixed", "lognormal")
#: sigma of the log of lengths in the ``lognormal`` workload: ShareGPT-like spread (prompts and
#: replies of chat logs span two orders of magnitude; a sigma of 1 puts p90 at 3.6x the median)
LOGNORMAL_SIGMA = 1.0
PERCENTILES = (50, 90, 99)
MAX_REQUESTS = 10_000  # bounds the work of one simulation (and of a search: x configurations)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (NaN for no values)."""
    xs = sorted(v for v in values if not math.isnan(v))
    if not xs:
        return math.nan
    rank = max(math.ceil(q / 100.0 * len(xs)) - 1, 0)
    return xs[min(rank, len(xs) - 1)]


@dataclass(frozen=True)
class Workload:
    """What the service is asked: lengths (fixed or a seeded lognormal around the given
    medians, capped at ``max_context``), and either a Poisson ``rate`` (requests/s) or a
    closed loop of ``concurrency`` users; ``requests`` bounds the simulation."""

    prompt_len: int
    gen_len: int
    rate: float | None = None
    concurrency: int | None = None
    distribution: str = "fixed"
    requests: int = 400
    seed: int = 0
    max_context: int = 0  # 0: no cap
    #: The (prompt, generated) tokens of each request when they are known (a measured
    #: endpoint's own requests, in the order sent): replaces the distribution, and
    #: ``requests`` is their number.
    given: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.prompt_len <= 0 or self.gen_len <= 0:
            raise InvalidInputError("--prompt-len and --gen-len must be positive")
        if (self.rate is None) == (self.concurrency is None):
            raise InvalidInputError("give either --rate (requests/s) or --concurrency (users)")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise InvalidInputError("--rate must be a positive, finite number of requests/s")
        if self.concurrency is not None and self.concurrency <= 0:
            raise InvalidInputError("--concurrency must be a positive number of users")
        if self.distribution not in DISTRIBUTIONS:
            raise InvalidInputError(f"--lengths {self.distribution!r:.20}: a serving prediction "
                                    f"takes {' or '.join(DISTRIBUTIONS)} (uniform and "
                                    f"exponential are for --endpoint)")
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise InvalidInputError(f"--requests must be between 1 and {MAX_REQUESTS}")
        if self.given and (len(self.given) != self.requests
                           or any(p < 1 or g < 1 for p, g in self.given)):
            raise InvalidInputError("given request lengths must be one positive (prompt, "
                                    "generated) pair per request")

    def lengths(self) -> list[tuple[int, int]]:
        """(prompt, generated) tokens of each request, reproducible from ``seed``."""
        if self.given:
            return list(self.given)
        if self.distribution == "fixed":
            return [(self.prompt_len, self.gen_len)] * self.requests
        rng = random.Random(self.seed * 7919 + 1)
        out = []
        for _ in range(self.requests):
            p = max(1, round(self.prompt_len * math.exp(rng.gauss(0.0, LOGNORMAL_SIGMA))))
            g = max(1, round(self.gen_len * math.exp(rng.gauss(0.0, LOGNORMAL_SIGMA))))
            if self.max_context:
                p = min(p, max(self.max_context - 1, 1))
                g = min(g, max(self.max_context - p, 1))
            out.append((p, g))
        return out

    def describe(self) -> str:
        lengths = (f"the {self.requests} requests' own lengths (mean prompt {self.prompt_len}, "
                   f"generate {self.gen_len} tokens)" if self.given else
                   f"prompt {self.prompt_len}, generate {self.gen_len} tokens"
                   if self.distribution == "fixed" else
                   f"prompt and generated lengths lognormal (sigma {LOGNORMAL_SIGMA:g}, "
                   f"ShareGPT-like) around medians {self.prompt_len} and {self.gen_len}, "
                   f"seed {self.seed}")
        load = (f"Poisson arrivals at {self.rate:g} requests/s" if self.rate is not None
                else f"{self.concurrency} concurrent users (closed loop)")
        return f"{lengths}; {load}; {self.requests} requests simulated"


@dataclass(frozen=True)
class Slo:
    """Latency targets at a percentile of requests (None: no target on that figure)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    percentile: float = 90.0

    def __post_init__(self) -> None:
        for name, v in (("--slo-ttft", self.ttft_s), ("--slo-tpot", self.tpot_s)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InvalidInputError(f"{name} must be a positive, finite number of seconds")
        if not 0 < self.percentile <= 100:
            raise InvalidInputError("the SLO percentile must be in (0, 100]")

    @property
    def empty(self) -> bool:
        return self.ttft_s is None and self.tpot_s is None

    def describe(self) -> str:
        parts = ([f"TTFT <= {self.ttft_s:g} s"] if self.ttft_s is not None else []) + (
            [f"TPOT <= {self.tpot_s * 1000:.3g} ms ({1 / self.tpot_s:.3g} tok/s per user)"]
            if self.tpot_s is not None else [])
        return (" and ".join(parts) or "none") + f" at p{self.percentile:g}"

    def met(self, ttft: Sequence[float], tpot: Sequence[float]) -> bool:
        return self.binding(ttft, tpot) == ""

    def binding(self, ttft: Sequence[float], tpot: Sequence[float]) -> str:
        """'' when met, else which target is missed ('TTFT' or 'TPOT')."""
        if self.ttft_s is not None and percentile(ttft, self.percentile) > self.ttft_s:
            return "TTFT"
        if self.tpot_s is not None and percentile(tpot, self.percentile) > self.tpot_s:
            return "TPOT"
        return ""

    def request_ok(self, ttft: float, tpot: float) -> bool:
        return ((self.ttft_s is None or ttft <= self.ttft_s)
                and (self.tpot_s is None or math.isnan(tpot) or tpot <= self.tpot_s))


@dataclass(frozen=True)
class StepCost:
    """Seconds of one engine step (one forward pass on one replica) from its tokens.

    ``grid``: (tokens, seconds) of a pass over that many tokens with no context (the matrix
    products, weights read once, all-reduces, launch floors), interpolated linearly between
    points; ``kv_s_per_token``: reading one context token's KV cache; ``pair_s``: one prefill
    query-key pair of attention; ``logit_s``: the LM head's compute per sequence emitting a
    token. ``prefill_factor`` / ``decode_factor`` are a stack's fitted efficiencies (time
    factors); ``request_s`` its fixed time per request, added to TTFT and e2e; ``seq_s`` its
    host time per sequence emitting a token in a step (a Python server's sampling,
    detokenising and streaming), fitted where online rows exist."""

    grid: tuple[tuple[float, float], ...]
    kv_s_per_token: float
    pair_s: float
    logit_s: float = 0.0
    prefill_factor: float = 1.0
    decode_factor: float = 1.0
    request_s: float = 0.0
    pp_s: float = 0.0  # pipeline stages' hand-over latency per step
    pp_token_s: float = 0.0  # and their activation transfer per token
    seq_s: float = 0.0  # a serving stack's host time per sequence emitting a token (fitted)

    def linear_s(self, tokens: float) -> float:
        g = self.grid
        if tokens <= g[0][0]:
            return g[0][1]
        xs = [x for x, _ in g]
        i = bisect.bisect_left(xs, tokens)
        if i >= len(g):  # beyond the grid: extend its last slope
            (x0, y0), (x1, y1) = g[-2], g[-1]
        else:
            (x0, y0), (x1, y1) = g[i - 1], g[i]
        return y0 + (y1 - y0) * (tokens - x0) / (x1 - x0)

    def seconds(self, prefill_tokens: float, pairs: float, prefill_ctx: float,
                decode_seqs: float, decode_ctx: float, emitting: float) -> tuple[float, float]:
        """(seconds, share of them attributed to prefill) of one step."""
        n = prefill_tokens + decode_seqs
        if n <= 0:
            return 0.0, 0.0
        lin = self.linear_s(n)
        pre = (lin * prefill_tokens / n + self.kv_s_per_token * prefill_ctx
               + self.pair_s * pairs) * self.prefill_factor
        dec = (lin * decode_seqs / n + self.kv_s_per_token * decode_ctx) * self.decode_factor
        total = (pre + dec + (self.logit_s + self.seq_s) * emitting + self.pp_s
                 + self.pp_token_s * n)
        return total, (pre / (pre + dec) if pre + dec > 0 else 0.0)


@dataclass(frozen=True)
class Engine:
    """One replica's limits: KV-cache capacity (tokens, all its devices together), the
    token budget per step, the most sequences per step, the KV block size."""

    kv_tokens: int
    token_budget: int = 8192
    max_seqs: int = 1024
    block: int = 16

    def blocks(self, tokens: int) -> int:
        return -(-tokens // self.block)


@dataclass(frozen=True)
class ServingResult:
    """One simulated replica under one workload (every figure ``predicted``)."""

    ttft: tuple[float, ...]
    tpot: tuple[float, ...]
    e2e: tuple[float, ...]
    prompt_tokens: int
    output_tokens: int
    makespan_s: float
    busy_s: float
    prefill_share: float  # of the busy time, attributed to prefill
    mean_in_system: float  # time-average of requests in the system (Little's L)
    mean_running: float  # time-average of sequences decoding together
    itl_p: tuple[float, ...]  # inter-token latency (step time seen by decoding sequences)
    rejected: int = 0  # requests longer than the whole KV cache: never served
    source: str = "predicted"

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.makespan_s if self.makespan_s > 0 else math.nan

    @property
    def total_tokens_per_s(self) -> float:
        return ((self.output_tokens + self.prompt_tokens) / self.makespan_s
                if self.makespan_s > 0 else math.nan)

    @property
    def requests_per_s(self) -> float:
        return len(self.e2e) / self.makespan_s if self.makespan_s > 0 else math.nan

    def p(self, what: str, q: float) -> float:
        return percentile(getattr(self, what), q)

    def goodput(self, slo: Slo) -> float:
        """Requests/s that met every target (each request judged alone)."""
        ok = sum(slo.request_ok(a, b) for a, b in zip(self.ttft, self.tpot, strict=True))
        return ok / self.makespan_s if self.makespan_s > 0 else math.nan

    def attainment(self, slo: Slo) -> float:
        if not self.ttft:
            return math.nan
        ok = sum(slo.request_ok(a, b) for a, b in zip(self.ttft, self.tpot, strict=True))
        return ok / len(self.ttft)


@dataclass
class _Req:
    arrival: float
    prompt: int
    gen: int
    done_prompt: int = 0
    first: float = math.nan
    end: float = math.nan
    finish_at: int = 0  # the decode-step counter value at which it is done


def simulate(step: StepCost, engine: Engine, work: Workload) -> ServingResult:
    """One replica serving ``work`` (see the module's description)."""
    lengths = work.lengths()
    rng = random.Random(work.seed)
    reqs: list[_Req] = []
    rejected = 0
    pending: deque[_Req] = deque()  # arrived (or to arrive) in time order
    if work.rate is not None:
        t = 0.0
        for p, g in lengths:
            reqs.append(_Req(t, p, g))
            t += rng.expovariate(work.rate)
        pending.extend(reqs)
        lengths_left: deque[tuple[int, int]] = deque()
    else:
        # closed loop: the users' first requests are spread over one lone request's time,
        # as a running service's users are (started together, fixed lengths would keep them
        # in lock-step, every prompt prefilled at once, which no real load does)
        lengths_left = deque(lengths)
        users = min(work.concurrency or 1, len(lengths_left))
        pre, _ = step.seconds(work.prompt_len, work.prompt_len * (work.prompt_len + 1) / 2,
                              work.prompt_len, 0, 0, 1)
        dec, _ = step.seconds(0, 0, 0, 1, work.prompt_len + work.gen_len / 2, 1)
        lone = pre + max(work.gen_len - 1, 0) * dec
        for i in range(users):
            p, g = lengths_left.popleft()
            r = _Req(lone * i / users, p, g)
            reqs.append(r)
            pending.append(r)

    now = 0.0
    free_blocks = engine.blocks(engine.kv_tokens)
    waiting: deque[_Req] = deque()  # arrived, not admitted
    prefilling: list[_Req] = []  # admitted, prompt not done
    running: list[tuple[int, int, _Req]] = []  # heap (finish counter, id, request)
    counter = 0  # decode steps so far
    ctx_sum = 0.0  # context tokens of the running sequences
    busy = pre_busy = area = run_area = 0.0
    itl: list[tuple[float, int]] = []
    n_in = 0  # requests in the system
    done = 0
    total = len(lengths)

    def arrive_until(t: float) -> None:
        nonlocal n_in, area
        while pending and pending[0].arrival <= t:
            r = pending.popleft()
            area += t - r.arrival  # in the system since it arrived, within the last step
            waiting.append(r)
            n_in += 1

    def finish(r: _Req, at: float) -> None:
        nonlocal n_in, done, free_blocks, area
        area += at - now  # the stack's time per request after the step (request_s)
        r.end = at
        n_in -= 1
        done += 1
        free_blocks += engine.blocks(r.prompt + r.gen)
        if lengths_left:  # closed loop: the user sends the next request now
            p, g = lengths_left.popleft()
            nr = _Req(at, p, g)
            reqs.append(nr)
            pending.appendleft(nr)

    guard = 0
    while done + rejected < total:
        guard += 1
        if guard > 50_000_000:  # pragma: no cover - a bug, not an input
            raise RuntimeError("serving simulation did not finish")
        arrive_until(now)
        # admit waiting requests while blocks and sequence slots allow
        while waiting and len(running) + len(prefilling) < engine.max_seqs:
            r = waiting[0]
            need = engine.blocks(r.prompt + r.gen)
            if need > engine.blocks(engine.kv_tokens):
                waiting.popleft()
                rejected += 1
                n_in -= 1
                area -= now - r.arrival  # never served: not part of Little's L
                r.end = math.nan
                if lengths_left:
                    p, g = lengths_left.popleft()
                    nr = _Req(now, p, g)
                    reqs.append(nr)
                    pending.appendleft(nr)
                continue
            if need > free_blocks:
                break
            free_blocks -= need
            prefilling.append(waiting.popleft())
        if not running and not prefilling:
            if not pending:
                if waiting:  # pragma: no cover - blocks are freed only by finishing
                    raise RuntimeError("serving simulation stalled")
                break
            now = max(now, pending[0].arrival)
            continue
        # this step's prompt chunks
        budget = engine.token_budget - len(running)
        chunks: list[tuple[_Req, int]] = []
        for r in prefilling:
            if budget <= 0:
                break
            c = min(r.prompt - r.done_prompt, budget)
            chunks.append((r, c))
            budget -= c
        nseq = len(running)
        if not chunks and nseq:
            # decode only: jump to the next finish or arrival in one go
            k = running[0][0] - counter
            base, _ = step.seconds(0, 0, 0, nseq, ctx_sum, nseq)
            slope = step.kv_s_per_token * step.decode_factor * nseq
            if pending:
                gap = pending[0].arrival - now
                if gap > 0 and (base > 0 or slope > 0):
                    # steps until the cumulative time reaches the arrival
                    if slope > 0:
                        a, b = slope / 2, base - slope / 2
                        j = (-b + math.sqrt(b * b + 4 * a * gap)) / (2 * a)
                    else:
                        j = gap / base
                    k = max(1, min(k, math.ceil(j)))
                elif gap <= 0:
                    k = 1
            k = max(int(k), 1)
            dt = k * base + slope * k * (k - 1) / 2
            area += n_in * dt
            run_area += nseq * dt
            busy += dt
            itl.append((dt / k, nseq * k))
            now += dt
            counter += k
            ctx_sum += nseq * k
            while running and running[0][0] <= counter:
                _, _, r = heapq.heappop(running)
                ctx_sum -= r.prompt + r.gen
                finish(r, now)
            continue
        pre_tokens = sum(c for _, c in chunks)
        pairs = sum(c * r.done_prompt + c * (c + 1) / 2 for r, c in chunks)
        pre_ctx = sum(r.done_prompt + c for r, c in chunks)
        completing = [r for r, c in chunks if r.done_prompt + c >= r.prompt]
        dt, share = step.seconds(pre_tokens, pairs, pre_ctx, nseq, ctx_sum,
                                 nseq + len(completing))
        area += n_in * dt
        run_area += nseq * dt
        busy += dt
        pre_busy += dt * share
        if nseq:
            itl.append((dt, nseq))
        now += dt
        if nseq:
            counter += 1
            ctx_sum += nseq
        for r, c in chunks:
            r.done_prompt += c
        for r in completing:
            prefilling.remove(r)
            r.first = now + step.request_s
            if r.gen <= 1:
                finish(r, r.first)
            else:
                heapq.heappush(running, (counter + r.gen - 1, id(r), r))
                ctx_sum += r.prompt + 1
        while running and running[0][0] <= counter:
            _, _, r = heapq.heappop(running)
            ctx_sum -= r.prompt + r.gen
            finish(r, now + step.request_s)

    served = [r for r in reqs if not math.isnan(r.end)]
    start = min((r.arrival for r in reqs), default=0.0)
    end = max((r.end for r in served), default=start)
    makespan = end - start
    ttft = tuple(r.first - r.arrival for r in served)
    tpot = tuple((r.end - r.first) / (r.gen - 1) if r.gen > 1 else math.nan for r in served)
    e2e = tuple(r.end - r.arrival for r in served)
    itl_sorted = sorted(itl)
    weight = sum(w for _, w in itl_sorted)

    def itl_q(q: float) -> float:
        if not weight:
            return math.nan
        acc, target = 0.0, q / 100.0 * weight
        for v, w in itl_sorted:
            acc += w
            if acc >= target:
                return v
        return itl_sorted[-1][0]

    span = max(makespan, 1e-30)
    return ServingResult(ttft, tpot, e2e, sum(r.prompt for r in served),
                         sum(r.gen for r in served), makespan, busy,
                         pre_busy / busy if busy else 0.0, area / span, run_area / span,
                         tuple(itl_q(q) for q in PERCENTILES), rejected)


# --------------------------------------------------------------------------- inverse


def _largest_int(ok: Callable[[int], bool], limit: int) -> int:
    lo, hi = 0, 1
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def max_load(step: StepCost, engine: Engine, work: Workload, slo: Slo,
             rel_tol: float = 0.05) -> float:
    """The largest load one replica serves within ``slo``: requests/s for a rate workload
    (bisection to ``rel_tol``), users for a concurrency workload. 0 if not even the lightest
    load meets it."""
    def ok_sim(w: Workload) -> bool:
        res = simulate(step, engine, w)
        return not res.rejected and slo.met(res.ttft, res.tpot)

    if work.concurrency is not None:
        return float(_largest_int(lambda n: ok_sim(with_users(work, n)),
                                  min(engine.max_seqs * 4, 1 << 16)))
    light = replace(work, rate=None, concurrency=1, requests=min(work.requests, 8))
    one = simulate(step, engine, light)
    if one.rejected or not slo.met(one.ttft, one.tpot):
        return 0.0
    hi = 1.5 * saturation_rate(step, engine, work)
    lo_ok = 0.0
    while ok_sim(replace(work, rate=hi)) and hi < 1e7:  # the estimate was low: go up
        lo_ok, hi = hi, hi * 2
    for _ in range(60):
        if hi - lo_ok <= rel_tol * hi:
            break
        mid = (lo_ok + hi) / 2 if lo_ok else hi / 2
        if ok_sim(replace(work, rate=mid)):
            lo_ok = mid
        else:
            hi = mid
    return lo_ok


def saturation_rate(step: StepCost, engine: Engine, work: Workload) -> float:
    """Requests/s one replica completes when always full: as many sequences as the KV cache
    and ``max_seqs`` allow decoding at half their generation, plus each prompt's prefill (an
    estimate that brackets the bisection of :func:`max_load`)."""
    p, g = work.prompt_len, work.gen_len
    seqs = max(1, min(engine.max_seqs, engine.kv_tokens // max(p + g, 1)))
    decode, _ = step.seconds(0, 0, 0, seqs, seqs * (p + g / 2), seqs)
    chunk = min(p, engine.token_budget)
    prefill, _ = step.seconds(chunk, chunk * (chunk + 1) / 2, chunk, 0, 0, 1)
    per_request = g * decode / seqs + prefill * p / chunk
    return 1.0 / per_request if per_request > 0 else 1e6


# ------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Option:
    """One device configuration a plan may use: ``tp`` x ``pp`` devices per replica."""

    hardware: str
    name: str
    tp: int
    pp: int
    step: StepCost
    engine: Engine
    price_usd_hr: float | None  # per device
    tdp_w: float | None  # per device
    band: float = 0.5
    band_basis: str = ""
    notes: tuple[str, ...] = ()
    price_basis: str = ""  # what the price covers (a whole VM per GPU, the GPU alone ...)

    @property
    def per_replica(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True)
class Plan:
    """A configuration sized for the workload: replicas, what each delivers, cost."""

    option: Option
    replicas: int
    result: ServingResult  # one replica at its share of the load
    slo: Slo
    capacity: float | None  # the most load one replica serves within the SLO (req/s or users)
    meets: bool
    binding: str = ""  # the target missed (TTFT / TPOT / memory), '' when met
    load_unit: str = "requests/s"
    notes: tuple[str, ...] = field(default=())

    @property
    def devices(self) -> int:
        return self.replicas * self.option.per_replica

    def _per_million(self, per_device_hour: float | None, tokens_per_s: float) -> float | None:
        if per_device_hour is None or not tokens_per_s or not math.isfinite(tokens_per_s):
            return None
        return per_device_hour * self.option.per_replica / (tokens_per_s * 3600.0) * 1e6

    def costs(self) -> dict[str, float | None]:
        """$ and kWh per 1M tokens: all tokens, and prompt / generated apart (each phase
        charged the share of the busy time the roofline attributes to it; idle time is
        charged to both in proportion)."""
        r, price = self.result, self.option.price_usd_hr
        kw = None if self.option.tdp_w is None else self.option.tdp_w / 1000.0
        share = r.prefill_share
        pre_tps = r.prompt_tokens / (r.makespan_s * share) if share > 0 and r.makespan_s else 0
        out_tps = (r.output_tokens / (r.makespan_s * (1 - share))
                   if share < 1 and r.makespan_s else 0)
        return {"usd_per_million_tokens": self._per_million(price, r.total_tokens_per_s),
                "usd_per_million_output_tokens": self._per_million(price, out_tps),
                "usd_per_million_prompt_tokens": self._per_million(price, pre_tps),
                "usd_per_million_output_tokens_all_cost": self._per_million(
                    price, r.output_tokens_per_s),
                "kwh_per_million_tokens": self._per_million(kw, r.total_tokens_per_s)}

    def to_dict(self) -> dict[str, Any]:
        o, r = self.option, self.result
        lat = {name: {f"p{q}": r.p(name, q) for q in PERCENTILES}
               for name in ("ttft", "tpot", "e2e")}
        lat["itl"] = dict(zip((f"p{q}" for q in PERCENTILES), r.itl_p, strict=True))
        per_user = percentile(r.tpot, 50)
        return {
            "hardware": o.hardware, "name": o.name, "tp": o.tp, "pp": o.pp,
            "replicas": self.replicas, "devices": self.devices, "meets_slo": self.meets,
            "binding": self.binding or None,
            "capacity_per_replica": self.capacity, "capacity_unit": self.load_unit,
            "latency_s": lat,
            "tokens_per_s_per_user_p50": 1.0 / per_user if per_user and per_user > 0 else None,
            "output_tokens_per_s_per_replica": r.output_tokens_per_s,
            "total_tokens_per_s_per_replica": r.total_tokens_per_s,
            "output_tokens_per_s_per_device": r.output_tokens_per_s / o.per_replica,
            "total_tokens_per_s_per_device": r.total_tokens_per_s / o.per_replica,
            "goodput_requests_per_s_per_replica": r.goodput(self.slo),
            "slo_attainment": r.attainment(self.slo),
            "mean_sequences_running": r.mean_running,
            "kv_cache_tokens_per_replica": o.engine.kv_tokens,
            "rejected_requests": r.rejected,
            **self.costs(),
            "price_usd_hr_per_device": o.price_usd_hr, "price_basis": o.price_basis or None,
            "tdp_w_per_device": o.tdp_w,
            "band": o.band, "band_basis": o.band_basis,
            "notes": list(o.notes + self.notes), "source": r.source,
            "provenance": {
                "latency_s": "predicted", "tokens_per_s": "predicted",
                "goodput": "predicted", "costs": "predicted (catalog price x predicted time)",
                "energy": "estimated (catalog TDP x predicted time)",
                "price_usd_hr_per_device": "catalog", "tdp_w_per_device": "catalog",
                "kv_cache_tokens_per_replica": "estimated (memory arithmetic)",
                "capacity_per_replica": "predicted (bisection of simulations)"}}


def with_users(work: Workload, users: int) -> Workload:
    """``work`` as a closed loop of ``users``, with at least two requests per user (up to
    :data:`MAX_REQUESTS`) so every user is measured past its first request."""
    return replace(work, concurrency=users,
                   requests=max(work.requests, min(2 * users, MAX_REQUESTS)))


def _split(work: Workload, replicas: int) -> Workload:
    if work.rate is not None:
        return replace(work, rate=work.rate / replicas)
    return with_users(work, max(1, -(-(work.concurrency or 1) // replicas)))


def plan_for(option: Option, work: Workload, slo: Slo, replicas: int | None = None,
             max_replicas: int = 1024) -> Plan:
    """``option`` sized for ``work``: with ``replicas`` given, simulated as asked; else the
    fewest replicas whose share of the load one replica serves within ``slo`` (from
    :func:`max_load`). Where none would (not even the lightest load meets the SLO, or a
    request outgrows the KV cache), the plan at one replica with ``meets=False`` and the
    binding constraint."""
    unit = "requests/s" if work.rate is not None else "users"
    load = work.rate if work.rate is not None else float(work.concurrency or 1)
    if replicas is None and not slo.empty:
        cap = max_load(option.step, option.engine, work, slo)
        if cap <= 0:
            res = simulate(option.step, option.engine, work)
            why = "memory" if res.rejected else (slo.binding(res.ttft, res.tpot) or "TTFT")
            return Plan(option, 1, res, slo, 0.0, False, why, unit)
        n = max(1, math.ceil(load / cap - 1e-9)) if work.rate is not None else max(
            1, math.ceil(load / max(math.floor(cap), 1)))
        if n > max_replicas:
            res = simulate(option.step, option.engine, _split(work, max_replicas))
            return Plan(option, max_replicas, res, slo, cap, False,
                        slo.binding(res.ttft, res.tpot) or "TTFT", unit,
                        (f"over {max_replicas} replicas would be needed",))
        res = simulate(option.step, option.engine, _split(work, n))
        binding = "memory" if res.rejected else slo.binding(res.ttft, res.tpot)
        # the bisection's tolerance can leave the last replica just short: add one
        if binding and binding != "memory" and n < max_replicas:
            n += 1
            res = simulate(option.step, option.engine, _split(work, n))
            binding = slo.binding(res.ttft, res.tpot)
        return Plan(option, n, res, slo, cap, not binding, binding, unit)
    n = replicas or 1
    res = simulate(option.step, option.engine, _split(work, n))
    binding = "memory" if res.rejected else slo.binding(res.ttft, res.tpot)
    return Plan(option, n, res, slo, None, not binding, binding, unit)


def step_cost(arch: Any, run: Any, dev: Any, tp: int, pp: int = 1,
              factors: dict[str, float] | None = None, token_budget: int = 8192,
              max_seqs: int = 1024) -> StepCost:
    """The :class:`StepCost` of ``arch`` on ``tp`` x ``pp`` devices ``dev`` from
    :mod:`chipfit.analysis.llm`'s roofline (one pass over n tokens at no context for the
    grid; the KV read and prefill attention terms from the same byte and FLOP counts).
    Pipeline stages run one after another for one step (no micro-batch interleaving is
    modelled), so ``pp`` adds its activation transfers and divides memory, not time."""
    from chipfit.analysis.llm import (
        COMPUTE_DTYPE,
        KV_DTYPES,
        _kv_heads_per_device,
        forward_ops,
        pass_time,
    )

    dtype = "float32" if run.act_bytes >= 4.0 else COMPUTE_DTYPE[run.weight_dtype]
    top = max(token_budget + max_seqs, 2)
    ns, n = [], 1
    while n < top:
        ns.append(n)
        n *= 2
    ns.append(top)
    grid = []
    for n in ns:
        ops = [o for o in forward_ops(arch, run, n, 1, 0.0, tp, False) if o.name != "attention"]
        grid.append((float(n), pass_time(ops, dev, dtype, tp, False).seconds))
    kv_cols = _kv_heads_per_device(arch, tp) * arch.head_dim
    kv_tok = arch.layers * 2 * kv_cols * KV_DTYPES[run.kv_dtype]
    q_cols = arch.heads * arch.head_dim / tp
    big = 1e12
    rate = dev.rate(dtype, big, math.inf)
    f = dict(factors or {})
    pp_s = pp_tok = 0.0
    if pp > 1:  # each stage hands its activations to the next over the link
        link = dev.link_bw or math.nan
        pp_s, pp_tok = (pp - 1) * dev.link_latency_s, (pp - 1) * arch.hidden * run.act_bytes / link
    return StepCost(tuple(grid), kv_tok / dev.bw(big), 4.0 * arch.layers * q_cols / rate,
                    2.0 * arch.hidden * arch.vocab / tp / rate,
                    f.get("prefill", 1.0),
                    f.get("decode_tp", f.get("decode", 1.0)) if tp * pp > 1
                    else f.get("decode", 1.0), f.get("request_s", 0.0), pp_s,
                    pp_tok, f.get("seq_s", 0.0))
