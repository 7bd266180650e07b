"""``chipfit llm --endpoint URL``: measure a real OpenAI-compatible LLM server, keep every
request, and set the measurement beside chipfit's prediction.

Each request is stored the moment it ends, as one measurement of a run of command
``llm endpoint`` (workload ``llm-endpoint``, size ``request-000042``, device
``endpoint:host:port``), so Ctrl-C, SIGTERM or a ``kill -9`` keep what was measured;
``chipfit runs`` lists the run and ``chipfit show RUN`` shows its statistics again. The
record's timings live in the measurement: ``block_times_s`` is its end-to-end time (ok
requests only), ``first_call_s`` its time to first token, and ``metadata`` the rest (send
offset, every chunk's arrival, token counts and where they came from, the HTTP status).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chipfit._version import __version__
from chipfit.analysis.endpoint_stats import EndpointStats, summarize
from chipfit.backends.endpoint import (
    Endpoint,
    EndpointLoad,
    RequestRecord,
    check_reachable,
    drive,
    parse_endpoint,
)
from chipfit.errors import ChipfitError, InvalidInputError
from chipfit.paths import utc_now
from chipfit.results import Discovery, Measurement, Run, new_run_id
from chipfit.timing.contention import machine_load

__all__ = ["COMMAND", "WORKLOAD", "EndpointPrediction", "EndpointReport", "measure_endpoint",
           "records_of", "report_of_run"]

COMMAND = "llm endpoint"
WORKLOAD = "llm-endpoint"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_SLO_S = 3600.0


@dataclass(frozen=True)
class EndpointPrediction:
    """chipfit's prediction for the measured configuration on one hardware key."""

    hardware: str
    batch: int  # sequences decoding together (static: the batch; simulated: their mean)
    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None
    output_tokens_per_s: float | None  # generated tokens/s over the batch
    band: float | None
    basis: str  # what the prediction models (static batch ...) and its band's basis
    why: str = ""  # why there is none
    source: str = "predicted"
    devices: int | None = None  # per replica, where the simulator chose the configuration


@dataclass(frozen=True)
class EndpointReport:
    url: str
    api: str
    local: bool
    model: str
    load: EndpointLoad
    stats: EndpointStats
    records: tuple[RequestRecord, ...]
    run_id: str
    interrupted: bool
    cut: bool  # the run hit its bound (duration + request timeout) with requests in flight
    predictions: tuple[EndpointPrediction, ...] = ()
    notes: tuple[str, ...] = ()
    measurements: tuple[Measurement, ...] = ()  # as stored: the load evidence per request

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "api": self.api, "local": self.local, "model": self.model,
            "run_id": self.run_id, "interrupted": self.interrupted, "cut": self.cut,
            "workload": {"prompt_len": self.load.prompt_len, "gen_len": self.load.gen_len,
                         "lengths": self.load.lengths, "rate": self.load.rate,
                         "concurrency": self.load.concurrency,
                         "max_requests": self.load.max_requests,
                         "duration_s": self.load.duration_s,
                         "request_timeout_s": self.load.request_timeout_s,
                         "seed": self.load.seed},
            "measured": self.stats.to_dict(),
            "predicted": [_finite(p.__dict__) for p in self.predictions],
            "requests": [_finite({**r.__dict__, "chunk_s": list(r.chunk_s)})
                         for r in self.records],
            "notes": list(self.notes),
        }


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in data.items()}


def _slo(flag: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and 0 < value <= MAX_SLO_S):
        raise InvalidInputError(f"{flag} is {value!r:.40}; give seconds above 0 and at most "
                                f"{MAX_SLO_S:g}")
    return float(value)


def api_key_from_env(name: str | None) -> str | None:
    """The key in environment variable ``name`` (never printed, never stored)."""
    if name is None:
        return None
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise InvalidInputError(f"--api-key-env {str(name)[:40]!r} is not an environment "
                                "variable's name (letters, digits, _)")
    key = os.environ.get(name)
    if not key:
        raise InvalidInputError(f"--api-key-env {name}: that variable is not set or empty")
    if any(ord(c) < 32 or ord(c) > 126 for c in key) or len(key) > 8192:
        raise InvalidInputError(f"--api-key-env {name}: the key holds characters an HTTP "
                                "header cannot carry (controls, non-ASCII) or is over 8192 "
                                "characters")
    return key


def _measurement(r: RequestRecord, device: str, evidence: tuple[tuple[str, float], ...],
                 contended: bool | None) -> Measurement:
    meta = {"sent_s": repr(r.sent_s), "prompt_len": str(r.prompt_len),
            "gen_len": str(r.gen_len), "output_tokens": str(r.output_tokens),
            "tokens_source": r.tokens_source,
            "chunk_s": ",".join(map(repr, r.chunk_s))}
    if r.prompt_tokens is not None:
        meta["prompt_tokens"] = str(r.prompt_tokens)
    if r.http_status is not None:
        meta["http_status"] = str(r.http_status)
    if r.end_s is not None:
        meta["end_s"] = repr(r.end_s)
    ok = r.ok and r.end_s is not None and r.end_s > 0
    return Measurement(
        workload=WORKLOAD, size=f"request-{r.index:06d}", device=device, dtype="-",
        status="ok" if ok else "error", note=r.error,
        block_times_s=(r.end_s,) if ok and r.end_s is not None else (),
        first_call_s=r.first_token_s, stop_reason="request",
        items_per_call=max(1, min(r.output_tokens, 10**12)), clock="perf_counter",
        metadata=tuple(sorted(meta.items())), contended=contended, contention=evidence,
        contention_note="client machine overloaded" if contended else "", stack="stream")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t)
    except ValueError:
        return ()


def _number(meta: dict[str, str], key: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(meta[key])
    except (KeyError, ValueError):
        return None


def records_of(run: Run) -> tuple[RequestRecord, ...]:
    """The request records of a stored ``llm endpoint`` run (its measurements read back)."""
    out = []
    for m in run.measurements:
        if m.workload != WORKLOAD:
            continue
        meta = m.meta
        index = _number({"i": m.size.rpartition("-")[2]}, "i", int)
        chunks = _floats(meta.get("chunk_s", ""))
        out.append(RequestRecord(
            index if index is not None else len(out),
            _number(meta, "prompt_len", int) or 0, _number(meta, "gen_len", int) or 0,
            _number(meta, "sent_s", float) or 0.0, m.first_call_s, chunks,
            _number(meta, "end_s", float), _number(meta, "output_tokens", int) or 0,
            _number(meta, "prompt_tokens", int), meta.get("tokens_source", "chunks"),
            "ok" if m.ok else "error", _number(meta, "http_status", int), m.note))
    return tuple(out)


def _loads(run: Run) -> list[tuple[float, float]]:
    found = []
    for m in run.measurements:
        numbers = dict(m.contention)
        if "load1" in numbers and "cpus" in numbers:
            found.append((numbers["load1"], numbers["cpus"]))
    return found


def _settings(endpoint: Endpoint, load: EndpointLoad, slo_ttft: float | None,
              slo_tpot: float | None) -> dict[str, str]:
    settings = {"devices": f"endpoint:{endpoint.where}", "endpoint": endpoint.url,
                "api": endpoint.api, "model": load.model, "prompt_len": str(load.prompt_len),
                "gen_len": str(load.gen_len), "lengths": load.lengths,
                "max_requests": str(load.max_requests), "duration_s": f"{load.duration_s:g}",
                "request_timeout_s": f"{load.request_timeout_s:g}", "seed": str(load.seed)}
    if load.rate is not None:
        settings["rate"] = f"{load.rate:g}"
    else:
        settings["concurrency"] = str(load.clients)
    if slo_ttft is not None:
        settings["slo_ttft_s"] = f"{slo_ttft:g}"
    if slo_tpot is not None:
        settings["slo_tpot_s"] = f"{slo_tpot:g}"
    return settings


def _opt_float(settings: dict[str, str], key: str) -> float | None:
    try:
        value = float(settings[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def report_of_run(run: Run) -> EndpointStats:
    """The statistics of a stored ``llm endpoint`` run, with the SLOs it was run with."""
    settings = dict(run.settings)
    return summarize(records_of(run), _opt_float(settings, "slo_ttft_s"),
                     _opt_float(settings, "slo_tpot_s"), _opt_float(settings, "rate"),
                     _loads(run))


def _predictions(model: str | None, hardware: Sequence[str], load: EndpointLoad,
                 stats: EndpointStats, options: Mapping[str, Any]
                 ) -> tuple[tuple[EndpointPrediction, ...], list[str]]:
    """chipfit's prediction of ``model`` on each of ``hardware`` for the workload the endpoint
    was given: the continuous-batching simulator (:func:`chipfit.pipelines.serving.
    serve_report`) fed the very requests sent (their prompt and generated lengths, in order)
    and the same arrivals (Poisson at ``--rate``, or the closed loop of ``--concurrency``),
    one replica on the fewest devices that hold the model; its median TTFT, TPOT and e2e
    sit beside the measured ones. Where nothing serves with continuous batching (``local``,
    ``--stack eager``) the static-batch prediction (:func:`chipfit.pipelines.llm.llm_report`)
    is given instead, and the basis says so."""
    if not model or not hardware:
        return (), []
    asked = load.shapes()
    shapes = asked[:max(1, min(stats.requests or len(asked), len(asked)))]  # those sent
    prompt = max(1, round(sum(p for p, _ in shapes) / len(shapes)))
    gen = max(1, round(sum(g for _, g in shapes) / len(shapes)))
    from chipfit.pipelines.serving import SERVING_STACKS, serve_report

    stack = options.get("stack")
    served = [h for h in hardware if h != "local" and ":" not in h]
    static = [h for h in hardware if h not in served]
    out: dict[str, EndpointPrediction] = {}
    notes: list[str] = []
    if served and (stack is None or stack in SERVING_STACKS):
        load_kw = ({"rate": load.rate} if load.rate is not None
                   else {"concurrency": load.clients})
        try:
            report = serve_report(model, served, prompt, gen, options.get("dtype") or "bfloat16",
                                  options.get("kv_dtype"), stack, seed=load.seed, replicas=1,
                                  given_lengths=shapes, **load_kw)
        except ChipfitError as exc:
            return (), [f"no prediction for {model!r}: {exc}"]
        for row in report.rows:
            plan = min(row.tried, key=lambda p: p.option.per_replica, default=None)
            if plan is None:
                out[row.hardware] = EndpointPrediction(row.hardware, 0, None, None, None, None,
                                                       None, "", row.why or "no prediction")
                continue
            o, r = plan.option, plan.result
            out[row.hardware] = EndpointPrediction(
                row.hardware, max(1, round(r.mean_running)), r.p("ttft", 50), r.p("tpot", 50),
                r.p("e2e", 50), r.output_tokens_per_s, o.band,
                f"{report.stack} stack, TP{o.tp}" + (f" PP{o.pp}" if o.pp > 1 else "")
                + f", medians; band {o.band_basis}", devices=o.per_replica)
        notes.append(f"prediction: continuous batching (simulated), one replica on the fewest "
                     f"devices that hold the model; {report.workload.describe()}")
    else:
        static = list(hardware)
    if static:
        more, why = _static_predictions(model, static, load, stats, options, prompt, gen)
        out.update({p.hardware: p for p in more})
        notes += why
    return tuple(out[h] for h in hardware if h in out), notes


def _static_predictions(model: str, hardware: Sequence[str], load: EndpointLoad,
                        stats: EndpointStats, options: Mapping[str, Any], prompt: int, gen: int
                        ) -> tuple[list[EndpointPrediction], list[str]]:
    """The static-batch prediction (:func:`chipfit.pipelines.llm.llm_report`): the mean
    prompt and generated lengths, and as batch the concurrency (closed loop) or the mean
    number of requests in flight measured (Little's law: achieved rate x median e2e)."""
    if load.rate is None:
        batch, how = load.clients, f"{load.clients} concurrent"
    else:
        in_flight = stats.request_rate * stats.e2e.p50 if math.isfinite(
            stats.request_rate * stats.e2e.p50) else 1.0
        batch = max(1, round(in_flight))
        how = f"{batch} in flight on average (measured rate x median e2e)"
    from chipfit.pipelines.llm import llm_report

    try:
        report = llm_report(model, list(hardware), prompt, gen, batch, **options)
    except ChipfitError as exc:
        return [], [f"no prediction for {model!r}: {exc}"]
    basis = (f"static batch of {how} sequences, prompt {prompt}, {gen} generated: no "
             "queueing, no continuous batching (" + ", ".join(hardware)
             + (": --stack eager" if options.get("stack") == "eager" else
                ": a local device") + " serves none)")
    out = []
    for row in report.rows:
        p = row.prediction
        if p is None:
            out.append(EndpointPrediction(row.hardware, batch, None, None, None, None, None,
                                          basis, row.why or "no prediction"))
            continue
        out.append(EndpointPrediction(row.hardware, batch, p.ttft_s, p.step_s, p.total_s,
                                      p.throughput_tokens_per_s, p.band,
                                      f"{p.stack} stack, TP{p.tp}, band {p.band_basis}"))
    return out, [f"prediction: {basis}"]


def measure_endpoint(url: str, model: str = "", *, prompt_len: int = 512, gen_len: int = 128,
                     lengths: str = "fixed", rate: float | None = None,
                     concurrency: int | None = None, max_requests: int = 32,
                     duration_s: float = 30.0, request_timeout_s: float = 60.0, seed: int = 0,
                     api_key_env: str | None = None, slo_ttft_s: float | None = None,
                     slo_tpot_s: float | None = None, predict_model: str | None = None,
                     hardware: Sequence[str] = (),
                     predict_options: Mapping[str, Any] | None = None, store: Any = None,
                     progress: Callable[[str], None] | None = None) -> EndpointReport:
    """Drive the OpenAI-compatible streaming server at ``url`` with a workload and measure it
    (like ``chipfit llm MODEL --endpoint URL``): TTFT, ITL/TPOT and e2e percentiles, token
    rates, goodput under ``slo_ttft_s``/``slo_tpot_s``, and beside them the prediction of
    ``predict_model`` on each of ``hardware`` (catalog keys or ``local``), with
    ``predict_options`` (``dtype``, ``kv_dtype``, ``stack``) as :func:`chipfit.llm` takes them.

    ``model`` is the name sent in each request's body. ``store`` (a
    :class:`chipfit.store.Store`, optional) keeps every request as it ends. A Ctrl-C or
    SIGTERM ends the run early with what was measured (``interrupted``)."""
    endpoint = parse_endpoint(url)
    load = EndpointLoad(prompt_len, gen_len, lengths, rate, concurrency, max_requests,
                        duration_s, request_timeout_s, model, seed).checked()
    slo_ttft, slo_tpot = _slo("--slo-ttft", slo_ttft_s), _slo("--slo-tpot", slo_tpot_s)
    key = api_key_from_env(api_key_env)
    say = progress or (lambda _text: None)
    notes = []
    if not endpoint.local:
        notes.append(f"requests went to {endpoint.host} (not this machine): network time is "
                     "part of every latency")
        say(f"note: sending up to {load.max_requests} requests to {endpoint.where}, "
            "which is not this machine")
    check_reachable(endpoint, min(5.0, request_timeout_s))
    from chipfit.hardware.cpu import machine_fingerprint

    run = Run(run_id=new_run_id(), command=COMMAND, started_at=utc_now(),
              machine=machine_fingerprint(), discovery=Discovery(()),
              chipfit_version=__version__,
              settings=tuple(sorted(_settings(endpoint, load, slo_ttft, slo_tpot).items())))
    if store is not None:
        store.begin_run(run)
    first = machine_load()
    loads = [(first.load1, float(first.cpus))]
    records: list[RequestRecord] = []
    kept: list[Measurement] = []
    device = f"endpoint:{endpoint.where}"

    def keep(record: RequestRecord) -> None:
        now = machine_load()
        loads.append((now.load1, float(now.cpus)))
        busy = now.overloaded if math.isfinite(now.load1) else None
        evidence = (("cpus", float(now.cpus)),) + (
            (("load1", round(now.load1, 3)),) if math.isfinite(now.load1) else ())
        m = _measurement(record, device, evidence, busy)
        if store is not None:
            store.add_measurement(run.run_id, m)
        records.append(record)
        kept.append(m)
        say(f"[{len(records)}/{load.max_requests}] request {record.index}: "
            + ("ok" if record.ok else f"failed: {record.error}"))

    interrupted, cut = False, False
    try:
        cut = not drive(endpoint, load, keep, key)
    except KeyboardInterrupt:
        interrupted = True
    run = replace(run, measurements=tuple(kept), finished_at=utc_now(),
                  interrupted=interrupted)
    if store is not None:
        store.finish_run(run)
    if cut:
        notes.append(f"the run was cut at its bound ({load.duration_s:g} s + the "
                     f"{load.request_timeout_s:g} s request timeout)")
    stats = summarize(records, slo_ttft, slo_tpot, load.rate,
                      [x for x in loads if math.isfinite(x[0])])
    predictions: tuple[EndpointPrediction, ...] = ()
    if not interrupted:
        predictions, more = _predictions(predict_model, hardware, load, stats,
                                         predict_options or {})
        notes += more
    ordered = tuple(sorted(records, key=lambda r: r.index))
    return EndpointReport(endpoint.url, endpoint.api, endpoint.local, load.model, load, stats,
                          ordered, run.run_id, interrupted, cut, predictions, tuple(notes),
                          tuple(kept))
