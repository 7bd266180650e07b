"""``chipfit llm``: will a language model fit, on how many chips, and how fast per token."""

from __future__ import annotations

import argparse

from chipfit.commands._common import add_catalog_flags, csv_list, finite_float, out, print_json, show
from chipfit.commands._common import note as progress_note

ORDER = 55


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llm", help="language models: memory fit, devices needed, time to first "
                       "token and decode tokens/s on catalog hardware (no download)")
    p.add_argument("model", nargs="?", default=None,
                   help="a built-in model (llama-3.2-1b, llama-3.1-8b, llama-3.1-70b, "
                        "mistral-7b, qwen2.5-7b, mixtral-8x7b, ...) or a config.json path")
    p.add_argument("--prompt-len", type=int, default=512, help="prompt tokens (default 512)")
    p.add_argument("--gen-len", type=int, default=128, help="generated tokens (default 128)")
    p.add_argument("--batch", type=int, default=1, help="sequences served together (default 1)")
    p.add_argument("--dtype", default="bfloat16",
                   help="weights: bfloat16, float16, fp8, int8 or int4 (weight-only)")
    p.add_argument("--kv-dtype", default=None,
                   help="KV cache: bfloat16, float16, fp8 or int8 (default: 16-bit)")
    p.add_argument("--hardware", "-H", default="h100-sxm,l4,tpu-v5e,local",
                   help="comma-separated catalog keys and/or 'local' "
                        "(default: h100-sxm,l4,tpu-v5e,local)")
    p.add_argument("--stack", choices=STACK_CHOICES, default=None, metavar="STACK",
                   help="software stack assumed: optimized/tensorrt-llm (TensorRT-LLM-like, "
                        "default for catalog devices; vllm when serving), vllm, compiled "
                        "(torch.compile), xla (JetStream-like), llamacpp (llama.cpp-like) or "
                        "eager (PyTorch eager, default for local; not for serving)")
    p.add_argument("--measure", action="store_true",
                   help="also run the generation for real on this CPU (random weights, "
                        "transformers eager) for the 'local' row, when it fits in half the "
                        "memory and its predicted time in --measure-budget")
    p.add_argument("--measure-budget", type=finite_float, default=120.0, metavar="SECONDS",
                   help="longest predicted generation --measure runs, warm-up included "
                        "(default 120)")
    p.add_argument("--published", action="store_true",
                   help="show the published results and their leave-one-out errors instead")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--wide", action="store_true", help="every column of the table, however "
                   "wide the terminal")
    p.add_argument("--html", metavar="PATH", help="also write an HTML page with the memory-fit "
                   "chart and tokens/s vs batch")
    _serving_flags(p)
    add_catalog_flags(p)
    p.set_defaults(func=run)
    # --endpoint URL: measure a running server (its flags and run: commands/_endpoint.py)
    from chipfit.commands._endpoint import add_endpoint_flags

    add_endpoint_flags(p, run)


STACK_CHOICES = ("optimized", "tensorrt-llm", "vllm", "compiled", "xla", "llamacpp", "eager")
#: the serving flags: any of them turns ``chipfit llm`` into the service question
SERVING_DESTS = ("rate", "concurrency", "slo_ttft", "slo_tpot", "per_user_tokens_per_s",
                 "replicas", "devices")


def _serving_flags(p: argparse.ArgumentParser) -> None:
    """Serving a model to many users (docs/SERVING.md): any of these flags answers the
    service question (which hardware, how many, what each user gets, what it costs)."""
    g = p.add_argument_group("serving (continuous batching; docs/SERVING.md)")
    g.add_argument("--rate", type=finite_float, default=None, metavar="QPS",
                   help="requests per second arriving (Poisson, seeded)")
    g.add_argument("--concurrency", type=int, default=None, metavar="USERS",
                   help="users sending requests back to back (closed loop)")
    g.add_argument("--lengths", choices=("fixed", "lognormal", "uniform", "exponential"),
                   default="fixed", metavar="DIST",
                   help="prompt/generated lengths: fixed, or lognormal around --prompt-len "
                        "and --gen-len (ShareGPT-like spread; default fixed); with --endpoint "
                        "also uniform (0.5x-1.5x) or exponential (capped at 4x)")
    g.add_argument("--requests", type=int, default=None,
                   help="requests simulated per configuration (default 400; 200 for the "
                        "service line of a static run, as chipfit advise)")
    g.add_argument("--seed", type=int, default=0, help="seed of arrivals and lengths")
    g.add_argument("--slo-ttft", type=finite_float, default=None, metavar="SECONDS",
                   help="time-to-first-token target at the SLO percentile")
    g.add_argument("--slo-tpot", type=finite_float, default=None, metavar="SECONDS",
                   help="time-per-output-token target at the SLO percentile")
    g.add_argument("--per-user-tokens-per-s", type=finite_float, default=None, metavar="TPS",
                   help="tokens/s each user must see (a TPOT target of 1/TPS)")
    g.add_argument("--slo-percentile", type=finite_float, default=90.0,
                   help="percentile of requests the SLO holds for (default 90)")
    g.add_argument("--tp", type=int, default=None, help="tensor-parallel devices per replica "
                   "(default: searched up to 8 when serving; the fewest that fit otherwise)")
    g.add_argument("--pp", type=int, default=1, help="pipeline stages per replica (default 1)")
    g.add_argument("--replicas", type=int, default=None,
                   help="data-parallel replicas (default: as many as the load needs)")
    g.add_argument("--devices", type=int, default=None,
                   help="devices in all (replicas = devices / (tp x pp))")
    g.add_argument("--max-seqs", type=int, default=256,
                   help="most sequences one replica runs at once (default 256, vLLM's)")


def _serving(args: argparse.Namespace) -> bool:
    return any(getattr(args, d) is not None for d in SERVING_DESTS) or args.pp != 1


def _serve(args: argparse.Namespace) -> int:
    from chipfit.pipelines.serving import SERVE_REQUESTS, serve_report

    if args.measure:
        from chipfit.errors import UsageError

        raise UsageError("--measure runs one static batch here; it does not combine with "
                         "the serving flags")
    report = serve_report(args.model, csv_list(args.hardware), args.prompt_len, args.gen_len,
                          args.dtype, args.kv_dtype, args.stack, args.rate, args.concurrency,
                          args.lengths,
                          SERVE_REQUESTS if args.requests is None else args.requests,
                          args.seed, args.slo_ttft, args.slo_tpot,
                          args.per_user_tokens_per_s, args.slo_percentile, args.tp, args.pp,
                          args.replicas, args.devices, max_seqs=args.max_seqs,
                          pareto=bool(args.html))
    if args.html:
        from chipfit.report.llm_view import write_serve_html

        write_serve_html(report, args.html)
    if args.json:
        print_json(report.to_dict())
        return 0
    from chipfit.report.llm_view import serve_table

    out.print(report.answer(), markup=False, style="bold")
    show(serve_table(report, args.wide), args.wide)
    notes = (sorted({n for r in report.rows for n in r.notes}
                    | {f"{r.hardware}: {r.why}" for r in report.rows if r.why})
             + list(report.notes))
    for note in notes:
        out.print(f"note — {note}", style="dim", markup=False)
    return 0


def _service(args: argparse.Namespace, pareto: bool = False) -> object | None:
    """The service question for a static run: ``--batch`` users served with continuous
    batching on the catalog targets, default SLO (None: no catalog target, or an eager
    stack, which serves no continuous batching)."""
    from chipfit.pipelines.serving import static_service

    return static_service(args.model, csv_list(args.hardware), args.prompt_len, args.gen_len,
                          args.dtype, args.kv_dtype, args.stack, users=args.batch,
                          lengths=args.lengths, seed=args.seed,
                          **({} if args.requests is None else {"requests": args.requests}),
                          slo_percentile=args.slo_percentile, max_seqs=args.max_seqs,
                          pareto=pareto)


def run(args: argparse.Namespace) -> int:
    from chipfit.pipelines.llm import llm_report

    if args.published or args.model is None:
        return _published(args)
    if _serving(args):
        return _serve(args)
    report = llm_report(args.model, csv_list(args.hardware), args.prompt_len, args.gen_len,
                        args.batch, args.dtype, args.kv_dtype, args.stack,
                        measure=args.measure, measure_budget_s=args.measure_budget,
                        progress=progress_note, tp=args.tp)
    service = _service(args, pareto=bool(args.html))
    if args.html:
        from chipfit.report.llm_section import write_llm_html

        write_llm_html(report, args.html, service)
    if args.json:
        data = report.to_dict()
        data["service"] = service.to_dict() if service is not None else None
        print_json(data)
        return 0
    from chipfit.pipelines.llm import advise_report
    from chipfit.report.llm_view import llm_table, llm_verdict_line, measured_line

    if service is not None:
        out.print(service.answer(), markup=False, style="bold")
    out.print(llm_verdict_line(advise_report(report, "latency"), second=service is not None),
              markup=False, style="bold" if service is None else None)
    show(llm_table(report, args.wide), args.wide)
    for row in report.rows:
        if row.measured is not None:
            out.print(measured_line(row), markup=False)
        elif row.measured_why:
            out.print(f"{row.hardware}: not measured: {row.measured_why}", markup=False)
    notes = sorted({n for r in report.rows if r.prediction for n in r.prediction.notes}
                   | {f"{r.hardware}: {r.why}" for r in report.rows if r.why}
                   | {f"{r.hardware}: {r.prediction.stack} stack, band {r.prediction.band:.0%} "
                      f"({r.prediction.band_basis})" for r in report.rows if r.prediction}
                   | set(report.notes))
    for note in notes:
        out.print(f"note — {note}", style="dim")
    return 0


def _published(args: argparse.Namespace) -> int:
    from chipfit.analysis.llm import median
    from chipfit.pipelines.llm import published_cases

    cases = published_cases()
    summary = median(abs(c.loo_error) for c in cases)
    if args.json:
        print_json({"cases": [c.__dict__ for c in cases], "loo_median_abs_error": summary})
        return 0
    from chipfit.report.llm_view import llm_published_table

    out.print(llm_published_table(cases))
    out.print(f"leave-one-out median absolute error: {summary:.1%} over {len(cases)} rows")
    return 0
