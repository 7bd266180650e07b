"""``chipfit report``: one self-contained HTML file (and optional PNGs) from results files."""

from __future__ import annotations

import argparse

from chipfit.commands._common import add_db_flag, err, finite_float, load_run_ref, out, warn

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report (plots, crossovers, "
                       "roofline, claims check) from results files",
                       description="Write one HTML file that needs no network: the device "
                       "table, time vs size per workload with crossovers marked, throughput, "
                       "a roofline, the seeds' claims check and the run metadata.")
    p.add_argument("results", nargs="*", metavar="RUN",
                   help="results JSON files (from --json or the data directory) or run ids in "
                   "the results database (latest, latest~1, an id prefix); default: the "
                   "latest run")
    p.add_argument("-o", "--output", default="chipfit-report.html", metavar="PATH",
                   help="HTML file to write (default: chipfit-report.html)")
    p.add_argument("--png", metavar="DIR", help="also write every plot as a PNG into DIR")
    p.add_argument("--level", type=finite_float, default=0.95,
                   help="confidence level of the crossover statements (default 0.95)")
    p.add_argument("--llm", action="append", default=[], metavar="MODEL",
                   help="add a language-model section (memory-fit chart, tokens/s vs batch) "
                   "for MODEL, a chipfit llm built-in or config.json; repeatable")
    p.add_argument("--llm-hardware", default="h100-sxm,a100-sxm-80gb,l4,tpu-v5e,mi300x",
                   help="catalog keys (and/or 'local') for the --llm sections")
    p.add_argument("--llm-prompt-len", type=int, default=512, metavar="TOKENS",
                   help="prompt tokens of the --llm run (default 512)")
    p.add_argument("--llm-gen-len", type=int, default=128, metavar="TOKENS",
                   help="generated tokens of the --llm run (default 128)")
    p.add_argument("--llm-batch", type=int, default=1, metavar="N",
                   help="sequences served together in the --llm run (default 1)")
    p.add_argument("--llm-dtype", default="bfloat16",
                   help="--llm weights: bfloat16, float16, fp8, int8 or int4 (default bfloat16)")
    add_db_flag(p)
    p.set_defaults(func=run)


def _runs(args: argparse.Namespace) -> list:
    """The runs named (files or database ids), else the newest results file, else the
    database's latest run."""
    from chipfit.errors import InvalidInputError, SchemaError
    from chipfit.paths import run_files, runs_dir
    from chipfit.store.runs import load_run
    from chipfit.store.sqlite import default_db_path

    if args.results:
        return [load_run(ref) if ref.endswith(".json") else load_run_ref(args, ref)
                for ref in args.results]
    for path in run_files():  # the newest readable one; a damaged file is named and skipped
        try:
            latest = load_run(path)
        except (InvalidInputError, SchemaError) as exc:
            warn(f"skipped {exc}")
            continue
        advice = _newest_advice(path)
        # The answer to "which processor?" is part of the report even when other runs came
        # after it: the newest advise run joins the latest run.
        return [latest] + ([load_run(advice)] if advice is not None else [])
    if args.db or default_db_path().exists():
        return [load_run_ref(args, "latest")]
    raise InvalidInputError(f"no results yet in {runs_dir()}: run chipfit sweep or chipfit "
                            "bench first, or name a results file")


def _newest_advice(latest, look_back: int = 50):  # noqa: ANN001, ANN202
    """The newest results file written by ``chipfit advise``, unless it is ``latest``."""
    from chipfit.errors import InvalidInputError
    from chipfit.paths import RUN_FILE_LIMIT, read_user_json, run_files

    for path in run_files()[:look_back]:  # regular files only: a FIFO there is never opened
        try:
            command = read_user_json(path, RUN_FILE_LIMIT, "results file").get("command")
        except (InvalidInputError, AttributeError):
            continue  # unreadable or not a run: the report of the latest run goes on
        if command == "advise":
            return None if path == latest else path
    return None


def run(args: argparse.Namespace) -> int:
    from chipfit.analysis.crossover import check_settings
    from chipfit.report.html import write_report
    from chipfit.report.llm_section import llm_sections

    check_settings(args.level, 2000)
    llm = _llm_reports(args)  # its flags are checked before any results file is read
    runs = _runs(args)
    path = write_report(runs, args.output, png_dir=args.png, level=args.level,
                        sections=llm_sections(llm))
    count = sum(len(r.measurements) for r in runs)
    out.print(f"wrote {path} ({len(runs)} run(s), {count} measurement(s))", markup=False)
    if args.png:
        err.print(f"plots as PNG in {args.png}", markup=False)
    return 0


def _llm_reports(args: argparse.Namespace) -> list:
    """One report per ``--llm`` model, at the prompt, generation, batch and dtype given."""
    from chipfit.commands._common import csv_list
    from chipfit.pipelines.llm import llm_report
    from chipfit.workloads.config_schema import MAX_BATCH, MAX_TOKENS, check_run_size

    for flag, value, high in (("--llm-prompt-len", args.llm_prompt_len, MAX_TOKENS),
                              ("--llm-gen-len", args.llm_gen_len, MAX_TOKENS),
                              ("--llm-batch", args.llm_batch, MAX_BATCH)):
        check_run_size(flag, value, high)
    return [llm_report(model, csv_list(args.llm_hardware), args.llm_prompt_len,
                       args.llm_gen_len, args.llm_batch, args.llm_dtype) for model in args.llm]
