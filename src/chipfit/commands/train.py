"""``chipfit train``: will training or fine-tuning fit, how long, on how many devices, for
how much."""

from __future__ import annotations

import argparse
import math
import re

from chipfit.commands._common import add_catalog_flags, csv_list, out, print_json, show
from chipfit.commands._common import note as progress_note

ORDER = 56
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """argparse type: ``90m``, ``24h``, ``2d``, ``3600`` (seconds)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|min|h|d|w)?\s*", text or "")
    if not match or len(text) > 40:
        raise argparse.ArgumentTypeError(f"invalid duration {text[:40]!r} (say 90m, 24h, 2d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration {text[:40]!r} must be positive")
    return seconds


def count(text: str) -> float:
    """argparse type: a positive count, ``1e6``, ``1M``, ``2B`` or ``500k``."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([kKmMbBtT]?)\s*",
                         text or "")
    if not match or len(text) > 40:
        raise argparse.ArgumentTypeError(f"invalid count {text[:40]!r} (say 1000000, 1e6, "
                                         "1M or 2B)")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2).lower()]
    value = float(match.group(1)) * scale
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"count {text[:40]!r} must be positive")
    return value


def money(text: str) -> float:
    """argparse type: dollars, ``500`` or ``$500``."""
    cleaned = (text or "").strip().lstrip("$")
    try:
        value = float(cleaned)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid amount {text[:40]!r} (say 500)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"amount {text[:40]!r} must be positive")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="training and fine-tuning plans: memory per device, step "
                       "time, time and cost to train on catalog hardware (no download)")
    p.add_argument("model", help="an llm built-in (llama-3.1-8b ...), a decoder config.json, "
                   "a built-in model workload (resnet50, bert-base ...) or module:function")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--samples", type=count, help="training samples (sequences for LLMs)")
    amount.add_argument("--tokens", type=count, help="training tokens (language models)")
    p.add_argument("--epochs", type=count, default=1.0, help="passes over the data (default 1)")
    p.add_argument("--method", choices=("full", "lora", "qlora"), default="full",
                   help="full training, LoRA (frozen base) or QLoRA (4-bit NF4 frozen base)")
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--lora-targets", default=None,
                   help="LLM matrices LoRA adapts: q,k,v,o,gate,up,down (default: all)")
    p.add_argument("--optimizer", choices=("adam", "adam8bit", "sgd"), default="adam",
                   help="adam (two fp32 moments), adam8bit, sgd (momentum)")
    p.add_argument("--checkpointing", action="store_true",
                   help="gradient checkpointing (recompute activations in the backward)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp8"), default="bf16",
                   help="fp32, bf16 mixed (fp32 master weights, default) or fp8")
    p.add_argument("--parallel", default=None,
                   help="ddp, fsdp, zero1, zero2, zero3 and/or tp=N,pp=N (default: searched)")
    p.add_argument("--hardware", "-H", default=",".join(
        ("h100-sxm", "a100-sxm-80gb", "l4", "tpu-v5e")),
        help="comma-separated catalog keys (default: h100-sxm,a100-sxm-80gb,l4,tpu-v5e)")
    p.add_argument("--devices", type=int, default=None,
                   help="devices of each type (default: searched from 1 to 256)")
    p.add_argument("--batch", type=int, default=None,
                   help="micro-batch per data-parallel rank (default: the largest that fits, "
                        "up to 64)")
    p.add_argument("--seq-len", type=int, default=2048,
                   help="tokens per sequence for language models (default 2048)")
    p.add_argument("--input", action="append", default=[], metavar="SHAPE",
                   help="a factory's input shape, e.g. 1x3x224x224 (repeatable)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--deadline", type=duration, default=None,
                      help="finish within this long (90m, 24h, 2d): the cheapest plan that does")
    goal.add_argument("--budget", type=money, default=None,
                      help="spend at most this many dollars: the fastest plan within it")
    p.add_argument("--measure", action="store_true",
                   help="also run a few real training steps here on the CPU (small batch, "
                        "random weights) and show the measured step time and peak memory")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--wide", action="store_true", help="every column, however wide")
    add_catalog_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chipfit.pipelines.train import train

    report = train(args.model, samples=args.samples, tokens=args.tokens, epochs=args.epochs,
                   method=args.method, lora_rank=args.lora_rank,
                   lora_targets=csv_list(args.lora_targets) if args.lora_targets else None,
                   optimizer=args.optimizer, checkpointing=args.checkpointing,
                   precision=args.precision, parallel=args.parallel,
                   hardware=csv_list(args.hardware), devices=args.devices, batch=args.batch,
                   seq_len=args.seq_len, deadline_s=args.deadline, budget_usd=args.budget,
                   measure=args.measure, inputs=args.input, progress=progress_note)
    if args.json:
        print_json(report.to_dict())
        return 0
    from chipfit.report.train_view import measured_lines, memory_lines, train_table

    out.print(report.verdict, markup=False, style="bold")
    show(train_table(report, args.wide), args.wide)
    for line in memory_lines(report) + measured_lines(report):
        out.print(line, markup=False)
    bands = sorted({f"{r.band:.0%} ({r.band_basis})" for r in report.rows})
    from chipfit.pipelines.train import device_efficiency

    own = device_efficiency()
    mine = sorted({f"{r.hardware} {own[r.hardware]:.2f}" for r in report.rows
                   if r.hardware in own})
    eff_note = ("training efficiency (x the catalog's achievable matmul rate): "
                + (f"{', '.join(mine)} (fitted on each device's published rows); "
                   if mine else "")
                + f"{report.efficiency:.2f} for the others ({report.efficiency_basis})")
    notes = [*report.notes, *([eff_note] if report.kind == "llm" else []),
             *(f"band {b}" for b in bands),
             *sorted({n for r in report.rows for n in r.notes})]
    if report.rows:
        notes.append(report.rows[0].provenance.get("communication", ""))
    for n in notes:
        if n:
            out.print(f"note - {n}", style="dim", markup=False)
    return 0
