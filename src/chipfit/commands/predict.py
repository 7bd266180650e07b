"""``chipfit predict``: how a workload would run on hardware you may not have."""

from __future__ import annotations

import argparse

from chipfit.commands._common import (
    add_catalog_flags,
    add_host_speed_flag,
    csv_list,
    err,
    out,
    print_json,
    show,
    warn_if_busy,
)

ORDER = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict latency and throughput on catalog hardware and "
                       "local devices (local ones are measured too)")
    p.add_argument("workload",
                   help="a workload name (chipfit workloads lists them), e.g. matmul; or a "
                        "transformers config.json path; or package.module:function (a factory "
                        "returning a torch module, or (module, example inputs))")
    p.add_argument("--hardware", "-H", default="local",
                   help="comma-separated catalog keys (chipfit catalog) and/or 'local' or "
                        "device ids, e.g. h100-sxm,tpu-v5e,local (default: local)")
    p.add_argument("--batch", "--sizes", "-s", dest="sizes",
                   help="comma-separated sizes (batch for models; n or MxK@KxN for matmul; "
                        "default: the workload's quick sizes)")
    p.add_argument("--dtype", default="float32",
                   help="float32, bfloat16 or float16; with an engine --stack: int8 (default), "
                        "float16, bfloat16, float8")
    p.add_argument("--stack", default="eager",
                   help="software stack to predict: eager (default), tensorrt (a fused GPU "
                        "inference engine) or engine (the same on any catalog device, CPUs "
                        "included); fitted on published MLPerf results")
    p.add_argument("--mode", help="inference, train or finetune (default: the workload's first)")
    p.add_argument("--no-measure", action="store_true",
                   help="do not measure the local devices, nor calibrate them (prediction "
                        "only: a local device is predicted from an existing calibration)")
    p.add_argument("--breakdown", action="store_true",
                   help="also show where the time goes, by operator class")
    p.add_argument("--tensors", choices=("auto", "real", "fake"), default="auto",
                   help="count operators by running the call (real) or on shapes only (fake); "
                        "auto runs it unless it is large")
    p.add_argument("--seq-len", type=int, default=None,
                   help="sequence length for a config.json model (default 128; built-in "
                        "workloads have their own, see chipfit workloads); with an engine "
                        "--stack these are real tokens, while without it the engine prices "
                        "the fitted real-token share of the window")
    p.add_argument("--input", action="append", default=[], metavar="SHAPE[:DTYPE]",
                   help="a factory model's input with the batch first, e.g. 1x3x224x224")
    add_host_speed_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--wide", action="store_true", help="every column, however narrow the "
                   "terminal")
    add_catalog_flags(p)
    p.set_defaults(func=run)


def _row_json(row) -> dict:
    m = row.measurement
    return {"hardware": row.target.key, "local": row.target.local,
            "prediction": row.prediction.to_dict(),
            "measurement": None if m is None else {
                "status": m.status, "median_s": m.median_s if m.ok else None,
                "rel_ci": m.rel_ci if m.ok else None, "source": m.source},
            "error": row.error if row.error == row.error else None}


def _rows(args: argparse.Namespace) -> list:
    from chipfit.pipelines.model_predict import is_model_spec, predict_model
    from chipfit.pipelines.predict import predict_workload

    say = lambda s: err.print(s, style="dim")  # noqa: E731
    engine = args.stack.strip().lower() != "eager"
    dtype = "int8" if engine and args.dtype == "float32" else args.dtype
    if not is_model_spec(args.workload):
        if args.seq_len is not None:
            from chipfit.errors import InvalidInputError

            raise InvalidInputError(f"--seq-len applies to a config.json model; the built-in "
                                    f"{args.workload} has its own (chipfit workloads says it)")
        return predict_workload(args.workload, csv_list(args.sizes or ""),
                                csv_list(args.hardware), dtype=dtype, mode=args.mode,
                                stack=args.stack, tensors=args.tensors,
                                measure=not args.no_measure, host_speed=args.host_speed,
                                progress=say)
    from chipfit.errors import InvalidInputError

    sizes = csv_list(args.sizes or "1")
    if len(sizes) != 1 or not sizes[0].isdigit() or len(sizes[0]) > 20 or int(sizes[0]) < 1:
        raise InvalidInputError("--batch takes one positive integer (of at most 20 digits) for "
                                "a config or factory model")
    if args.seq_len is not None and args.seq_len < 1:
        raise InvalidInputError("--seq-len must be positive")
    hardware = csv_list(args.hardware)
    if hardware == ["local"]:
        raise InvalidInputError("say which catalog hardware to predict with --hardware, e.g. "
                                "--hardware h100-sxm,t4 (chipfit catalog lists them)")
    return predict_model(args.workload, hardware, batch=int(sizes[0]), seq_len=args.seq_len,
                         mode=args.mode or "inference", dtype=dtype, inputs=args.input,
                         stack=args.stack, host_speed=args.host_speed, progress=say)


def run(args: argparse.Namespace) -> int:
    from chipfit.report.predict_view import breakdown_table, predictions_table

    rows = _rows(args)
    measured = [r.measurement for r in rows if r.measurement is not None]
    if measured:  # the busy-machine warning of every command that measures
        warn_if_busy(measured)
    if args.json:
        print_json({"workload": args.workload, "rows": [_row_json(r) for r in rows]})
        return 0
    first = rows[0].prediction if rows else None
    title = (f"chipfit predict {args.workload} ({first.stack}, {first.dtype}, {first.mode})"
             if first else "")
    show(predictions_table(rows, title, args.wide), args.wide)
    if args.breakdown:
        for row in rows:
            out.print(breakdown_table(row.prediction))
    notes = sorted({f"{r.prediction.hardware}: {n}" for r in rows for n in r.prediction.notes})
    for note in notes:
        out.print(f"note — {note}", style="dim")
    lines = sorted({f"{r.prediction.hardware}: {n}" for r in rows
                    for n in r.prediction.precision})
    for line in lines:
        out.print(f"precision — {line}", style="dim")
    return 0
