"""Rich views of ``chipfit llm``: fit verdicts, memory, prefill/decode predictions, published rows.

Data never prints itself: these functions turn an :class:`~chipfit.llm_pipeline.LlmReport`
into tables. Column headers say where numbers come from (estimated memory, predicted times).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from chipfit.report.fmt import fmt_seconds

__all__ = ["llm_published_table", "llm_table"]


def _num(value: float | None, digits: str = ".3g") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{digits}}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def llm_table(report: Any) -> Table:
    """One row per hardware target: verdict, memory, TTFT, decode tokens/s, bound, cost."""
    a, r = report.arch, report.run
    title = (f"chipfit llm {a.name}: {a.params / 1e9:.2f}B params"
             + (f" ({a.active_params / 1e9:.1f}B active)" if a.experts > 1 else "")
             + f", {r.weight_dtype} weights, {r.kv_dtype} KV, prompt {r.prompt_len}, "
             f"gen {r.gen_len}, batch {r.batch}")
    bands = sorted({f"{r.prediction.band:.0%}" for r in report.rows if r.prediction})
    table = Table(title=title, title_justify="left", caption="GB/dev: estimated memory per "
                  "device of the tensor-parallel group; TTFT and tok/s: predicted (band +-"
                  f"{'/'.join(bands) or '-'}); tok/s/seq per sequence, tok/s all = batch "
                  "aggregate; $ per 1M generated tokens", caption_justify="left")
    for col in ("hardware", "fits 1", "devs", "GB/dev", "max B", "TTFT", "tok/s/seq",
                "tok/s all", "bound", "$/1M"):
        table.add_column(col, justify="left" if col in ("hardware", "bound") else "right")
    for row in report.rows:
        p = row.prediction
        fits = "?" if row.fits is None else ("yes" if row.fits else "no")
        table.add_row(
            row.hardware, fits, "-" if row.devices_needed is None else str(row.devices_needed),
            f"{row.memory.total / 1e9:.1f}", str(row.max_batch),
            fmt_seconds(p.ttft_s) if p else "-", _num(p.decode_tokens_per_s) if p else "-",
            _num(p.aggregate_tokens_per_s) if p else "-",
            (p.decode_bound if p else "-"), _money(p.usd_per_million_tokens) if p else "-")
    return table


def llm_published_table(cases: Sequence[Any]) -> Table:
    """Published LLM results beside chipfit's raw and leave-one-out predictions."""
    table = Table(title="Published LLM results vs prediction (leave-one-out per stack and "
                  "metric)", title_justify="left")
    for col in ("id", "published", "predicted (raw)", "LOO factor", "LOO error"):
        table.add_column(col, justify="left" if col == "id" else "right")
    for c in cases:
        table.add_row(c.id, f"{c.published:.4g} {c.unit}", f"{c.predicted:.4g}",
                      f"{c.loo_factor:.2f}", f"{c.loo_error:+.0%}")
    return table
