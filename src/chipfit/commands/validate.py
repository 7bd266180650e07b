"""``chipfit validate``: predictions scored against measurements here and published results."""

from __future__ import annotations

import argparse

from chipfit.commands._common import (
    csv_list,
    err,
    finite_float,
    out,
    print_json,
    timing_from_args,
    warn,
    warn_if_busy,
)

ORDER = 55


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="predict and measure the built-in workloads here, and "
                       "compare predictions with published results; prints MAPE")
    p.add_argument("--quick", action="store_true", help="few sizes, short timing (under 4 minutes)")
    p.add_argument("--devices", "-d", help="comma-separated local device ids (default: all)")
    p.add_argument("--workloads", "-w", help="comma-separated workloads (default: every built-in)")
    p.add_argument("--sizes", "-s", help="comma-separated sizes for every workload (default: "
                   "each workload's first few)")
    p.add_argument("--budget", type=finite_float, help="seconds of timing per point at most")
    p.add_argument("--recalibrate", action="store_true",
                   help="calibrate again even where a calibration is stored")
    p.add_argument("--no-references", action="store_true",
                   help="skip the comparison with published results")
    p.add_argument("--gpu-data", metavar="DIR",
                   help="instead, check the GPU kernel models: refit on the measured GPU kernels "
                        "in DIR (the gpu_kernels data folder) leaving each GPU out in turn, and "
                        "print kernel and end-to-end errors (stored as gpu_validation.json)")
    p.add_argument("--gpu-sample", type=int, default=300, metavar="N",
                   help="kernel rows per operator and GPU for --gpu-data (default 300)")
    p.add_argument("--bands", action="store_true",
                   help="only print the prediction bands by stratum and how many out-of-fit "
                        "cases each holds (benchmarks/bands.py measures them)")
    p.add_argument("--wide", action="store_true", help="every column, whatever the width")
    p.add_argument("--json", metavar="PATH", nargs="?", const="-",
                   help="write the report as JSON to PATH (no PATH: print JSON instead of tables)")
    p.set_defaults(func=run)


def run_gpu(args: argparse.Namespace) -> int:
    """Leave-one-GPU-out errors of the fitted GPU kernel models on measured data."""
    from pathlib import Path

    from rich.table import Table

    from chipfit.errors import InvalidInputError
    from chipfit.paths import data_dir, write_json_atomic
    from chipfit.pipelines import gpu_validate as gv

    folder = Path(args.gpu_data)
    if not (folder / "kernels").is_dir():
        raise InvalidInputError(f"{folder} has no kernels/ folder: pass the gpu_kernels data "
                                "directory (e.g. shared/data/gpu_kernels); GPU check skipped")
    if args.gpu_sample < 10:
        raise InvalidInputError("--gpu-sample must be at least 10")
    result = gv.run(folder, sample=args.gpu_sample,
                    progress=lambda s: err.print(s, style="dim"))
    data = gv.model_json(result, folder)
    saved = write_json_atomic(data_dir() / "gpu_validation.json", data)
    if args.json:
        print_json(data)
        return 0
    gpus = result["gpus"]
    table = Table(title="GPU kernels: MAPE of each GPU's kernels, fitted without that GPU",
                  title_justify="left")
    table.add_column("operator")
    for g in gpus:
        table.add_column(g, justify="right")
    for op, per in result["kernels_logo"].items():
        table.add_row(op, *(f"{per[g] * 100:.1f}%" if g in per else "-" for g in gpus))
    out.print(table)
    e2e = Table(title="End to end (models traced shape-only from their config.json)",
                title_justify="left")
    for col in ("model", "seq", "batch", "mode", "held-out GPU", "measured", "predicted", "error"):
        e2e.add_column(col, justify="left" if col in ("model", "mode", "held-out GPU") else "right")
    for c in (c for c in result["e2e"] if c.held_out):
        e2e.add_row(c.model, str(c.seq_len), str(c.batch), c.mode, c.device,
                    f"{c.measured_s * 1e3:.1f} ms", f"{c.predicted_s * 1e3:.1f} ms (predicted)",
                    f"{c.error * 100:+.1f}%")
    out.print(e2e)
    errors = data["errors"]
    if errors["e2e_logo_mape"] is not None:
        out.print(f"end-to-end leave-one-GPU-out MAPE {errors['e2e_logo_mape'] * 100:.1f}%; band "
                  f"x/÷{1 + result['band']:.2f} covers {errors['coverage'] * 100:.0f}% of them")
    protocols = result.get("protocols") or {}
    if protocols:
        table = Table(title="End to end by protocol (a method that wins leave-one-GPU-out but "
                      "loses generation-out is not better)", title_justify="left")
        for col in ("protocol", "cases", "mean APE", "median APE", "bias", "in band"):
            table.add_column(col, justify="left" if col == "protocol" else "right")
        for name, p in protocols.items():
            if p.get("cases"):
                table.add_row(name, str(p["cases"]), f"{p['mean_ape'] * 100:.1f}%",
                              f"{p['median_ape'] * 100:.1f}%", f"{p['median_error'] * 100:+.1f}%",
                              f"{p['coverage'] * 100:.0f}%")
        out.print(table)
        detail = Table(title="End to end by protocol, model and mode", title_justify="left")
        for col in ("protocol", "model, mode", "cases", "mean", "median", "in band"):
            detail.add_column(col, justify="left" if col in ("protocol", "model, mode")
                              else "right")
        for name, p in protocols.items():
            for group, q in (p.get("by_model_mode") or {}).items():
                detail.add_row(gv.protocol_short(name), group, str(q["cases"]),
                               f"{q['mean_ape'] * 100:.1f}%", f"{q['median_ape'] * 100:.1f}%",
                               f"{q['coverage'] * 100:.0f}%")
        out.print(detail)
    err.print(f"kept {saved}")
    return 0


def run_bands(args: argparse.Namespace) -> int:
    from chipfit.predictors.fits import shipped_bands
    from chipfit.report.bands_view import bands_table

    strata = shipped_bands()
    if args.json:
        print_json({"strata": strata, "source": "hardware/data/bands.json (benchmarks/bands.py)"})
        return 0
    out.print(bands_table(strata, args.wide))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.bands:
        return run_bands(args)
    if args.gpu_data:
        return run_gpu(args)
    from chipfit.pipelines.validate import save_validation, validate
    from chipfit.report.predict_view import (
        reference_table,
        validation_cases_table,
        validation_summary,
    )

    timing = timing_from_args(args)
    quiet = args.json == "-"

    def progress(text: str) -> None:
        if not quiet or err.is_terminal:
            err.print(text, style="dim")

    report = validate(csv_list(args.devices) if args.devices else None, quick=args.quick,
                      workloads=csv_list(args.workloads) if args.workloads else None,
                      sizes=csv_list(args.sizes) if args.sizes else None, timing=timing,
                      references=not args.no_references, recalibrate=args.recalibrate,
                      progress=progress)
    llm_cases = () if args.no_references else _llm_cases()
    saved = save_validation(report)
    if args.json and args.json != "-":
        save_validation(report, args.json)
        err.print(f"wrote {args.json}")
    if quiet:
        data = report.to_dict()
        if llm_cases:
            data["llm_published"] = _llm_json(llm_cases)
        if report.references:
            from chipfit.pipelines.engines import loo_report

            data["engine_stack_loo"] = loo_report()  # predicted, leave-one-out (see README)
        from chipfit.predictors.fits import shipped_bands

        data["bands_by_stratum"] = shipped_bands()
        print_json(data)
        return _said_left_out(report, json=True)
    out.print(validation_cases_table(report))
    if report.references:
        out.print(reference_table(report))
        from chipfit.pipelines.engines import loo_report
        from chipfit.report.stacks_view import engine_loo_table

        progress("the fused-engine stack on the MLPerf rows, leave-one-out (once; cached)")
        out.print(engine_loo_table(loo_report()))
    if llm_cases:
        from chipfit.report.llm_view import llm_published_table

        summary = _llm_json(llm_cases)["loo_median_abs_error"]
        out.print(llm_published_table(llm_cases))
        out.print(f"language models, published results: leave-one-out median error "
                  f"{summary:.1%} over {len(llm_cases)} rows")
    out.print(validation_summary(report))
    from chipfit.predictors.fits import shipped_bands
    from chipfit.report.bands_view import bands_table

    out.print(bands_table(shipped_bands()))
    err.print(f"kept {saved} (prediction bands use it)")
    return _said_left_out(report)


def _said_left_out(report, json: bool = False) -> int:  # noqa: ANN001
    """Each device's cases left out of the summary (contended or noisy), one line each; the
    busy-machine warning; exit 1 when a device has no case left to score (no median given)."""
    from chipfit.analysis.validation import EXCLUSIONS

    refused = False
    for device in report.devices:
        why, kept = report.left_out(device), len(report.counted(device))
        if report.refused(device):
            warn(report.refused(device), prefix="validate: ")
            refused = True
        elif why and not json:
            words = ", ".join(f"{n} {EXCLUSIONS[k]}" for k, n in sorted(why.items()))
            out.print(f"local {device}: {sum(why.values())} of {sum(why.values()) + kept} cases "
                      f"left out of the summary ({words}); MAPE from the {kept} kept",
                      markup=False)
    warn_if_busy()
    return 1 if refused else 0


def _llm_cases() -> tuple:
    """The published LLM rows (hardware/data/llm_results.toml), scored leave-one-out."""
    from chipfit.pipelines.llm import published_cases

    return published_cases()


def _llm_json(cases: tuple) -> dict:
    from dataclasses import asdict

    from chipfit.analysis.llm import median

    return {"cases": [asdict(c) for c in cases],
            "loo_median_abs_error": median(abs(c.loo_error) for c in cases),
            "source": "predicted from the catalog vs published (cited in each case)"}
