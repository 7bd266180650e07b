"""Rich views of ``chipfit llm``: fit verdicts, memory, prefill/decode predictions, published rows.

Data never prints itself: these functions turn an :class:`~chipfit.pipelines.llm.LlmReport`
into tables. Column headers say where numbers come from (estimated memory, predicted times).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from chipfit.report.fmt import fmt_seconds

__all__ = ["llm_advice_renderable", "llm_published_table", "llm_table",
           "serve_html_section", "serve_table", "write_serve_html"]


def _num(value: float | None, digits: str = ".3g") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{digits}}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def llm_table(report: Any, wide: bool = False) -> Any:
    """One row per hardware target: verdict, memory, TTFT, decode tokens/s, bound, cost.

    Fitted to the width it is printed at (80 columns in a pipe): the least needed columns go
    first and the caption names them (``wide``: all of them)."""
    from chipfit.report.layout import Col, Fitted

    a, r = report.arch, report.run
    title = (f"chipfit llm {a.name}: {a.params / 1e9:.2f}B params"
             + (f" ({a.active_params / 1e9:.1f}B active)" if a.experts > 1 else "")
             + f", {r.weight_dtype} weights, {r.kv_dtype} KV, prompt {r.prompt_len}, "
             f"gen {r.gen_len}, batch {r.batch}")
    bands = sorted({f"{r.prediction.band:.0%}" for r in report.rows if r.prediction})
    caption = ("GB/dev: estimated memory per device of the tensor-parallel group; TTFT and "
               f"tok/s: predicted (band +-{'/'.join(bands) or '-'}); tok/s/seq per sequence, "
               "tok/s all = batch aggregate; $ per 1M generated tokens.")
    cols = [Col("hardware"), Col("fits 1", "right"), Col("devs", "right"),
            Col("GB/dev", "right", 2), Col("max B", "right", 4), Col("TTFT", "right"),
            Col("tok/s/seq", "right"), Col("tok/s all", "right", 3), Col("bound", drop=1),
            Col("$/1M", "right", 2)]
    rows = []
    for row in report.rows:
        p = row.prediction
        fits = "?" if row.fits is None else ("yes" if row.fits else "no")
        rows.append([
            row.hardware, fits, "-" if row.devices_needed is None else str(row.devices_needed),
            f"{row.memory.total / 1e9:.1f}", str(row.max_batch),
            fmt_seconds(p.ttft_s) if p else "-", _num(p.decode_tokens_per_s) if p else "-",
            _num(p.aggregate_tokens_per_s) if p else "-",
            (p.decode_bound if p else "-"), _money(p.usd_per_million_tokens) if p else "-"])
    return Fitted(cols, rows, wide=wide, title=title, caption=caption)


def measured_line(row: Any) -> str:
    """The local row's real generation beside its prediction, in one line."""
    m, p = row.measured, row.prediction
    text = (f"{row.hardware}: measured here ({m.dtype}, {m.threads} threads, {m.steps} decode "
            f"steps): decode {_num(m.decode_tokens_per_s)} tok/s per sequence, TTFT "
            f"{fmt_seconds(m.ttft_s)}")
    if p is not None:
        text += (f"; predicted {_num(p.decode_tokens_per_s)} tok/s "
                 f"({p.decode_tokens_per_s / m.decode_tokens_per_s - 1:+.0%}), TTFT "
                 f"{fmt_seconds(p.ttft_s)} ({p.ttft_s / m.ttft_s - 1:+.0%})")
    if m.contended:
        text += f" (from contended points: the machine was shared; {m.contention_note})"
    return text


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


def llm_verdict_line(advice: Any, second: bool = False) -> str:
    """The first line of ``chipfit llm`` and ``chipfit advise LLM``: which hardware, on how
    many devices, what it delivers and costs, and whether it is a tie. ``second``: a service
    answer (the verdict) came first, so this line is the static batch's best, not a second
    "Use ..."."""
    if not advice.ranked:
        name = advice.report.arch.name
        predicted = [r for r in advice.report.rows if r.prediction is not None]
        if predicted:  # excluded by a limit: name the closest and the limit that binds
            best = min(predicted, key=lambda r: r.prediction.total_s)
            p = best.prediction
            return (f"No hardware meets the limits for {name}: {len(predicted)} with "
                    f"predictions excluded (listed below); closest by time per request is "
                    f"{best.devices_needed or 1}x {best.hardware} at {p.total_s:.3g} s (TTFT "
                    f"{fmt_seconds(p.ttft_s)} + {p.gen_len - 1} decode steps of "
                    f"{fmt_seconds(p.step_s)}); --max-latency bounds the whole request: for a "
                    "per-token target use chipfit llm --per-user-tokens-per-s.")
        why = "; ".join(f"{h}: {w}" for h, w in advice.excluded[:3]) or "no hardware given"
        more = len(advice.excluded) - 3
        return (f"No hardware serves {name} here ({why}"
                + (f"; {more} more excluded" if more > 0 else "") + ").")
    row, _ = advice.ranked[0]
    p = row.prediction
    devices = row.devices_needed or 1
    what, _, _ = _objective(advice.objective)
    money = (f", ${p.usd_per_million_tokens:.3g} per 1M generated tokens"
             if p.usd_per_million_tokens is not None else ", no price in the catalog")
    lead = "Without the service search, fastest per request is" if second else "Use"
    text = (f"{lead} {devices}x {row.name} ({row.hardware}, TP{p.tp}): first token "
            f"{fmt_seconds(p.ttft_s)}, {_num(p.decode_tokens_per_s)} tok/s per sequence at "
            f"batch {p.batch}{money} (predicted, best {what}")
    tied = [t for t in advice.ties if row.hardware in t]
    if tied and len(tied[0]) > 1:
        others = [h for h in tied[0] if h != row.hardware]
        text += (f"; a tie with {', '.join(others[:3])}{' ...' if len(others) > 3 else ''} "
                 f"within the bands, {advice.tie_break.split(': ')[-1]}")
    return text + ")."


def llm_reasons(advice: Any) -> list[str]:
    """Plain sentences: why the first choice, on how many devices, bound by what."""
    if not advice.ranked:
        predicted = [r.hardware for r in advice.report.rows if r.prediction is not None]
        if predicted:
            return [f"all {len(predicted)} targets with a prediction were excluded by a "
                    "limit (see 'excluded' below)"]
        return ["no hardware has a prediction for this run (see 'excluded' below)"]
    row, value = advice.ranked[0]
    p = row.prediction
    what, unit, _ = _objective(advice.objective)
    out = [f"{row.hardware} x{p.tp} is first by {what}: {value:.4g} {unit} (predicted, "
           f"band x/÷{1 + p.band:.2g}, {p.stack} stack)",
           f"it needs {row.devices_needed} device(s) to hold {advice.report.arch.name} "
           f"({row.memory.total / 1e9:.1f} GB per device, estimated); decode is "
           f"{p.decode_bound}-bound at batch {p.batch}"]
    if len(advice.ranked) > 1:
        nxt, v2 = advice.ranked[1]
        out.append(f"next: {nxt.hardware} at {v2:.4g} {unit}")
    return out


def llm_advice_renderable(advice: Any) -> Any:
    """``chipfit advise`` for a language model: the verdict first, the ranking, its reasons,
    what was excluded."""
    from rich.console import Group
    from rich.text import Text

    what, unit, _ = _objective(advice.objective)
    table = Table(title=f"chipfit advise {advice.report.arch.name}: ranked by {what} "
                  f"(predicted)", title_justify="left")
    for col in ("#", "hardware", "devices", unit, "TTFT", "tok/s/seq", "bound", "stack"):
        table.add_column(col, justify="left" if col in ("hardware", "bound", "stack") else "right")
    for i, (row, value) in enumerate(advice.ranked, 1):
        p = row.prediction
        table.add_row(str(i), row.hardware, str(row.devices_needed or 1), f"{value:.4g}",
                      fmt_seconds(p.ttft_s), _num(p.decode_tokens_per_s), p.decode_bound,
                      p.stack)
    lines = [Text(f"- {r}") for r in llm_reasons(advice)]
    lines += [Text(f"excluded {h}: {w}", style="dim") for h, w in advice.excluded]
    service = getattr(advice, "service", "")
    head = [Text(service, style="bold")] if service else []
    verdict = Text(llm_verdict_line(advice, second=bool(service)),
                   style="" if service else "bold")
    if not advice.ranked:  # no empty table: the verdict, then what was excluded and why
        return Group(*head, verdict, *lines)
    return Group(*head, verdict, table, *lines)


def _objective(name: str) -> tuple[str, str, bool]:
    from chipfit.analysis.llm import OBJECTIVES

    return OBJECTIVES[name]


# ----------------------------------------------------------------------- serving


def _cfg(plan: Any) -> str:
    o = plan.option
    return f"TP{o.tp}" + (f"xPP{o.pp}" if o.pp > 1 else "") + f" x{plan.replicas}"


def serve_table(report: Any, wide: bool = False) -> Any:
    """One row per hardware: its configuration (TP, replicas), devices, what one replica
    serves within the SLO, TTFT and TPOT percentiles, tokens/s per device, cost; fitted to
    80 columns (the least needed columns go first)."""
    from chipfit.report.layout import Col, Fitted

    w, q = report.workload, report.slo.percentile
    load = f"{w.rate:g} req/s" if w.rate is not None else f"{w.concurrency} users"
    title = (f"chipfit llm {report.arch.name} serving {load}: {report.run.weight_dtype}, "
             f"prompt {w.prompt_len}, gen {w.gen_len} ({w.distribution}), {report.stack}")
    unit = "req/s" if w.rate is not None else "users"
    caption = (f"config: TP degree x replicas; cap: most {unit} one replica serves within "
               f"the SLO ({report.slo.describe()}); TTFT/TPOT p{q:g}, tok/s per device and "
               "$ per 1M tokens (prompt + generated): predicted; prices: catalog.")
    cols = [Col("hardware"), Col("config"), Col("devs", "right"), Col("SLO", drop=1),
            Col(f"cap/{unit}", "right", 3), Col(f"TTFT p{q:g}", "right"),
            Col(f"TPOT p{q:g}", "right"), Col("tok/s/dev", "right", 2),
            Col("$/1M", "right"), Col("why", drop=4, prose=True)]
    rows = []
    for row in report.rows:
        p = row.plan
        if p is None:
            rows.append([row.hardware, "-", "-", "-", "-", "-", "-", "-", "-", row.why or "-"])
            continue
        r = p.result
        cost = p.costs()["usd_per_million_tokens"]
        rows.append([row.hardware, _cfg(p), str(p.devices),
                     "yes" if p.meets else f"no: {p.binding}",
                     _num(p.capacity) if p.capacity is not None else "-",
                     fmt_seconds(r.p("ttft", q)), fmt_seconds(r.p("tpot", q)),
                     _num(r.output_tokens_per_s / p.option.per_replica),
                     _money(cost), row.why or ""])
    return Fitted(cols, rows, wide=wide, title=title, caption=caption)


def serve_html_section(report: Any, element_id: str = "serving") -> Any:
    """The serving answer as an HTML section: the answer, a table and the frontier plot."""
    from chipfit.report.html import Safe, _el, _figure, _join, _table, num
    from chipfit.report.serving_plots import pareto_plot

    q = report.slo.percentile
    rows = []
    for row in report.rows:
        p = row.plan
        if p is None:
            rows.append((row.hardware, "-", "-", "-", "-", "-", "-", "-", row.why or "-"))
            continue
        r, c = p.result, p.costs()
        rows.append((row.hardware, _cfg(p), p.devices, "yes" if p.meets else f"no ({p.binding})",
                     num(fmt_seconds(r.p("ttft", q)), "predicted"),
                     num(fmt_seconds(r.p("tpot", q)), "predicted"),
                     num(_num(r.output_tokens_per_s / p.option.per_replica), "predicted"),
                     num(_money(c["usd_per_million_tokens"]), "estimated")
                     if c["usd_per_million_tokens"] is not None else "- (no price)",
                     f"±{p.option.band:.0%}"))
    table = _table(("hardware", "config", "devices", "meets SLO", f"TTFT p{q:g}",
                    f"TPOT p{q:g}", "output tok/s per device", "$ per 1M tokens", "band"),
                   rows, numeric=(2, 4, 5, 6, 7))
    parts = [_el("h2", f"Serving {report.arch.name}", id=element_id),
             _el("p", report.answer()), table]
    if any(r.pareto for r in report.rows):
        parts.append(_figure(f"{element_id}-pareto", "Output tokens/s per device against "
                             "tokens/s per user (predicted), SLO region shaded.",
                             pareto_plot(report)))
    parts.append(_el("ul", _join(_el("li", n) for n in report.notes), class_="muted")
                 if report.notes else Safe(""))
    return _join(parts)


def write_serve_html(report: Any, path: Any) -> Any:
    """A self-contained HTML page of one serving report (same shell as chipfit report)."""
    from pathlib import Path

    from chipfit.paths import open_atomic
    from chipfit.report.html import _el, _join, page

    text = page(f"chipfit llm {report.arch.name}",
                _join([_el("h1", "chipfit llm"), serve_html_section(report)]))
    with open_atomic(path, "--html") as fh:
        fh.write(text)
    return Path(path)
