"""``chipfit llm``: will a language model fit, on how many chips, and how fast per token."""

from __future__ import annotations

import argparse

from chipfit.commands._common import csv_list, finite_float, out, print_json, show
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
    p.add_argument("--stack", choices=("optimized", "llamacpp", "eager"), default=None,
                   help="software stack assumed: optimized (TensorRT-LLM-like, default for "
                        "catalog devices), llamacpp (llama.cpp-like, batch-1 local serving) "
                        "or eager (PyTorch eager, default for local)")
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
    p.set_defaults(func=run)
    # --endpoint URL: measure a running server (its flags and run: commands/_endpoint.py)
    from chipfit.commands._endpoint import add_endpoint_flags

    add_endpoint_flags(p, run)


def run(args: argparse.Namespace) -> int:
    from chipfit.pipelines.llm import llm_report

    if args.published or args.model is None:
        return _published(args)
    report = llm_report(args.model, csv_list(args.hardware), args.prompt_len, args.gen_len,
                        args.batch, args.dtype, args.kv_dtype, args.stack,
                        measure=args.measure, measure_budget_s=args.measure_budget,
                        progress=progress_note)
    if args.html:
        from chipfit.report.llm_view import write_llm_html

        write_llm_html(report, args.html)
    if args.json:
        print_json(report.to_dict())
        return 0
    from chipfit.pipelines.llm import advise_report
    from chipfit.report.llm_view import llm_table, llm_verdict_line, measured_line

    out.print(llm_verdict_line(advise_report(report, "latency")), markup=False, style="bold")
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
