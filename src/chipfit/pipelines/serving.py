"""``chipfit llm --rate/--concurrency/--slo-*``: serving a language model to many users.

Gathers what :mod:`chipfit.analysis.serving` simulates: for each hardware target, the
device configurations (tensor-parallel degree ``tp``, pipeline stages ``pp``) whose memory
holds the weights, one prefill chunk and at least one request's KV cache; each one's step
cost from the LLM roofline scaled by the chosen stack's fitted efficiencies; the fewest
replicas that serve the load within the SLO; what it delivers and costs. Then the answer:
the cheapest configuration that meets the SLO, or, when none does, the closest one and the
target that binds.

Stacks (``--stack``) and where their efficiencies come from:

- ``tensorrt-llm`` (``optimized`` is the same): factors fitted on the published TensorRT-LLM
  rows of ``hardware/data/llm_results.toml`` (NVIDIA's performance.md tables);
- ``llamacpp``: factors fitted on the published llama.cpp rows (llama-bench tables);
- ``vllm``, ``compiled`` (torch.compile, gpt-fast-like) and ``xla`` (JetStream on TPU):
  the data has no published rows of theirs, so TensorRT-LLM's factors are borrowed and the
  band is at least 50%, said in every row's basis.

Prices are the catalog's ``price_usd_hr`` per device (the basis the catalog states for each
entry: a whole-VM price divided by its GPUs where the source is a VM); energy is at TDP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chipfit.analysis.llm import (
    PREFILL_CHUNK_TOKENS,
    LlmArch,
    LlmRun,
    median,
    tp_candidates,
)
from chipfit.analysis.serving import (
    Engine,
    Option,
    Plan,
    Slo,
    Workload,
    percentile,
    plan_for,
    simulate,
    step_cost,
    with_users,
)
from chipfit.errors import ChipfitError, InvalidInputError, UsageError

__all__ = ["SERVING_STACKS", "ServeReport", "ServeRow", "serve_report", "stack_bands",
           "static_service"]

#: --stack -> (published family whose factors are used, whether they are borrowed, what it is)
SERVING_STACKS: dict[str, tuple[str, bool, str]] = {
    "vllm": ("vLLM", False, "vLLM-like (paged attention, continuous batching)"),
    "tensorrt-llm": ("TensorRT-LLM", False, "TensorRT-LLM-like (in-flight batching, fused "
                     "kernels, CUDA graphs)"),
    "optimized": ("TensorRT-LLM", False, "TensorRT-LLM-like (in-flight batching, fused "
                  "kernels, CUDA graphs)"),
    "llamacpp": ("llama.cpp", False, "llama.cpp server-like"),
    "compiled": ("TensorRT-LLM", True, "torch.compile (gpt-fast-like)"),
    "xla": ("TensorRT-LLM", True, "XLA (JetStream-like on TPU)"),
}
#: the largest tensor-parallel group searched by default: one 8-device node (NVLink/ICI)
MAX_TP = 8
#: Requests simulated per configuration: the service question, and the service line beside
#: a static question (chipfit llm without serving flags, chipfit advise on an LLM), which
#: searches the same configurations at half the requests so the static answer stays quick.
SERVE_REQUESTS = 400
STATIC_SERVICE_REQUESTS = 200
MAX_SEQS = 256  # vLLM's default max_num_seqs (pipelines.llm.SERVING_MAX_SEQS)
#: when no SLO is given: MLPerf Inference's Llama-2-70B Server latency constraints (the
#: benchmark rules' TTFT <= 2 s and TPOT <= 200 ms), applied at p90
DEFAULT_SLO = (2.0, 0.2)
#: strata of the published rows (metric -> stratum) for the bands
STRATA = {"decode_tokens_per_s": "batch-1 decode", "ttft": "TTFT",
          "prefill_tokens_per_s": "TTFT", "throughput": "aggregate throughput"}
STRATA_ORDER = ("TTFT", "batch-1 decode", "aggregate throughput", "online throughput",
                "online TTFT", "latency-bounded")


def stratum(case: Any) -> str:
    """The band stratum of a published case: online-serving rows (a concurrency sweep
    against a server) apart from static batches."""
    if getattr(case, "concurrency", 0):
        return "online TTFT" if case.metric == "ttft" else "online throughput"
    return STRATA.get(case.metric, "")
COVERAGE = 0.8


def _band_from(errors: Sequence[float]) -> float:
    """The smallest multiplicative band holding at least 80% of ``errors``."""
    logs = sorted(abs(math.log1p(e)) for e in errors if e > -1)
    if not logs:
        return math.nan
    return math.expm1(logs[max(math.ceil(COVERAGE * len(logs)) - 1, 0)])


def stack_bands(stack: str) -> dict[str, tuple[float, str]]:
    """Per stratum (TTFT, batch-1 decode, aggregate throughput, latency-bounded), the band of
    ``stack``: the 80th percentile of its family's leave-one-out errors on the published
    rows; 50% at least, and said so, where the rows are another stack's or absent."""
    from chipfit.pipelines.llm import _stack_family, published_cases

    family, borrowed, _ = SERVING_STACKS[stack]
    cases = [c for c in published_cases() if _stack_family(c.stack) == family]
    one_device = len({c.hardware for c in cases}) == 1
    out: dict[str, tuple[float, str]] = {}
    for name in STRATA_ORDER:
        errs = [c.loo_error for c in cases if stratum(c) == name]
        band = _band_from(errs)
        if not errs or not math.isfinite(band):
            out[name] = (0.5, f"default 50%: no published {family} {name} rows")
        elif borrowed:
            out[name] = (max(band, 0.5), f"at least 50%: {family}'s factors borrowed (no "
                         f"published {stack} rows); {family} LOO band {band:.0%} over "
                         f"{len(errs)} rows")
        elif one_device:
            out[name] = (max(band, 0.5), f"at least 50%: {len(errs)} published {family} "
                         f"{name} rows, all on {cases[0].hardware} (LOO band {band:.0%}; "
                         "other devices unvalidated)")
        else:
            out[name] = (band, f"80% of {len(errs)} published {family} {name} rows "
                         "inside, leave-one-out (hardware/data/llm_results.toml)")
    return out


@dataclass(frozen=True)
class ServeRow:
    """One hardware target: its chosen plan, every configuration tried, or why none."""

    hardware: str
    name: str
    plan: Plan | None
    tried: tuple[Plan, ...] = ()
    why: str = ""
    notes: tuple[str, ...] = ()
    pareto: tuple[tuple[int, float, float], ...] = ()  # (users, tok/s per user, per device)

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "name": self.name,
                "plan": self.plan.to_dict() if self.plan else None,
                "configurations_tried": [
                    {"tp": p.option.tp, "pp": p.option.pp, "replicas": p.replicas,
                     "devices": p.devices, "meets_slo": p.meets, "binding": p.binding or None,
                     "capacity_per_replica": p.capacity, "source": "predicted"}
                    for p in self.tried],
                "why": self.why or None, "notes": list(self.notes),
                "pareto": [{"users": u, "tokens_per_s_per_user": a,
                            "output_tokens_per_s_per_device": b, "source": "predicted"}
                           for u, a, b in self.pareto]}


@dataclass(frozen=True)
class ServeReport:
    """The service question's answer over the hardware targets."""

    arch: LlmArch
    run: LlmRun
    workload: Workload
    slo: Slo
    slo_source: str  # "given" or "default (MLPerf Server-style)"
    stack: str
    rows: tuple[ServeRow, ...]
    best: Plan | None
    closest: Plan | None
    notes: tuple[str, ...] = field(default=())

    def answer(self) -> str:
        """The first line: which hardware, how many, what each user gets, what it costs."""
        w, q = self.workload, self.slo.percentile
        plan = self.best or self.closest
        if plan is None:
            why = "; ".join(f"{r.hardware}: {r.why}" for r in self.rows if r.why)[:300]
            return f"No hardware can serve {self.arch.name} here ({why or 'none given'})."
        o, r = plan.option, plan.result
        tpot = percentile(r.tpot, 50)
        per_user = f"{1 / tpot:.0f} tok/s each" if tpot and tpot > 0 else "1 token each"
        users = (f"{w.concurrency} user{'s' if w.concurrency != 1 else ''}"
                 if w.concurrency is not None else
                 f"{w.rate:g} req/s (~{r.mean_in_system * plan.replicas:.0f} in flight)")
        cost = plan.costs()["usd_per_million_tokens"]
        money = f"${cost:.2g} per 1M tokens" if cost is not None else "no price in the catalog"
        config = (f"{plan.devices}x {o.name} (TP{o.tp}" + (f", PP{o.pp}" if o.pp > 1 else "")
                  + f", {plan.replicas} replica{'s' if plan.replicas > 1 else ''})")
        figures = (f"{users} at {per_user}, TTFT p{q:g} {fmt_seconds(r.p('ttft', q))}, "
                   f"{money}")
        if self.best is not None:
            return f"Use {config}: {figures} (predicted; SLO {self.slo.describe()})."
        target = (f"TTFT p{q:g} {fmt_seconds(r.p('ttft', q))} > {self.slo.ttft_s:g} s"
                  if plan.binding == "TTFT" and self.slo.ttft_s else
                  f"TPOT p{q:g} {r.p('tpot', q) * 1000:.0f} ms > {self.slo.tpot_s * 1000:g} ms"
                  if plan.binding == "TPOT" and self.slo.tpot_s else
                  "a request outgrows the KV cache" if plan.binding == "memory" else
                  plan.binding)
        return (f"Nothing meets the SLO ({self.slo.describe()}): closest is {config}, binding "
                f"constraint {plan.binding}: {target} (predicted).")

    def to_dict(self) -> dict[str, Any]:
        w = self.workload
        return {"model": self.arch.name, "answer": self.answer(),
                "workload": {"prompt_len": w.prompt_len, "gen_len": w.gen_len,
                             "distribution": w.distribution, "rate_rps": w.rate,
                             "concurrency": w.concurrency, "requests": w.requests,
                             "seed": w.seed, "description": w.describe(),
                             "dtype": self.run.weight_dtype, "kv_dtype": self.run.kv_dtype},
                "slo": {"ttft_s": self.slo.ttft_s, "tpot_s": self.slo.tpot_s,
                        "percentile": self.slo.percentile, "source": self.slo_source},
                "stack": self.stack,
                "best": self.best.to_dict() if self.best else None,
                "closest": (self.closest.to_dict() if self.closest and not self.best
                            else None),
                "rows": [r.to_dict() for r in self.rows], "notes": list(self.notes)}


def fmt_seconds(s: float) -> str:
    """``0.8 s``, ``41 ms``, ``950 us`` (three significant figures)."""
    if not math.isfinite(s):
        return "-"
    if s >= 1:
        return f"{s:.3g} s"
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} us"


def _price(spec: Any) -> tuple[float | None, str]:
    """(USD per device-hour, basis): the catalog's price on its configured basis
    (``--price-basis``: median of the providers by default; whole-VM prices are divided per
    device there), with the provider and the date it was read."""
    try:
        chosen = spec.price()
    except ChipfitError:
        chosen = None
    if chosen is None:
        return None, "no price in the catalog"
    return chosen.usd_hr, f"{chosen.provider}, {chosen.date} ({chosen.basis})"


def _options(arch: LlmArch, run: LlmRun, key: str, stack: str, tp: int | None, pp: int,
             token_budget: int, max_seqs: int) -> tuple[list[Option], list[str], str, str]:
    """(configurations whose memory holds the model, notes, device name, why none)."""
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.llm import (
        catalog_device,
        kv_capacity_tokens,
        stack_factors,
        with_assumed_link,
    )

    spec = load_catalog()[key]
    try:
        dev = catalog_device(spec)
    except ChipfitError as exc:
        return [], [], spec.name, f"{exc} (not served)"
    if dev.memory_bytes is None:
        return [], [], dev.name, "memory capacity is not in the catalog: KV cache not sized"
    notes: list[str] = []
    if dev.link_bw is None:
        dev = with_assumed_link(dev)
        notes.append(dev.notes[-1])
    family, _, _ = SERVING_STACKS[stack]
    factors, _, _ = stack_factors(family)
    price, basis = _price(spec)
    bands = stack_bands(stack)
    band = max(b for b, _ in bands.values())
    band_basis = "; ".join(f"{k}: +-{b:.0%} ({why})" for k, (b, why) in bands.items())
    notes.append(f"{key}: price {basis}" if price is not None else f"{key}: {basis}")
    if dev.tdp_w is None:
        notes.append(f"{key}: no TDP in the catalog: energy not given")
    degrees = [tp] if tp else [t for t in tp_candidates(arch, MAX_TP)]
    if tp and arch.heads % tp:
        raise InvalidInputError(f"--tp {tp} does not divide {arch.name}'s {arch.heads} heads")
    if arch.layers % pp and pp > 1:
        notes.append(f"{arch.name}'s {arch.layers} layers split unevenly over {pp} stages")
    out = []
    for t in degrees:
        kv_tokens, fixed = kv_capacity_tokens(arch, run, dev, t, pp, token_budget, max_seqs)
        if kv_tokens < run.context:
            notes.append(f"{key} TP{t}" + (f" PP{pp}" if pp > 1 else "") +
                         f": {fixed / 1e9:.1f} GB per device before the KV cache leaves "
                         f"room for {max(kv_tokens, 0)} tokens, under one request's "
                         f"{run.context}")
            continue
        step = step_cost(arch, run, dev, t, pp, factors, token_budget, max_seqs)
        if not all(math.isfinite(s) for _, s in step.grid):
            return [], notes, dev.name, (f"no {run.weight_dtype} matmul rate or bandwidth in "
                                         "the catalog")
        out.append(Option(key, dev.name, t, pp, step, Engine(kv_tokens, token_budget,
                                                             max_seqs),
                          price, dev.tdp_w, band, band_basis, price_basis=basis))
    why = "" if out else f"no configuration up to TP{tp or MAX_TP} holds the model and one request"
    return out, notes, dev.name, why


def _better(a: Plan, b: Plan | None) -> bool:
    """Whether plan ``a`` beats ``b``: meets the SLO, then fewer devices, then cheaper."""
    if b is None:
        return True
    if a.meets != b.meets:
        return a.meets
    if a.devices != b.devices:
        return a.devices < b.devices
    ca, cb = a.costs()["usd_per_million_tokens"], b.costs()["usd_per_million_tokens"]
    return ca is not None and (cb is None or ca < cb)


def _miss(plan: Plan) -> float:
    """How far a plan misses the SLO (achieved / target on its binding figure)."""
    s, r, q = plan.slo, plan.result, plan.slo.percentile
    if plan.binding == "TTFT" and s.ttft_s:
        return r.p("ttft", q) / s.ttft_s
    if plan.binding == "TPOT" and s.tpot_s:
        return r.p("tpot", q) / s.tpot_s
    return math.inf


def _pareto(option: Option, work: Workload) -> tuple[tuple[int, float, float], ...]:
    points = []
    users = 1
    while users <= option.engine.max_seqs:
        res = simulate(option.step, option.engine,
                       with_users(replace(work, rate=None, requests=min(work.requests, 200)),
                                  users))
        tpot = percentile(res.tpot, 50)
        if tpot and tpot > 0 and math.isfinite(tpot):
            points.append((users, 1.0 / tpot, res.output_tokens_per_s / option.per_replica))
        users *= 2
    return tuple(points)


def static_service(model: str | Mapping[str, Any], hardware: Sequence[str], prompt_len: int,
                   gen_len: int, dtype: str = "bfloat16", kv_dtype: str | None = None,
                   stack: str | None = None, users: int = 1,
                   requests: int = STATIC_SERVICE_REQUESTS, **kwargs: Any) -> ServeReport | None:
    """The service answer beside a static LLM question (``chipfit llm`` without serving
    flags, ``chipfit advise LLM``): ``users`` served with continuous batching on the catalog
    keys among ``hardware`` under the default SLO. None where no catalog key is asked (only
    ``local`` or local devices) or ``stack`` serves no continuous batching (eager)."""
    from chipfit.pipelines.llm import LOCAL

    catalog = [h for h in hardware if h != LOCAL and ":" not in h]
    if not catalog or (stack is not None and stack not in SERVING_STACKS):
        return None
    return serve_report(model, catalog, prompt_len, gen_len, dtype, kv_dtype, stack,
                        concurrency=users, requests=requests, **kwargs)


def serve_report(model: str | Mapping[str, Any], hardware: Sequence[str],
                 prompt_len: int = 512, gen_len: int = 128, dtype: str = "bfloat16",
                 kv_dtype: str | None = None, stack: str | None = None,
                 rate: float | None = None, concurrency: int | None = None,
                 lengths: str = "fixed", requests: int = SERVE_REQUESTS, seed: int = 0,
                 slo_ttft: float | None = None, slo_tpot: float | None = None,
                 per_user_tokens_per_s: float | None = None, slo_percentile: float = 90.0,
                 tp: int | None = None, pp: int = 1, replicas: int | None = None,
                 devices: int | None = None, token_budget: int = PREFILL_CHUNK_TOKENS,
                 max_seqs: int = MAX_SEQS, pareto: bool = False,
                 given_lengths: Sequence[tuple[int, int]] = ()) -> ServeReport:
    """Serve ``model`` on each of ``hardware`` (catalog keys) under a workload: either
    ``rate`` requests/s (Poisson) or ``concurrency`` users; lengths ``fixed`` or
    ``lognormal`` (ShareGPT-like, seeded). The SLO is ``slo_ttft`` / ``slo_tpot`` seconds
    (or ``per_user_tokens_per_s``, i.e. TPOT = 1/that) at ``slo_percentile``; without one,
    MLPerf-Server-style TTFT <= 2 s, TPOT <= 200 ms. ``tp``/``pp``/``replicas``/``devices``
    fix the configuration; without them the fewest devices that meet the SLO are searched
    (TP up to 8, replicas as the load needs). ``pareto``: also sweep users 1, 2, 4 ... per
    hardware for the tokens/s-per-device vs per-user frontier. ``given_lengths``: each
    request's own (prompt, generated) tokens (a measured endpoint's), instead of ``lengths``
    and ``requests``."""
    from chipfit.pipelines.llm import _dedupe, parse_run
    from chipfit.workloads.llm import arch_from_config, load_config

    cfg = dict(model) if isinstance(model, Mapping) else load_config(model)
    arch = arch_from_config(cfg)
    chosen = stack or "vllm"
    if chosen not in SERVING_STACKS:
        if chosen == "eager":
            raise UsageError("--stack eager has no continuous batching to serve with: choose "
                             "vllm, tensorrt-llm, llamacpp, compiled or xla")
        from chipfit.errors import UnknownNameError

        raise UnknownNameError("stack", chosen, SERVING_STACKS)
    run = parse_run(prompt_len, gen_len, 1, dtype, kv_dtype)
    if arch.max_context and run.context > arch.max_context:
        raise InvalidInputError(f"prompt + generation = {run.context} tokens exceeds "
                                f"{arch.name}'s {arch.max_context}-token context")
    if concurrency is not None and rate is not None:
        raise UsageError("give --rate or --concurrency, not both")
    if rate is None and concurrency is None:
        concurrency = 1
    if concurrency is not None and concurrency > 1 << 20:
        raise InvalidInputError("--concurrency must be at most 1048576 users")
    if rate is not None and rate > 1e6:
        raise InvalidInputError("--rate must be at most 1e6 requests/s")
    for flag, v in (("--tp", tp), ("--pp", pp), ("--replicas", replicas),
                    ("--devices", devices), ("--token-budget", token_budget),
                    ("--max-seqs", max_seqs)):
        if v is not None and not 1 <= v <= 1 << 16:
            raise InvalidInputError(f"{flag} must be between 1 and 65536")
    if replicas is not None and devices is not None:
        raise UsageError("give --replicas or --devices, not both")
    if per_user_tokens_per_s is not None:
        if slo_tpot is not None:
            raise UsageError("give --slo-tpot or --per-user-tokens-per-s, not both")
        if not (math.isfinite(per_user_tokens_per_s) and per_user_tokens_per_s > 0):
            raise InvalidInputError("--per-user-tokens-per-s must be a positive, finite number")
        slo_tpot = 1.0 / per_user_tokens_per_s
    given = slo_ttft is not None or slo_tpot is not None
    slo = (Slo(slo_ttft, slo_tpot, slo_percentile) if given
           else Slo(DEFAULT_SLO[0], DEFAULT_SLO[1], slo_percentile))
    asked = tuple((int(p), int(g)) for p, g in given_lengths)
    work = Workload(run.prompt_len, run.gen_len, rate, concurrency, lengths,
                    len(asked) if asked else requests, seed, arch.max_context, asked)
    targets = _dedupe(t.strip() for t in hardware if t.strip())
    if not targets:
        raise UsageError("no hardware given: pass --hardware h100-sxm,l4 ...")
    if run.gen_len < 2 and slo.tpot_s is not None:
        slo = replace(slo, tpot_s=None)
    rows = []
    for key in targets:
        if key == "local" or ":" in key:
            rows.append(ServeRow(key, key, None, why="serving is predicted for catalog "
                                 "devices only (a local CPU serves no continuous batching)"))
            continue
        options, notes, name, why = _options(arch, run, key, chosen, tp, pp, token_budget,
                                             max_seqs)
        best: Plan | None = None
        tried = []
        for opt in sorted(options, key=lambda o: o.per_replica):
            if best is not None and best.meets and opt.per_replica > best.devices:
                continue  # cannot need fewer devices than the plan in hand
            n = replicas
            if devices is not None:
                if devices % opt.per_replica:
                    continue
                n = devices // opt.per_replica
            plan = plan_for(opt, work, slo, n)
            tried.append(plan)
            if _better(plan, best):
                best = plan
        if best is None and options and devices is not None:
            why = f"--devices {devices} is not a multiple of any configuration tried"
        points = _pareto(best.option, work) if pareto and best is not None else ()
        rows.append(ServeRow(key, name, best, tuple(tried), why, tuple(notes), points))
    plans = [r.plan for r in rows if r.plan is not None]
    meeting = [p for p in plans if p.meets]

    def cost_key(p: Plan) -> tuple[float, int]:
        c = p.costs()["usd_per_million_tokens"]
        return (c if c is not None else math.inf, p.devices)

    best_all = min(meeting, key=cost_key) if meeting else None
    closest = min(plans, key=_miss) if plans and not meeting else None
    stack_note = SERVING_STACKS[chosen]
    notes = [f"stack: {stack_note[2]}; efficiencies fitted on published {stack_note[0]} rows"
             + (" (borrowed: none of this stack's own)" if stack_note[1] else ""),
             f"workload: {work.describe()}",
             f"engine: chunked prefill, {token_budget} tokens per step, at most {max_seqs} "
             "sequences, paged KV cache reserving each request's prompt and generation "
             "(no preemption)",
             "replicas share the load evenly; pipeline stages run one after another (no "
             "micro-batch interleaving modelled)",
             "all latencies and tokens/s are predicted; prices and TDP are catalog figures; "
             "energy at TDP (upper bound; host and cooling not included)",
             "$ per 1M prompt / generated tokens: each phase charged its share of the busy "
             "time as the roofline attributes it"]
    if not given:
        notes.append("no SLO given: MLPerf-Server-style TTFT <= 2 s, TPOT <= 200 ms (at "
                     f"p{slo.percentile:g}) used")
    return ServeReport(arch, run, work, slo, "given" if given else "default (MLPerf Server-"
                       "style)", chosen, tuple(rows), best_all, closest, tuple(notes))


def loo_summary() -> dict[str, dict[str, float]]:
    """Per stratum of the published rows: leave-one-out median |error|, the 80% band and its
    leave-one-case-out coverage (what benchmarks/llm_serving.py reports)."""
    from chipfit.pipelines.llm import published_cases

    out: dict[str, dict[str, float]] = {}
    cases = published_cases()
    for name in ("batch-1 decode", "TTFT", "aggregate throughput", "online throughput",
                 "online TTFT"):
        errs = [c.loo_error for c in cases if stratum(c) == name]
        inside = 0
        for i, e in enumerate(errs):
            band = _band_from(errs[:i] + errs[i + 1:])
            inside += abs(math.log1p(e)) <= math.log1p(band) if math.isfinite(band) else 0
        out[name] = {"rows": len(errs), "loo_median_abs_error": median(abs(e) for e in errs),
                        "band": _band_from(errs),
                        "loo_band_coverage": inside / len(errs) if errs else math.nan}
    return out
