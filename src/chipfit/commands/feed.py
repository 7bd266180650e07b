"""``chipfit feed``: can this machine's input pipeline keep each device busy?"""

from __future__ import annotations

import argparse

from chipfit.commands._common import add_db_flag, csv_list, err, finite_float, note, print_json, show

ORDER = 62


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feed", help="time the input pipeline (JPEG decode or tokenising, "
                       "DataLoader workers) against what each device would consume")
    p.add_argument("model", help="an image model (resnet50, vit-base, cnn) or a token model "
                   "(bert-base, gpt2-small, t5-small)")
    p.add_argument("--batch", "-b", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--workers", "-w", help="comma-separated DataLoader worker counts (default: "
                   "0, 1, 2, 4 ... up to the usable cores; 0 prepares in the consuming process)")
    p.add_argument("--hardware", "-H", default="local,l4,a100-sxm-80gb,h100-sxm",
                   help="devices to compare: 'local' or device ids (measured here) and catalog "
                   "keys (predicted; chipfit catalog lists them); default: "
                   "local,l4,a100-sxm-80gb,h100-sxm")
    p.add_argument("--samples", type=int, help="distinct samples generated (cycled; default: "
                   "64 images or 256 documents)")
    p.add_argument("--source-size", metavar="WxH", help="image models: size of the generated "
                   "JPEGs (default 500x375; 28x28 for cnn)")
    p.add_argument("--quality", type=int, default=90, help="image models: JPEG quality 1-95 "
                   "(default 90)")
    p.add_argument("--budget", type=finite_float, metavar="SECONDS", help="timing per point: "
                   "the loader's steady state per worker count (default 2) and the model on "
                   "each local device (default 0.8)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--no-save", action="store_true", help="do not keep the measurements")
    add_db_flag(p)
    p.add_argument("--wide", action="store_true", help="every column, however narrow the "
                   "terminal")
    p.set_defaults(func=run)


def _timing(args: argparse.Namespace):
    """--budget as the timing of each supply point and of each local model measurement."""
    from dataclasses import replace

    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.feed import SUPPLY_TIMING
    from chipfit.spec import TimingConfig

    if args.budget is None:
        return None, None
    if not 0 < args.budget <= 600:
        raise InvalidInputError("--budget must be between 0 and 600 seconds")
    quick = TimingConfig.quick()
    return (replace(SUPPLY_TIMING, budget_s=args.budget,
                    warmup_s=min(SUPPLY_TIMING.warmup_s, args.budget)),
            replace(quick, budget_s=args.budget, warmup_s=min(quick.warmup_s, args.budget)))


def _check(args: argparse.Namespace) -> None:
    """Every flag checked before anything heavy is imported or generated."""
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.feed import MAX_BATCH, feed_spec, parse_workers, split_hardware

    if not 1 <= args.batch <= MAX_BATCH:
        raise InvalidInputError(f"--batch must be from 1 to {MAX_BATCH}, got {args.batch}")
    parse_workers(args.workers)
    feed_spec(args.model, samples=args.samples, source=args.source_size, quality=args.quality)
    if not csv_list(args.hardware):
        raise InvalidInputError("--hardware names no device: use local and/or catalog keys")
    split_hardware(csv_list(args.hardware))


def run(args: argparse.Namespace) -> int:
    from chipfit.pipelines.feed import feed
    from chipfit.report.feed_view import feed_dict, feed_renderable

    _check(args)
    timing, model_timing = _timing(args)
    store, saved = None, []
    if not args.no_save or args.db:
        from chipfit.store import open_store

        store = open_store(args.db, create=True)

    def keep(m, run) -> None:
        note(f"[{len(run.measurements)}] {m.workload} {m.size} {m.stack} {m.device}: {m.status}")
        if not args.no_save:
            from chipfit.store.runs import run_file, save_run

            saved[:] = [save_run(run, run_file(run.run_id))]

    try:
        result = feed(args.model, args.batch, args.workers, csv_list(args.hardware),
                      samples=args.samples, source=args.source_size, quality=args.quality,
                      timing=timing, model_timing=model_timing, store=store, on_result=keep,
                      progress=note)
    finally:
        if store is not None:
            store.close()
    if not args.no_save:
        from chipfit.store.runs import run_file, save_run

        saved[:] = [save_run(result.run, run_file(result.run.run_id))]
    if args.json:
        print_json({"workload": result.workload, "pipeline": result.pipeline,
                    "describe": result.describe, "batch": result.batch,
                    "run_id": result.run.run_id, **feed_dict(result.report, result.pipeline),
                    "notes": list(result.notes),
                    "measurements": [m.to_dict() for m in result.run.measurements]})
    else:
        title = (f"chipfit feed {result.workload} at batch {result.batch}: "
                 f"{result.describe}")
        show(feed_renderable(result.report, result.pipeline, title, result.notes, args.wide),
             args.wide)
    for path in saved:
        err.print(f"wrote {path}")
    return 0
