"""The language-model section of ``chipfit report`` and of ``chipfit llm --html``: one
:class:`~chipfit.pipelines.llm.LlmReport` as a table, a memory-fit chart and tokens/s against
batch.

Driven by the report's own run of the model (prompt, generation, batch and dtypes as given to
``chipfit report --llm-*``, never fixed defaults): the heading names them, the table prices
them ($ per 1M generated tokens). Every figure carries its source: memory is estimated from
the model's config, times and rates are predicted (with their band), a device's capacity is
the catalog's or, for this machine, measured (probed), and a real generation here
(``measured``) is shown beside its prediction.
"""

from __future__ import annotations

import math
from typing import Any

from chipfit.report.fmt import fmt_seconds
from chipfit.report.html import Safe, _el, _figure, _join, _table, num

__all__ = ["llm_row", "llm_section", "llm_sections", "write_llm_html"]

_HEADERS = ("hardware", "devices", "memory / device", "capacity", "max batch", "TTFT",
            "tok/s per seq", "tok/s batch", "$ per 1M tokens", "bound", "band", "stack")


def _rate(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.3g}"


def llm_row(row: Any) -> tuple[Any, ...]:
    """One hardware target as the table shows it, each figure tagged with its source."""
    p = row.prediction
    devices = "-" if row.devices_needed is None else str(row.devices_needed)
    capacity = (num(f"{row.memory_capacity / 1e9:.0f} GB", row.capacity_source)
                if row.memory_capacity else "-")
    usd = p.usd_per_million_tokens if p else None
    return (row.hardware, devices, num(f"{row.memory.total / 1e9:.1f} GB", "estimated"),
            capacity, str(row.max_batch),
            num(fmt_seconds(p.ttft_s), "predicted") if p else "-",
            num(_rate(p.decode_tokens_per_s), "predicted") if p else "-",
            num(_rate(p.aggregate_tokens_per_s), "predicted") if p else "-",
            num(f"${usd:,.3g}", "estimated") if usd is not None else "- (no price)",
            p.decode_bound if p else (row.why or "-"), f"±{p.band:.0%}" if p else "-",
            p.stack if p else "-")


def llm_section(report: Any, element_id: str = "llm") -> Safe:
    """The report section of one language model at the run's own prompt, generation, batch
    and dtypes (inline SVG plots, no script)."""
    from chipfit.report.llm_plots import memory_fit_plot, tokens_vs_batch_plot
    from chipfit.report.llm_view import measured_line

    a, r = report.arch, report.run
    head = f"Language model {a.name}"
    run = (f"{a.params / 1e9:.2f}B parameters; this run: prompt {r.prompt_len} tokens, "
           f"generate {r.gen_len}, batch {r.batch}, {r.weight_dtype} weights, {r.kv_dtype} KV "
           "cache (chipfit report --llm-prompt-len, --llm-gen-len, --llm-batch, --llm-dtype).")
    notes = sorted({n for row in report.rows if row.prediction for n in row.prediction.notes}
                   | {f"{row.hardware}: {row.why}" for row in report.rows if row.why}
                   | set(report.notes))
    measured = [measured_line(row) + "." for row in report.rows if row.measured is not None]
    return _join([
        _el("h2", head, id=element_id), _el("p", run),
        _table(_HEADERS, [llm_row(row) for row in report.rows], numeric=(1, 2, 3, 4, 5, 6, 7, 8)),
        _el("p", "$ per 1M generated tokens: the catalog's hourly price over the predicted "
                 "batch rate (estimated; '- (no price)' where the catalog has none). Band: how "
                 "far the prediction may be off.", class_="muted"),
        *(_el("p", line) for line in measured),
        _figure(f"{element_id}-memory", "Memory per device (estimated) against capacity "
                "(catalog; measured for this machine).", memory_fit_plot(report)),
        _figure(f"{element_id}-tokens", f"Decode tokens/s vs batch (predicted; this run: batch "
                f"{r.batch}).", tokens_vs_batch_plot(report)),
        _el("ul", _join(_el("li", n) for n in notes), class_="muted") if notes else Safe("")])


def llm_sections(reports: Any) -> list[Safe]:
    """One section per language-model report, with element ids ``llm-0``, ``llm-1`` ..."""
    return [llm_section(r, f"llm-{i}") for i, r in enumerate(reports)]


def write_llm_html(report: Any, path: Any, service: Any = None) -> Any:
    """A self-contained HTML page of one LLM report (``chipfit llm --html``): the same section
    ``chipfit report`` shows, so the two pages never price or label a row differently, and
    the serving section (answer, table, frontier plot) when ``service`` is given."""
    from pathlib import Path

    from chipfit.paths import open_atomic
    from chipfit.report.html import page
    from chipfit.report.llm_view import serve_html_section

    body = llm_section(report)
    if service is not None:
        body = _join([body, serve_html_section(service)])
    text = page(f"chipfit llm {report.arch.name}", _join([_el("h1", "chipfit llm"), body]))
    with open_atomic(path, "--html") as fh:
        fh.write(text)
    return Path(path)
