"""``chipfit advise``: which processor for my model, with reasons, cost and energy."""

from __future__ import annotations

import argparse
import contextlib

from chipfit.commands._common import (
    Saver,
    add_catalog_flags,
    add_host_speed_flag,
    add_ray_fleet_flags,
    csv_list,
    err,
    finite_float,
    note,
    open_db,
    out,
    print_json,
    progress,
    ray_address,
    show,
    warn,
    warn_if_busy,
)

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("advise", help="which processor should run this model, and why")
    p.add_argument("model", help="a built-in workload (resnet50; chipfit workloads lists them), a "
                   "TorchScript/.pt2 file, package.module:function returning a module, or a "
                   "language model (a chipfit llm built-in such as llama-3.1-8b, or a "
                   "decoder-only config.json)")
    p.add_argument("--input", action="append", default=[], metavar="SHAPE[:DTYPE]",
                   help="model input with the batch first, e.g. 1x3x224x224:float32 (repeat "
                   "for several inputs)")
    p.add_argument("--weights", help="safetensors state dict to load into the factory's model")
    p.add_argument("--no-measure", action="store_true",
                   help="measure nothing here: rank catalog hardware only, every figure predicted")
    p.add_argument("--trust-pickle", action="store_true", help="allow full-pickle model files "
                   "(torch.save(model)); unpickling runs code named in the file: only for files "
                   "you trust")
    p.add_argument("--objective", default="latency",
                   choices=("latency", "throughput", "cost", "energy"),
                   help="what to rank by: latency (time per batch, default), throughput "
                   "(samples/s), cost (dollars per 1M samples) or energy (joules per sample)")
    p.add_argument("--batch", type=int, help="batch size to rank at (default: 1 for latency, "
                   "the largest swept otherwise)")
    p.add_argument("--batches", help="comma-separated batch sweep (default 1,8,32)")
    p.add_argument("--mode", default="inference", choices=("inference", "train", "finetune"),
                   help="inference (default), train (forward, backward and an optimizer step) or "
                   "finetune (only the head trains)")
    p.add_argument("--dtype", default=None,
                   help="number format of the weights and activations: float32 (default), "
                        "bfloat16 or float16; language models: bfloat16 (default), float16, "
                        "fp8, int8, int4")
    p.add_argument("--prompt-len", type=int, default=512,
                   help="language models: prompt tokens (default 512)")
    p.add_argument("--gen-len", type=int, default=128,
                   help="language models: generated tokens (default 128)")
    p.add_argument("--stacks", default="eager",
                   help="comma-separated software stacks: local ones are measured here at the "
                        "ranked batch (compile, onnxruntime, int8, int8-torch, int8-static, or "
                        "all); tensorrt (catalog GPUs) and engine (every catalog device) are "
                        "predicted int8 engines fitted on published MLPerf results")
    p.add_argument("--hardware", "-H", help="comma-separated catalog keys to predict (default: a "
                   "spread of GPUs and TPUs; see chipfit catalog)")
    p.add_argument("--devices", help="local devices to measure (default: all found)")
    p.add_argument("--max-latency", type=finite_float, metavar="MS", help="latency limit per batch, ms")
    p.add_argument("--budget", type=finite_float, metavar="USD", help="dollars per training run (with "
                   "--train-samples) or per 1M inferences")
    p.add_argument("--local-price", type=finite_float, metavar="USD", help="hourly price of this "
                   "machine, for the cost objective (the catalog prices only catalog devices)")
    add_host_speed_flag(p)
    add_catalog_flags(p)
    p.add_argument("--train-samples", type=int, help="samples per epoch, for a time-to-train "
                   "estimate")
    p.add_argument("--epochs", type=finite_float, default=1.0)
    p.add_argument("--json", metavar="PATH", help="write the advice as JSON to PATH ('-' for "
                   "stdout)")
    p.add_argument("--no-save", action="store_true", help="do not keep the measurements")
    p.add_argument("--quick", action="store_true", help="short timing per point (a rough answer "
                   "in seconds; the same batches and predictions)")
    add_ray_fleet_flags(p)
    p.add_argument("--job-timeout", type=finite_float, metavar="SECONDS",
                   help="a model file or factory must load and run one batch within this "
                   "long, in a separate process under the memory limit, before anything is "
                   "measured; on a fleet, also each job's timeout (default 300)")
    p.add_argument("--wide", action="store_true", help="every column of the ranking, however "
                   "narrow the terminal")
    p.set_defaults(func=run, labels=None, executor=None, address=None)


def _print_notes(name: str) -> None:
    """What loading the model changed (a weights dtype converted), one line each."""
    from chipfit.workloads import get_workload

    for text in getattr(getattr(get_workload(name), "model", None), "notes", ()):
        warn(text, prefix="note: ")


def _positive(name: str, value: float | None) -> None:
    from chipfit.errors import InvalidInputError

    if value is not None and value <= 0:
        raise InvalidInputError(f"{name} must be positive")


def _batch(text: str) -> int:
    from chipfit.errors import InvalidInputError

    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"malformed --batches entry {text!r}: use positive integers, "
                                "e.g. 1,8,32")
    return int(text)


def _probe(args: argparse.Namespace) -> None:
    """A user's model (file or factory) loads and runs one batch in a separate process
    first, under --job-timeout and the memory limit: a factory that never returns or a
    forward that eats all memory stops there, not in this process."""
    from chipfit.execute.probe import DEFAULT_LOAD_TIMEOUT_S, precheck_model, probe_model
    from chipfit.workloads import all_workloads
    from chipfit.workloads.user import parse_input

    for text in args.input:
        parse_input(text)  # a malformed --input is refused before any process starts
    if args.model in {w.name for w in all_workloads()}:
        return  # a built-in (with or without --input) is chipfit's own code: nothing to isolate
    timeout = DEFAULT_LOAD_TIMEOUT_S if args.job_timeout is None else args.job_timeout
    if timeout <= 0:
        from chipfit.errors import InvalidInputError

        raise InvalidInputError("--job-timeout must be positive (seconds)")
    precheck_model(args.model, weights=args.weights, trust_pickle=args.trust_pickle)
    probe_model(args.model, tuple(args.input), weights=args.weights,
                trust_pickle=args.trust_pickle, timeout_s=timeout)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from chipfit.pipelines.advise import DEFAULT_HARDWARE, advise
    from chipfit.report.advise_view import advice_json, advice_renderable
    from chipfit.spec import TimingConfig

    for flag in ("batch", "max_latency", "budget", "train_samples", "epochs", "local_price"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag))
    from chipfit.pipelines.llm import is_llm

    if is_llm(args.model):
        return _advise_llm(args)
    args.dtype = args.dtype or "float32"
    batches = [_batch(b) for b in csv_list(args.batches)] if args.batches else None
    _probe(args)
    if not err.is_terminal:
        note(f"advise {args.model}: "
             f"{'' if args.no_measure else 'measuring on the local devices, then '}predicting "
             f"{len(csv_list(args.hardware)) if args.hardware else len(DEFAULT_HARDWARE)} "
             "catalog devices")
    store = None if args.no_save else open_db(argparse.Namespace(db=None), create=True)
    with progress() as bar, contextlib.closing(store) if store is not None else \
            contextlib.nullcontext():
        task = bar.add_task("advise", total=None, current="")
        saver = Saver(argparse.Namespace(no_save=args.no_save, json=None, csv=None), bar, task)
        advice = advise(args.model, tuple(args.input), objective=args.objective, batch=args.batch,
                        batches=batches, mode=args.mode, dtype=args.dtype,
                        hardware=csv_list(args.hardware) if args.hardware else DEFAULT_HARDWARE,
                        devices=csv_list(args.devices) if args.devices else None,
                        max_latency=args.max_latency / 1e3 if args.max_latency else None,
                        budget=args.budget, train_samples=args.train_samples,
                        epochs=args.epochs, weights=args.weights,
                        trust_pickle=args.trust_pickle, on_result=saver,
                        local_price=args.local_price, store=store,
                        progress=None if err.is_terminal else note,
                        stacks=csv_list(args.stacks),
                        timing=TimingConfig.quick() if args.quick else None,
                        measure=not args.no_measure, host_speed=args.host_speed)
    _print_notes(advice.workload)
    warn_if_busy(advice.run.measurements)
    train = (args.train_samples, args.epochs) if args.train_samples else None
    verdict = advice.verdict
    data = advice_json(advice.recommendation, train, verdict)
    data.update(workload=advice.workload, dtype=advice.dtype, mode=advice.mode,
                run_id=advice.run.run_id, batch=advice.evidence.batch)
    # The advice travels inside the run, so `chipfit report` shows it beside the measurements
    # (from the run file and from the database alike).
    final = replace(advice.run, settings=advice.run.settings + (
        ("advice", json.dumps(data, default=str)),))
    saver.finish(final)
    if store is not None:
        with open_db(argparse.Namespace(db=None), create=True) as db:
            db.save_run(final)
    fleet = _fleet(args, advice) if ray_address(args) else None
    if fleet is not None:
        data["fleet"] = fleet[0]
    if args.json == "-":
        print_json(data)
        return 0
    if args.json:
        from chipfit.paths import write_json_atomic

        err.print(f"wrote {write_json_atomic(args.json, data, '--json')}", markup=False)
    show(advice_renderable(advice.recommendation, train, verdict, args.wide), args.wide)
    if fleet is not None:
        out.print(fleet[1])
    return 0


def _fleet(args: argparse.Namespace, advice):  # noqa: ANN001, ANN202
    """``--ray-address``: the model at the advised batch on every node type, and the choice."""
    from dataclasses import asdict

    from chipfit.commands._common import executor_from_args
    from chipfit.pipelines.fleet import fleet_measure, fleet_report, parse_node_prices
    from chipfit.report.fleet_view import fleet_renderable

    prices = parse_node_prices(args.node_price)
    with executor_from_args(args) as executor, progress() as bar:
        task = bar.add_task("fleet", total=None, current="")
        saver = Saver(argparse.Namespace(no_save=args.no_save, json=None, csv=None), bar, task)
        run = fleet_measure(advice.workload, advice.evidence.batch, mode=advice.mode,
                            dtype=advice.dtype, executor=executor, on_result=saver)
    saver.finish(run)
    report = fleet_report(run, prices, "cost" if args.objective == "cost" else "latency")
    if report is None:
        return None
    data = {"run_id": run.run_id, "choices": [asdict(c) for c in report.choices],
            "rows": [{**asdict(r), "usd_per_m_items": r.usd_per_m_items} for r in report.rows]}
    return data, fleet_renderable(report.rows, report.choices)


def _advise_llm(args: argparse.Namespace) -> int:
    """A decoder-only language model: the same logic as ``chipfit llm`` (memory fit, devices
    needed, prefill and decode predicted per catalog device), ranked by the objective.
    Nothing is measured: ``--budget`` is dollars per 1M generated tokens."""
    from chipfit.pipelines.advise import DEFAULT_HARDWARE
    from chipfit.pipelines.llm import llm_advice
    from chipfit.report.llm_view import llm_advice_renderable

    hardware = csv_list(args.hardware) if args.hardware else [*DEFAULT_HARDWARE, "local"]
    advice = llm_advice(args.model, hardware, args.objective,
                        max_latency=args.max_latency / 1e3 if args.max_latency else None,
                        budget=args.budget, prompt_len=args.prompt_len, gen_len=args.gen_len,
                        batch=args.batch or 1, dtype=args.dtype or "bfloat16")
    advice = _with_service(advice, args, hardware)
    if args.json == "-":
        print_json(advice.to_dict())
        return 0
    if args.json:
        import json

        from chipfit.paths import open_atomic

        with open_atomic(args.json, "--json") as fh:
            json.dump(advice.to_dict(), fh, indent=1, default=str)
        err.print(f"wrote {args.json}")
    out.print(llm_advice_renderable(advice))
    return 0


def _with_service(advice: object, args: argparse.Namespace, hardware: list[str]) -> object:
    """The service question answered first (docs/SERVING.md): ``--batch`` users (1 by
    default) served with continuous batching under the default SLO, fewest devices. Not
    when --max-latency or --budget is given: those limits bind the ranking below, and a
    service answer that ignored them would contradict it."""
    from dataclasses import replace

    if args.max_latency or args.budget:
        return advice
    from chipfit.pipelines.serving import static_service

    report = static_service(args.model, hardware, args.prompt_len, args.gen_len,
                            args.dtype or "bfloat16", users=args.batch or 1)
    if report is None:
        return advice
    return replace(advice, service=report.answer(), service_report=report)
