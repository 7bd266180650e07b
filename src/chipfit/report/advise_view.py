"""Words and tables for a recommendation: reasons become sentences only here."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from chipfit.analysis.evidence import Option, Reason, Recommendation
from chipfit.report.fmt import fmt_seconds

__all__ = ["advice_json", "advice_renderable", "reason_text"]

_WORDS = {
    "below-crossover": "At batch {batch} the CPU is faster than every accelerator: the work is "
                       "below the crossover, where launches and copies cost more than they save.",
    "launch-bound": "The accelerators' predicted time is dominated by kernel launches or "
                    "host-device copies, not by the model's arithmetic.",
    "memory-host-only": "The model needs more memory than the accelerators have but fits in "
                        "host RAM.",
    "cpu-fallback-ops": "Some operators have no kernel on the accelerator and fall back to the "
                        "CPU, adding copies.",
    "recurrent-or-irregular": "Recurrent layers or many small non-matmul operators make the "
                              "work sequential and irregular, which suits CPUs and GPUs better "
                              "than TPUs.",
    "matrix-large-batch": "Almost all the arithmetic is matrix multiplication or convolution and "
                          "the batch is large: the shape of work TPUs are built for.",
    "long-training": "Training would take over a week even on the fastest single device: "
                     "spread it over a TPU pod or several GPUs.",
    "parallel-work": "The model has enough parallel work that a GPU is faster than the CPU.",
    "faster-stack": "{stack} ({precision}) on {device}: {speedup} faster than eager at batch "
                    "{batch}; {agreement}.",
}


class _Missing(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def reason_text(reason: Reason) -> str:
    """One sentence for ``reason`` followed by its evidence and source."""
    data = dict(reason.evidence)
    sentence = _WORDS.get(reason.code, reason.code).format_map(_Missing(data))
    facts = "; ".join(f"{k}: {v}" for k, v in reason.evidence)
    return f"{sentence} [evidence ({reason.source}): {facts}] [rule source: {reason.cite}]"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}"


def _joules(o: Option) -> str:
    if o.joules_per_item is None:
        return "-"
    return f"{o.joules_per_item:.3g}" + (" meas." if o.energy_source == "measured" else " est.")


def options_table(rec: Recommendation, train: tuple[int, float] | None = None) -> Table:
    table = Table(title=f"Processors ranked by {rec.objective}", title_justify="left",
                  caption="source: measured here, or predicted from the catalog; $ (catalog price "
                  "x time) and J are estimated unless marked meas.", caption_justify="left")
    for col in ("#", "device", "kind", "stack", "source", "batch", "latency", "samples/s",
                "$ per 1M", "J/sample", "bound"):
        table.add_column(col, justify="right" if col not in ("device", "kind", "stack", "bound",
                                                             "source") else "left")
    if train:
        table.add_column("time to train", justify="right")
    for i, o in enumerate(rec.ranked, 1):
        row = [str(i), o.device, o.kind, _stack_cell(o), o.latency_source, str(o.batch),
               fmt_seconds(o.latency_s), f"{o.throughput:,.0f}", _money(o.usd_per_million),
               _joules(o), o.bound or "-"]
        if train:
            seconds = o.train_time_s(*train)
            row.append("-" if seconds is None else f"{fmt_seconds(seconds)} ({o.train_source})")
        table.add_row(*row, style="bold green" if i == 1 else None)
    return table


def _stack_cell(o: Option) -> str:
    text = f"{o.stack} {o.precision}"
    speedup = o.speedup_vs_eager
    return text + (f" (×{speedup:.2g} vs eager)" if speedup else "")


def advice_renderable(rec: Recommendation, train: tuple[int, float] | None = None) -> Any:
    parts: list[Any] = [options_table(rec, train)]
    if rec.choice is None:
        parts.append(Text("No processor meets the constraints.", style="bold red"))
    else:
        c = rec.choice
        parts.append(Text(f"Recommendation: {c.device} ({c.name}) with {c.stack} "
                          f"{c.precision} at batch {c.batch}, best {rec.objective} among "
                          f"{len(rec.ranked)} eligible options.", style="bold"))
    for group in rec.ties:
        parts.append(Text(f"tie: {', '.join(group)} ({rec.tie_break})", style="yellow"))
    for reason in rec.reasons:
        parts.append(Text(f"- {reason_text(reason)}"))
    for device, why in rec.excluded:
        parts.append(Text(f"excluded {device}: {why}", style="dim"))
    return Group(*parts)


def _option_json(o: Option, train: tuple[int, float] | None) -> dict[str, Any]:
    return {
        "device": o.device, "kind": o.kind, "name": o.name, "present": o.present, "batch": o.batch,
        "stack": o.stack, "precision": o.precision,
        "speedup_vs_eager": {"value": o.speedup_vs_eager, "source": o.latency_source},
        "max_rel_diff_vs_eager": {"value": o.max_rel_diff, "source": "measured"},
        "latency_s": {"value": o.latency_s, "source": o.latency_source},
        "throughput_per_s": {"value": o.throughput, "source": o.latency_source},
        "usd_per_million": {"value": o.usd_per_million, "source": "estimated"},
        "joules_per_sample": {"value": o.joules_per_item, "source": o.energy_source},
        "bound": o.bound, "fits": o.fits,
        "time_to_train_s": ({"value": o.train_time_s(*train), "source": o.train_source}
                            if train else None),
        "notes": list(o.notes),
        "band": o.band,
    }


def advice_json(rec: Recommendation, train: tuple[int, float] | None = None) -> dict[str, Any]:
    return {
        "objective": rec.objective,
        "choice": rec.choice.device if rec.choice else None,
        "choice_stack": rec.choice.stack if rec.choice else None,
        "choice_precision": rec.choice.precision if rec.choice else None,
        "choice_batch": rec.choice.batch if rec.choice else None,
        "ranked": [_option_json(o, train) for o in rec.ranked],
        "reasons": [{"code": r.code, "favours": r.favours, "text": reason_text(r),
                     "evidence": dict(r.evidence), "source": r.source, "cite": r.cite}
                    for r in rec.reasons],
        "excluded": [{"device": d, "why": w} for d, w in rec.excluded],
        "ties": [list(group) for group in rec.ties],
        "tie_break": rec.tie_break,
    }
