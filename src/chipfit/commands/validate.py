"""``chipfit validate``: predictions scored against measurements here and published results."""

from __future__ import annotations

import argparse

from chipfit.commands._common import timing_from_args, csv_list, err, out, print_json

ORDER = 55


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="predict and measure the built-in workloads here, and "
                       "compare predictions with published results; prints MAPE")
    p.add_argument("--quick", action="store_true", help="few sizes, short timing (under 4 minutes)")
    p.add_argument("--devices", "-d", help="comma-separated local device ids (default: all)")
    p.add_argument("--workloads", "-w", help="comma-separated workloads (default: every built-in)")
    p.add_argument("--sizes", "-s", help="comma-separated sizes for every workload (default: "
                   "each workload's first few)")
    p.add_argument("--budget", type=float, help="seconds of timing per point at most")
    p.add_argument("--recalibrate", action="store_true",
                   help="calibrate again even where a calibration is stored")
    p.add_argument("--no-references", action="store_true",
                   help="skip the comparison with published results")
    p.add_argument("--json", metavar="PATH", nargs="?", const="-",
                   help="write the report as JSON to PATH (no PATH: print JSON instead of tables)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
            err.print(f"[dim]{text}[/dim]")

    report = validate(csv_list(args.devices) if args.devices else None, quick=args.quick,
                      workloads=csv_list(args.workloads) if args.workloads else None,
                      sizes=csv_list(args.sizes) if args.sizes else None, timing=timing,
                      references=not args.no_references, recalibrate=args.recalibrate,
                      progress=progress)
    saved = save_validation(report)
    if args.json and args.json != "-":
        save_validation(report, args.json)
        err.print(f"wrote {args.json}")
    if quiet:
        print_json(report.to_dict())
        return 0
    out.print(validation_cases_table(report))
    if report.references:
        out.print(reference_table(report))
    out.print(validation_summary(report))
    err.print(f"kept {saved} (prediction bands use it)")
    return 0
