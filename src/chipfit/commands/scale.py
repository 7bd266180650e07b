"""``chipfit scale``: data-parallel scaling of a network's step over N devices."""

from __future__ import annotations

import argparse
from typing import Any

from chipfit.commands._common import err, finite_float, out, timing_from_args

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help="data-parallel scaling of a network over N devices "
                       "(weak or strong), with scaling efficiency")
    p.add_argument("--backend", choices=("jax", "torch"), default="jax",
                   help="framework whose data parallelism is measured (jax: sharding over a "
                   "device mesh; torch: DistributedDataParallel over N processes, gloo on CPU, "
                   "nccl on GPUs)")
    p.add_argument("--devices", "-n", type=int,
                   help="largest device count; 1, 2, 4 ... up to it are measured (default: all)")
    p.add_argument("--workload", "-w", default="mlp",
                   help="network: mlp, cnn, lstm, transformer-block (default: mlp)")
    p.add_argument("--batch", "-b", type=int, help="per-device batch (weak) or global batch "
                   "(strong); default: per network")
    p.add_argument("--scaling", choices=("weak", "strong"), default="weak",
                   help="weak: fixed per-device batch; strong: fixed global batch (default weak)")
    p.add_argument("--mode", choices=("train", "inference", "finetune"), default="train")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--platform", choices=("cpu", "gpu", "tpu", "cuda"),
                   help="platform (JAX default: tpu, else gpu, else cpu; torch: cuda or cpu)")
    p.add_argument("--simulate", action="store_true", help="split this CPU into --devices "
                   "simulated XLA devices (they share the same cores)")
    p.add_argument("--quick", action="store_true", help="short timing per point")
    p.add_argument("--budget", type=finite_float, help="seconds of timing per point at most")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--ray-address", metavar="ADDRESS", help="torch: scale across the nodes of "
                   "this Ray cluster (one rank per node, DDP over the network; 1, 2, 4 ... "
                   "nodes of one node type)")
    p.add_argument("--node-type", help="with --ray-address: the node type to scale over "
                   "(default: the type with the most nodes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.scale_jax import scale, simulate_cpu_devices
    from chipfit.spec import parse_dtype

    timing = timing_from_args(args)
    for flag, value in (("--devices", args.devices), ("--batch", args.batch)):
        if value is not None and value < 1:  # before any framework starts
            raise InvalidInputError(f"{flag} must be at least 1, got {value}")
    if args.ray_address or args.node_type:
        if args.backend != "torch" or args.simulate or not args.ray_address:
            raise InvalidInputError("--ray-address (and --node-type) scale torch across Ray "
                                    "nodes: use --backend torch --ray-address ADDRESS")
        from chipfit.pipelines.scale_fleet import scale_fleet

        result = scale_fleet(args.workload, args.devices, address=args.ray_address,
                             node_type=args.node_type, batch=args.batch, scaling=args.scaling,
                             mode=args.mode, dtype=parse_dtype(args.dtype),
                             budget_s=timing.budget_s, on_point=_progress)
    elif args.backend == "torch":
        if args.simulate:
            raise InvalidInputError("--simulate is for JAX; torch runs one process per device")
        from chipfit.pipelines.scale_torch import scale_torch

        result = scale_torch(args.workload, args.devices, batch=args.batch,
                             scaling=args.scaling, mode=args.mode, dtype=parse_dtype(args.dtype),
                             platform=args.platform, budget_s=timing.budget_s,
                             on_point=_progress)
    else:
        if args.simulate:
            if args.devices is None or args.platform not in (None, "cpu"):
                raise InvalidInputError("--simulate needs --devices N and the cpu platform")
            simulate_cpu_devices(args.devices)
        result = scale(args.workload, args.devices, batch=args.batch, scaling=args.scaling,
                       mode=args.mode, dtype=parse_dtype(args.dtype),
                       platform="cpu" if args.simulate else args.platform, timing=timing,
                       on_point=_progress)
    if args.json:
        from chipfit.paths import write_json_atomic

        err.print(f"wrote {write_json_atomic(args.json, result.to_dict(), '--json')}", markup=False)
    out.print(_table(result))
    return 0


def _progress(point: Any) -> None:
    m = point.measurement
    err.print(f"{point.devices} device(s), global batch {point.global_batch}: {m.status}")


def _table(result: Any) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from chipfit.report.fmt import fmt_seconds

    backend = result.points[0].measurement.device.split(":")[0] if result.points else "?"
    title = (f"chipfit scale - {result.workload} {result.mode} {result.dtype} on {backend} "
             f"{result.platform}, {result.scaling} scaling (measured)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("devices", "batch", "step time", "samples/s", "speed-up", "efficiency",
                "1st call"):
        table.add_column(col, justify="right")
    for p in result.points:
        m = p.measurement
        batch = f"{p.global_batch} = {p.devices}x{p.per_device_batch}"
        if not m.ok:
            table.add_row(str(p.devices), batch, Text(f"{m.status}: {m.note}"), "", "", "", "")
            continue
        table.add_row(str(p.devices), batch, f"{fmt_seconds(m.median_s)} ±{m.rel_ci * 100:.0f}%",
                      f"{p.throughput:,.0f}", f"x{result.speedup(p):.2f}",
                      f"{result.efficiency(p) * 100:.0f}%", fmt_seconds(m.first_call_s))
    table.caption = _caption(result)
    return table


def _caption(result: Any) -> str:
    rule = ("weak: per-device batch fixed, ideal step time constant" if result.scaling == "weak"
            else "strong: global batch fixed, ideal step time T1/N")
    text = (f"batch = devices x per-device batch; efficiency = (T1 x B_N/B_1) / (N x T_N), "
            f"100% = perfect; {rule}; 1st call includes tracing and XLA compilation. Batch "
            "sharded over the devices, weights replicated, gradients all-reduced by XLA.")
    if result.simulated:
        text += (" Simulated CPU devices share the same cores: this shows partitioning "
                 "overhead, not a speed-up you would get from more chips.")
    return text
