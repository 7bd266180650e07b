"""``chipfit calibrate``: measure this machine's achievable rates for the predictor."""

from __future__ import annotations

import argparse

from chipfit.commands._common import csv_list, err, out, print_json, warn, warn_if_busy

ORDER = 46


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="measure local devices' achievable FLOP/s, bandwidth "
                       "and overheads (used by predict and validate)")
    p.add_argument("--devices", "-d", help="comma-separated device ids (default: every local "
                   "device, e.g. torch:cpu,jax:cpu:0)")
    p.add_argument("--dtypes", default="float32", help="comma-separated matmul dtypes to "
                   "calibrate (default float32; e.g. float32,bfloat16)")
    p.add_argument("--full", action="store_true", help="more sizes and tighter timing "
                   "(default: quick, about 15 s per device)")
    p.add_argument("--show", action="store_true",
                   help="show the stored calibrations; measure nothing")
    p.add_argument("--json", action="store_true", help="print the calibrations as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.discovery import discover, resolve_devices
    from chipfit.pipelines.calibrate import (
        _to_dict,
        calibrate,
        load_calibration,
        save_calibration,
    )
    from chipfit.report.predict_view import calibration_table

    found = discover()
    refs = (resolve_devices(csv_list(args.devices), found) if args.devices
            else [d.ref for d in found.devices])
    results = []
    for ref in map(str, refs):
        if args.show:
            cal = load_calibration(ref)
            if cal is None:
                err.print(f"{ref}: not calibrated (run chipfit calibrate --devices {ref})")
                continue
        else:
            err.print(f"calibrating {ref} ...")
            warn_if_busy()
            cal = calibrate(ref, dtypes=csv_list(args.dtypes), quick=not args.full,
                            discovery=found, progress=_attempts)
            # refused (UnreliableError, one line) if it misses its checks or was measured
            # while the machine was shared, on every attempt
            err.print(f"wrote {save_calibration(cal)}")
        results.append(cal)
    if args.json:
        print_json([_to_dict(c) for c in results])
    else:
        for cal in results:
            out.print(calibration_table(cal))
    return 0


def _attempts(text: str) -> None:
    """Calibration progress worth a line: a refused attempt measured again."""
    if text.startswith("attempt "):
        warn(text, prefix="")
