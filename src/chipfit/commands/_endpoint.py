"""``chipfit llm MODEL --endpoint URL``: measure a real OpenAI-compatible LLM server.

Kept apart from :mod:`chipfit.commands.llm` (which calls :func:`add_endpoint_flags` once):
the flags, and the run that measures the server, stores each request as it ends and prints
the measured percentiles beside chipfit's prediction. The workload and SLO flags it shares
with the serving prediction (``--rate``, ``--concurrency``, ``--lengths``, ``--seed``,
``--slo-ttft``, ``--slo-tpot``) are the serving group's (``commands/llm._serving_flags``),
so one workload means the same thing measured and predicted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chipfit.commands._common import err, finite_float, note, open_db, out, print_json, show

#: -H as `chipfit llm` has it by default: with --endpoint, no prediction unless -H is given.
_DEFAULT_HARDWARE = "h100-sxm,l4,tpu-v5e,local"


def _whole(text: str) -> int:
    """argparse type: a whole number (its range is checked with the workload's)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number {text[:40]!r}") from None


def add_endpoint_flags(p: argparse.ArgumentParser,
                       run: Callable[[argparse.Namespace], int]) -> None:
    """The --endpoint flags of ``chipfit llm``; ``run`` is the command's own handler, called
    when --endpoint is not given."""
    g = p.add_argument_group("measure a running server (--endpoint)")
    g.add_argument("--endpoint", metavar="URL",
                   help="measure the OpenAI-compatible streaming server at URL "
                        "(http(s)://host:port, or its /v1/completions or /v1/chat/completions "
                        "path) with the --prompt-len/--gen-len workload, and print measured "
                        "TTFT, TPOT/ITL and e2e percentiles beside the prediction on -H")
    g.add_argument("--model", dest="served_model", metavar="NAME",
                   help="with --endpoint: the model name sent in each request (default: MODEL)")
    g.add_argument("--max-requests", type=_whole, default=32, metavar="N",
                   help="with --endpoint: send at most N requests (default 32)")
    g.add_argument("--duration", type=finite_float, default=30.0, metavar="SECONDS",
                   help="with --endpoint: start no request after this long (default 30)")
    g.add_argument("--request-timeout", type=finite_float, default=60.0, metavar="SECONDS",
                   help="with --endpoint: the longest one request may take, every socket "
                        "wait included (default 60)")
    g.add_argument("--api-key-env", metavar="VAR",
                   help="with --endpoint: send the key in environment variable VAR as a "
                        "Bearer token (never printed or stored)")
    g.add_argument("--db", metavar="PATH", help="with --endpoint: the results database "
                   "(default: chipfit.sqlite3 under the chipfit data directory)")
    g.add_argument("--no-save", action="store_true",
                   help="with --endpoint: do not keep the run in the results database")

    def dispatch(args: argparse.Namespace) -> int:
        return run_endpoint(args) if args.endpoint is not None else run(args)

    p.set_defaults(func=dispatch)


def run_endpoint(args: argparse.Namespace) -> int:
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.endpoint import measure_endpoint
    from chipfit.report.endpoint_view import endpoint_headline, measured_table, predicted_table

    for flag, given in (("--published", args.published), ("--measure", args.measure),
                        ("--html", args.html), ("--batch", args.batch != 1)):
        if given:
            raise InvalidInputError(f"{flag} does not go with --endpoint (the batch is the "
                                    "server's: set --concurrency or --rate)"
                                    if flag == "--batch" else
                                    f"{flag} does not go with --endpoint")
    hardware = ([h for h in args.hardware.split(",") if h]
                if args.hardware != _DEFAULT_HARDWARE and args.model else [])
    store = None if args.no_save and not args.db else open_db(args, create=True)
    try:
        report = measure_endpoint(
            args.endpoint, args.served_model or args.model or "",
            prompt_len=args.prompt_len, gen_len=args.gen_len, lengths=args.lengths,
            rate=getattr(args, "rate", None), concurrency=getattr(args, "concurrency", None),
            max_requests=args.max_requests, duration_s=args.duration,
            request_timeout_s=args.request_timeout, seed=getattr(args, "seed", 0) or 0,
            api_key_env=args.api_key_env, slo_ttft_s=getattr(args, "slo_ttft", None),
            slo_tpot_s=getattr(args, "slo_tpot", None), predict_model=args.model,
            hardware=hardware, predict_options={"dtype": args.dtype, "kv_dtype": args.kv_dtype,
                                                "stack": args.stack},
            store=store, progress=note)
    finally:
        if store is not None:
            store.close()
    from chipfit.commands._common import warn_if_busy

    if args.json:
        print_json(report.to_dict())
    else:
        load = report.load
        arrivals = (f"Poisson {load.rate:g} req/s" if load.rate is not None
                    else f"{load.clients} concurrent")
        out.print(endpoint_headline(report.stats, report.url, arrivals), style="bold")
        show(measured_table(report.stats), args.wide)
        for kind, count in report.stats.errors:
            out.print(f"failed: {count} x {kind}", markup=False)
        first = next((r for r in report.records if not r.ok), None)
        if first is not None:
            out.print(f"first failure (request {first.index}): {first.error}", markup=False)
        if report.predictions:
            show(predicted_table(report.predictions), args.wide)
        elif args.model and not hardware:
            out.print("note — give -H KEY (a catalog key, or local) for chipfit's prediction "
                      "beside the measurement", style="dim")
        for line in report.notes:
            out.print(f"note — {line}", style="dim")
        if store is not None:
            err.print(f"kept run {report.run_id} ({len(report.records)} requests): "
                      f"chipfit show {report.run_id}")
    warn_if_busy(report.measurements)  # the client machine's load, stored per request
    if report.interrupted:
        err.print(f"interrupted: kept {len(report.records)} request(s)")
        return 130
    return 0 if report.stats.ok else 1
