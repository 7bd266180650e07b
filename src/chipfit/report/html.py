"""The HTML report: one self-contained file, readable offline, safe to open.

Self-contained: plots are inline SVG (matplotlib), styles are one inline ``<style>``, fonts
are the reader's own; there is no script, no external reference, and a Content-Security-
Policy that forbids loading anything. Safe: every piece of text that came from a user or a
results file (workload and model names, device names, paths, labels, notes) is HTML-escaped
through :func:`esc`; only :class:`Safe` strings built here pass through unescaped.

Provenance: every number carries a ``measured`` / ``predicted`` / ``catalog`` tag (a
``source`` column, or a tag beside the number), as everywhere in chipfit.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chipfit._version import __version__
from chipfit.analysis.crossover import (
    Crossover,
    SeriesSummary,
    SweepAnalysis,
    analyze,
    build_series,
    rate_unit,
    series_device,
)
from chipfit.report import crossover_view as words
from chipfit.report.fmt import clean, fmt_bytes, fmt_rate, fmt_seconds
from chipfit.results import Measurement, Run
from chipfit.workloads import size_position

__all__ = ["ClaimRow", "ReportData", "Safe", "catalog_ceilings", "esc", "load_claims", "num",
           "prepare", "render_report", "report_figures", "src", "write_report"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_SOURCES_HELP = {
    "measured": "timed or probed on the machine named in the run metadata",
    "predicted": "estimated by a model (here: the memory guard's estimate of what fits)",
    "catalog": "a datasheet figure from chipfit's hardware catalog",
    "estimated": "computed from measured and catalog or user figures (e.g. $ per 1M items)",
    "user": "given on the command line (e.g. --node-price)",
    "contended": "measured while the machine was shared: slower than on a quiet machine, "
                 "re-measure to confirm",
}
_STYLE = """
html{background:#fff}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;
padding:1rem 1.5rem;color:#1a1a1a;background:#fff;line-height:1.45;overflow-wrap:anywhere}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.86rem;max-width:100%}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{overflow-wrap:normal}
th{background:#f3f3f3}td.n{text-align:right}.v,.nw{white-space:nowrap}
ol.crossings li{margin:.15rem 0}.busy{color:#8a3b00}
figure{margin:1rem 0}figure svg{width:100%;height:auto}
figcaption{font-size:.85rem;color:#444}
.src{font-size:.68rem;border-radius:3px;padding:0 .25rem;margin-left:.25rem;
white-space:nowrap;vertical-align:middle}
.src-measured{background:#e3f1e3;color:#1d5c1d}.src-predicted{background:#fdf0d5;color:#7a4d00}
.src-catalog{background:#e1ecf8;color:#17457a}.src-estimated{background:#eee;color:#444}
.src-contended{background:#fde2d5;color:#8a3b00}.src-user{background:#eee;color:#444}
.kind-one{color:#1d5c1d}.kind-several{color:#7a4d00}.muted{color:#666}
ul.findings li{margin:.3rem 0}details{margin:.5rem 0}code{font-size:.85rem}
nav a{margin-right:.8rem;display:inline-block}
@media (max-width:700px){body{padding:.5rem .7rem}
table,thead,tbody,tr,td{display:block}thead{display:none}table{border:0}
tr{border:1px solid #ddd;margin:.5rem 0}td{border:0;border-bottom:1px solid #eee}
td.n{text-align:left}td::before{content:attr(data-label) ": ";font-weight:600;color:#444}}
"""


class Safe(str):
    """Markup built by this module: passes through :func:`esc` unchanged."""


def esc(value: Any) -> Safe:
    """``value`` as HTML text: user-supplied strings can never become markup, and their
    control and bidirectional characters show as escapes (:func:`~chipfit.report.fmt.clean`)
    instead of reordering or hiding what the page says."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape(clean(str(value)), quote=True))


def _join(parts: Iterable[Any]) -> Safe:
    return Safe("".join(esc(p) for p in parts))


# A command-line flag (``--devices``, ``-o``) in running text: kept on one line, never split
# at its dashes ("calibrate -" / "-devices").
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def text(value: Any) -> Safe:
    """``value`` escaped as element text (:func:`esc`), command-line flags kept unbroken."""
    if isinstance(value, Safe):
        return value
    parts = _FLAG.split(clean(str(value)))  # odd places: the flags
    return Safe("".join(f'<span class="nw">{html.escape(p)}</span>' if i % 2 else
                        html.escape(p) for i, p in enumerate(parts)))


def _el(tag: str, body: Any = "", **attrs: str) -> Safe:
    attr = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return Safe(f"<{tag}{attr}>{text(body)}</{tag}>")


def src(source: str) -> Safe:
    """The provenance tag shown beside a number."""
    return _el("span", source, class_=f"src src-{source}",
               title=_SOURCES_HELP.get(source, source))


def num(text: Any, source: str) -> Safe:
    """A number with its provenance tag."""
    return Safe(_el("span", text, class_="v") + src(source))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()
           ) -> Safe:
    right = set(numeric)
    head = _join(_el("th", h) for h in headers)
    body = _join(_el("tr", _join(_el("td", c, class_="n", data_label=h) if i in right
                                 else _el("td", c, data_label=h)
                                 for i, (h, c) in enumerate(zip(headers, row, strict=True))))
                 for row in rows)
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


@dataclass(frozen=True)
class ClaimRow:
    """One checked claim of the seeds, as the claims section shows it."""

    claim: str
    verdict: str
    evidence: str
    source: str


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, merged from one or more runs and analysed once.

    ``ceilings`` are per-device roofs from the hardware catalog (devices it knows); the
    roofline falls back to measured ceilings for the others.
    """

    runs: tuple[Run, ...]
    measurements: tuple[Measurement, ...]
    analysis: SweepAnalysis
    axes: Mapping[str, str]
    ceilings: Mapping[str, Any]
    #: Series measured again by a newer run: (workload, device, older run id, newer run id).
    #: Only the newest run's points of a series are shown, so two runs never mix in a line.
    superseded: tuple[tuple[str, str, str, str], ...] = ()


def _machine(run: Run) -> str:
    facts = dict(run.machine)
    return facts.get("fingerprint") or facts.get("hostname") or run.run_id


def _renamer(run: Run, several: bool) -> Any:
    """Device names as the report shows them: tagged with the host when runs span machines."""
    host = dict(run.machine).get("hostname") or _machine(run)
    return (lambda d: f"{d} [{host}]") if several else (lambda d: d)


def _series_of(m: Measurement) -> tuple[str, str, str, str]:
    return (m.workload, m.series_device, m.dtype, m.mode)


def newest_series(runs: Sequence[Run]) -> dict[tuple[str, str, str, str], int]:
    """For every series (workload, device, dtype, mode) of ``runs``: the index of the newest
    run that measured it (latest start; the later of two that started together). Measuring a
    series again (a changed model, a quieter machine) replaces it; the two are not mixed."""
    order = sorted(range(len(runs)), key=lambda i: (runs[i].started_at, i))
    owner: dict[tuple[str, str, str, str], int] = {}
    several = len({_machine(r) for r in runs}) > 1
    for i in order:
        rename = _renamer(runs[i], several)
        for m in runs[i].measurements:
            owner[_series_of(replace(m, device=rename(m.device)))] = i
    return owner


def _merged(runs: Sequence[Run]) -> tuple[list[Measurement], dict[Any, str | None],
                                          list[tuple[str, str, str, str]]]:
    """The measurements shown (each series from its newest run), the memory guard's limits
    the runs recorded, and the series an older run measured too (shown from the newer)."""
    several = len({_machine(r) for r in runs}) > 1
    owner = newest_series(runs)
    out: list[Measurement] = []
    limits: dict[Any, str | None] = {}
    superseded: dict[tuple[str, str, str, str], None] = {}
    for i, run in enumerate(runs):
        rename = _renamer(run, several)
        for m in run.measurements:
            m = replace(m, device=rename(m.device))
            newest = owner[_series_of(m)]
            if newest == i:
                out.append(m)
            else:
                superseded[(m.workload, m.series_device, run.run_id, runs[newest].run_id)] = None
        limits.update({(w, rename(d), t, mo): v
                       for (w, d, t, mo), v in run.limits().items()})
    return out, limits, list(superseded)


def catalog_ceilings(runs: Sequence[Run], precision: str = "fp32") -> dict[str, Any]:
    """Roofs from the hardware catalog for every discovered device it knows (by name, and by
    core count for CPUs). Thread-pinned CPUs (``@1t``) get none: their peak is not a catalog
    figure. A CPU's FLOP/s roof is never below what was measured on it: the highest of the
    catalog's peak, its theoretical peak at the highest clock read here (runs made on this
    machine) and its best measured rate (see :func:`chipfit.hardware.cpu.best_peak`)."""
    from chipfit.hardware.catalog import load_catalog
    from chipfit.report.plots import Ceiling

    catalog = load_catalog()
    several = len({_machine(r) for r in runs}) > 1
    found: dict[str, Any] = {}
    for run in runs:
        rename = _renamer(run, several)
        for d in run.discovery.devices:
            spec = catalog.match(d.name, d.cores if d.kind == "cpu" else None)
            ceiling = None
            if spec is not None and (spec.peak(precision) or spec.memory_bw):
                ceiling = Ceiling(spec.peak(precision), spec.memory_bw, "catalog",
                                  f"{spec.name} ({spec.key}), {precision} peak")
            if d.kind == "cpu" and precision == "fp32":
                ceiling = _cpu_ceiling(run, d, ceiling) or ceiling
            if ceiling is not None:
                found[rename(d.ref)] = ceiling
    return found


def _cpu_ceiling(run: Run, device: Any, catalog: Any) -> Any:
    """A CPU's roof: the highest of its catalog peak, its theoretical peak (read on this
    machine, so only for a run made here) and the best FLOP/s measured on it."""
    from chipfit.hardware.cpu import Peak, best_peak, local_theoretical_peak, machine_fingerprint
    from chipfit.report.plots import Ceiling

    stated = [Peak(catalog.flops, "catalog", catalog.note)] if catalog and catalog.flops else []
    if dict(run.machine).get("fingerprint") == dict(machine_fingerprint()).get("fingerprint"):
        stated.append(local_theoretical_peak(device.cores))
    rates = [m.flops / m.median_s for m in run.measurements
             if m.ok and m.device == device.ref and m.flops and m.median_s > 0]
    peak = best_peak(stated, max(rates, default=None))
    if peak is None:
        return None
    return Ceiling(peak.flops, catalog.bandwidth if catalog else None, peak.source, peak.basis,
                   "catalog" if catalog and catalog.bandwidth else "")


def _axis(workload: str, runs: Sequence[Run]) -> str:
    from chipfit.errors import ChipfitError
    from chipfit.workloads import get_workload

    try:
        return get_workload(workload).axis
    except ChipfitError:
        axes = {dict(r.settings).get("axis") for r in runs} - {None}
        return axes.pop() if len(axes) == 1 else "size"


def prepare(runs: Sequence[Run], *, level: float = 0.95, resamples: int = 2000,
            ceilings: Mapping[str, Any] | None = None) -> ReportData:
    """Merge ``runs`` and analyse them: the data every section and plot draws from.

    ``ceilings`` maps device names to :class:`chipfit.report.plots.Ceiling`; by default the
    catalog's, where it knows the device.
    """
    measurements, limits, superseded = _merged(runs)
    analysis = analyze(measurements, limits=limits, level=level, resamples=resamples,
                       position=size_position)
    names = dict.fromkeys(m.workload for m in measurements)
    return ReportData(tuple(runs), tuple(measurements), analysis,
                      {w: _axis(w, runs) for w in names},
                      catalog_ceilings(runs) if ceilings is None else dict(ceilings),
                      tuple(superseded))


# ---- figures --------------------------------------------------------------------------------

def _workload_ids(data: ReportData) -> dict[str, str]:
    from chipfit.report.plots import slug

    return {w: f"w{i}-{slug(w)}" for i, w in enumerate(data.axes)}


def report_figures(data: ReportData) -> list[tuple[str, str, Any]]:
    """(element id, caption, matplotlib Figure) for every plot, in page order."""
    from chipfit.analysis.trust import screen
    from chipfit.report import plots

    figures = []
    for workload, wid in _workload_ids(data).items():
        axis = data.axes[workload]
        # the points the analysis uses: contended ones where a series has quiet ones are left
        # out, as in the crossovers; a series with only contended points is labelled
        ms = list(screen(m for m in data.measurements if m.workload == workload).kept)
        busy = {m.series_device for m in ms if m.ok and m.contended}
        series = build_series(ms, position=size_position)
        figures.append((f"{wid}-time", f"{workload}: time per call vs {axis}", plots.time_plot(
            series, data.analysis.crossovers_of(workload), title=f"{workload}: time vs {axis}",
            axis=axis, contended=busy)))
        unit = rate_unit(ms)
        figures.append((f"{wid}-rate", f"{workload}: {unit} vs {axis}", plots.throughput_plot(
            ms, title=f"{workload}: throughput vs {axis}", axis=axis, unit=unit,
            position=size_position)))
    figures.append(("roofline", "Roofline: achieved FLOP/s vs arithmetic intensity",
                    plots.roofline_plot(data.measurements, data.ceilings)))
    return figures


def _figure(element_id: str, caption: str, fig: Any) -> Safe:
    from chipfit.report.plots import to_svg

    return Safe(f'<figure id="fig-{esc(element_id)}">{to_svg(fig, element_id)}'
                f"{_el('figcaption', caption)}</figure>")


# ---- sections -------------------------------------------------------------------------------

def _runs_cell(run_ids: Sequence[str]) -> str:
    return ", ".join(run_ids) if len(run_ids) <= 2 else f"{len(run_ids)} runs"


def device_rows(data: ReportData, ceilings: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """One row per device (as the report names it), however many runs saw it: the newest
    run's facts, and which runs saw it."""
    seen: dict[str, list[Any]] = {}  # device -> [row, run ids]
    several = len({_machine(r) for r in data.runs}) > 1
    for run in sorted(data.runs, key=lambda r: r.started_at, reverse=True):
        rename = _renamer(run, several)
        for d in run.discovery.devices:
            seen.setdefault(rename(d.ref), [_device_row(d, ceilings.get(rename(d.ref))), []])
            seen[rename(d.ref)][1].append(run.run_id)
            # The same CPU pinned to fewer threads is measured and plotted as its own series.
            for ref in sorted({m.device for m in run.measurements
                               if m.device.startswith(d.ref + "@")}):
                threads = ref.rsplit("@", 1)[1].removesuffix("t")
                seen.setdefault(rename(ref), [(f"{d.name}, pinned to {threads} thread(s)", "-",
                                              num(f"{threads} thread(s)", "measured"), "-",
                                              "-", "-", "-"), []])
                seen[rename(ref)][1].append(run.run_id)
    return [(device, *row, _runs_cell(ids)) for device, (row, ids) in seen.items()]


def _device_row(d: Any, ceiling: Any) -> tuple[Any, ...]:
    units = "; ".join(filter(None, [
        f"{d.cores} cores / {d.threads} threads" if d.cores is not None else "",
        f"{d.compute_units} compute units" if d.compute_units is not None else ""]))
    flops = (num(fmt_rate(ceiling.flops, "FLOP/s"), ceiling.source)
             if ceiling and ceiling.flops else "-")
    bandwidth = (num(fmt_rate(ceiling.bandwidth, "B/s"), ceiling.bandwidth_source or
                     ceiling.source) if ceiling and ceiling.bandwidth else "-")
    return (d.name, num(fmt_bytes(d.memory_bytes), d.source) if d.memory_bytes else "-",
            num(units, d.source) if units else "-", " ".join(d.isa) or "-",
            ", ".join(f"{k} {v}" for k, v in d.versions) or "-", flops, bandwidth)


def _devices(data: ReportData, ceilings: Mapping[str, Any]) -> Safe:
    headers = ("device", "name", "memory", "parallel units", "ISA", "versions", "peak FLOP/s",
               "peak bandwidth", "seen in")
    return Safe(_el("h2", "Devices", id="devices")
                + _table(headers, device_rows(data, ceilings), (2, 3, 6, 7)))


def _crossover_rows(crossovers: Sequence[Crossover]) -> list[tuple[Any, ...]]:
    """One row per crossing, numbered as on the plot; pairs that never cross are listed
    under the plot, not here."""
    from chipfit.report.plots import crossings

    rows = []
    for n, (c, x) in enumerate(crossings(crossovers), 1):
        pair = f"{words.series_name(c.a, c.differs)} vs {words.series_name(c.b, c.differs)}"
        lo, hi = (words.fmt_position(v) for v in x.interval)
        rows.append((str(n), pair, words.view_words(c), num(words.fmt_position(x.x), c.source),
                     f"{x.lower} - {x.upper}", f"{lo} - {hi}",
                     words.confidence_text(c, x, short=True),
                     f"{words.series_name(x.faster_below, c.differs)} below, "
                     f"{words.series_name(x.faster_above, c.differs)} above"
                     + (" (from contended points)" if c.from_contended else ""),
                     src(c.source)))
    return rows


def _crossing_list(data: ReportData, workload: str) -> Safe:
    """The crossings as a short numbered list (numbers as on the plot), then one line per
    pair that never crosses."""
    from chipfit.report.plots import crossings

    axis = data.axes[workload]
    crossovers = data.analysis.crossovers_of(workload)
    if not crossovers:
        return _el("p", "Nothing to compare: fewer than two series ran.")
    found = crossings(crossovers)
    items = [_el("li", words.crossing_item(c, x, axis),
                 class_="busy" if c.from_contended else f"kind-{c.kind}") for c, x in found]
    flat = [_el("li", words.no_crossing_item(c)) for c in crossovers if not c.crossings]
    return _join([_el("ol", _join(items), class_="crossings") if items else
                  _el("p", "No crossover: the same series is faster at every size measured."),
                  _el("ul", _join(flat), class_="muted") if flat else Safe("")])


def _busy_series(ms: Iterable[Measurement]) -> set[tuple[str, str, str, str]]:
    """Series whose figures come from contended points (no quiet point to use instead)."""
    from chipfit.analysis.trust import screen

    return {(m.workload, m.device, m.dtype, m.mode) for m in screen(ms).kept
            if m.ok and m.contended}


def _summary_rows(summaries: Sequence[SeriesSummary],
                  busy: Collection[tuple[str, str, str, str]] = ()) -> list[tuple[Any, ...]]:
    rows = []
    for s in summaries:
        rate = words.fmt_best_rate(s.best_rate, s.rate_unit)
        if (s.workload, s.device, s.dtype, s.mode) in busy:
            rate = Safe(esc(rate) + src("contended"))
        rows.append((s.device, s.dtype, s.mode, num(f"{s.ok} / {s.tried}", s.source),
                     num(s.largest_ok, s.source) if s.largest_ok else "-",
                     num(s.first_oom, s.source) if s.first_oom else "none",
                     num(s.guard_limit, "predicted") if s.guard_limit else "-",
                     num(s.best_size, s.source) if s.best_size else "-",
                     num(rate, s.source) if s.best_size else "-"))
    return rows


def _measurement_rows(ms: Sequence[Measurement]) -> list[tuple[Any, ...]]:
    rows = []
    for m in ms:
        lo, hi = m.ci_s
        ci = f"{fmt_seconds(lo)} - {fmt_seconds(hi)}" if m.ok and math.isfinite(lo) else "-"
        rows.append((m.size, series_device(m), m.dtype, m.mode, m.status, fmt_seconds(m.median_s), ci,
                     fmt_seconds(m.end_to_end_s) if m.ok else "-", fmt_rate(m.gflops * 1e9,
                                                                             "FLOP/s"),
                     fmt_rate(m.gbps * 1e9, "B/s"), f"{m.throughput:,.4g}" if m.ok else "-",
                     len(m.block_times_s), _note(m), src(m.source)))
    return rows


def _note(m: Measurement) -> str:
    busy = f"contended (machine shared): {m.contention_note}" if m.contended else ""
    return "; ".join(x for x in (m.note, busy) if x)


def _superseded_note(data: ReportData, workload: str) -> Safe:
    gone = [(d, old, new) for w, d, old, new in data.superseded if w == workload]
    if not gone:
        return Safe("")
    lines = "; ".join(f"{d}: run {old} (replaced by run {new})" for d, old, new in gone)
    return _el("p", f"Measured again by a newer run, so only the newest run's points are "
                    f"shown (runs are never mixed in one series): {lines}.", class_="muted")


def _workload_section(data: ReportData, workload: str, wid: str,
                      figures: Mapping[str, Safe]) -> Safe:
    axis = data.axes[workload]
    crossovers = data.analysis.crossovers_of(workload)
    _, limits = words.workload_sentences(data.analysis, workload, axis)
    ms = [m for m in data.measurements if m.workload == workload]
    busy = sum(bool(m.ok and m.contended) for m in ms)
    parts = [_el("h2", Safe(f"Workload {_el('code', workload)}"), id=wid),
             _el("p", f"Size axis: {axis}. {len(ms)} measurement(s)"
                 + (f", {busy} of them contended (the machine was shared)." if busy else "."),
                 class_="muted"),
             _superseded_note(data, workload),
             figures[f"{wid}-time"],
             _el("h3", "Crossovers"), _crossing_list(data, workload)]
    rows = _crossover_rows(crossovers)
    if rows:
        parts.append(Safe("<details><summary>Crossover details</summary>" + _table(
            ("#", "pair", "view", f"at ({axis})", "between measured",
             f"{data.analysis.level:.0%} interval", "confidence", "faster", "source"),
            rows, (0, 3, 6)) + "</details>"))
    busy_series = {d for _, d, _, _ in _busy_series(ms)}
    if busy_series:
        limits.append(f"{', '.join(sorted(busy_series))}: every point was measured while the "
                      "machine was shared, so these rates are from contended points (slower "
                      "than on a quiet machine; re-measure to confirm).")
    parts += [_el("h3", "Limits and throughput"),
              _el("ul", _join(_el("li", s) for s in limits)),
              figures[f"{wid}-rate"],
              _table(("device", "dtype", "mode", "sizes ok", "largest that fits", "first OOM",
                      "memory-guard limit", "best size", "best rate"),
                     _summary_rows(data.analysis.summaries_of(workload), _busy_series(ms)),
                     (3, 4, 5, 6, 7, 8)),
              Safe("<details><summary>Every measurement</summary>" + _table(
                  ("size", "device", "dtype", "mode", "status", "median", "95% CI of median",
                   "end to end", "FLOP/s", "B/s", "items/s", "samples", "note", "source"),
                  _measurement_rows(ms), (5, 6, 7, 8, 9, 10, 11)) + "</details>")]
    return _join(parts)


def _stacks_section(data: ReportData) -> Safe:
    """The same model on each software stack: latency beside eager's, build time, agreement."""
    from chipfit.analysis.stack_compare import stack_rows

    rows = []
    for r in stack_rows(data.measurements):
        m = r.measurement
        speed = f"×{r.speedup:.2f}" if math.isfinite(r.speedup) else "-"
        rows.append((r.workload, r.size, r.device, r.dtype, r.stack,
                     num(fmt_seconds(m.median_s), m.source) if m.ok else f"{m.status}: {m.note}",
                     num(speed, m.source) if m.ok else "-",
                     "-" if m.compile_s is None else f"{m.compile_s:.1f} s",
                     "-" if m.max_rel_diff is None else f"{m.max_rel_diff:.2g}", src(m.source)))
    if not rows:
        return Safe("")
    return _join([_el("h2", "Software stacks", id="stacks"),
                  _el("p", "The same model and inputs on each stack: the median per call, the "
                      "speed-up over eager on the same device and dtype, the time to build the "
                      "stack (export, compile, quantise, first call; not in the median) and the "
                      "largest output difference from eager over eager's largest output.",
                      class_="muted"),
                  _table(("workload", "size", "device", "dtype", "stack", "median",
                          "× vs eager", "build", "agreement", "source"), rows, (5, 6, 7, 8))])


def _roofline_section(data: ReportData, ceilings: Mapping[str, Any], figure: Safe) -> Safe:
    from chipfit.report.plots import measured_ceilings

    measured = measured_ceilings(data.measurements)
    rows = []
    for device in dict.fromkeys(list(measured) + list(ceilings)):
        c = ceilings.get(device) or measured[device]
        rows.append((device, num(fmt_rate(c.flops, "FLOP/s"), c.source) if c.flops else "-",
                     num(fmt_rate(c.bandwidth, "B/s"), c.bandwidth_source or c.source)
                     if c.bandwidth else "-", c.note or "-"))
    note = ("Each point is one measurement: FLOPs over bytes moved (analytic cost) against the "
            "FLOP/s achieved. Solid lines are catalog peaks (for a CPU measured here: the "
            "higher of that and cores x highest clock x FLOPs per cycle); dashed lines are "
            "measured ceilings, "
            "the best FLOP/s and bytes/s this report's own measurements reached on the device "
            "(a floor under the true peak, not a datasheet figure).")
    return _join([_el("h2", "Roofline", id="roofline"), _el("p", note), figure,
                  _table(("device", "compute roof", "memory roof", "note"), rows, (1, 2))])


def load_claims(runs: Sequence[Run]) -> list[ClaimRow] | None:
    """The seeds' claims checked against each run."""
    from chipfit.analysis.suites import check_claims
    from chipfit.report.claims import measured_text, verdict_text
    from chipfit.workloads import all_workloads

    installed = {w.name for w in all_workloads()}
    rows = []
    for run in runs:
        for r in check_claims(run, "seeds", installed):
            where = f" [run {run.run_id}]" if len(runs) > 1 else ""
            rows.append(ClaimRow(f"{r.claim.quote} (seed {r.claim.source})",
                                 verdict_text(r) + where, measured_text(r).replace("\n", " "),
                                 "measured" if r.measured is not None else ""))
    return rows


def _claims_section(claims: Sequence[ClaimRow] | None) -> Safe:
    head = _el("h2", "The seeds' claims, checked", id="claims")
    if claims is None:
        return _join([head, _el("p", "claims check not available in this build", class_="muted")])
    note = _el("p", "Claims quoted from the seed articles; a claim is testable only when the "
               "run measured its experiment (chipfit bench --suite seeds measures them all).",
               class_="muted")
    testable = [c for c in claims if not c.verdict.startswith(_UNTESTABLE)]
    untestable = [c for c in claims if c.verdict.startswith(_UNTESTABLE)]
    rows = [(c.claim, c.verdict, c.evidence, src(c.source) if c.source else "-")
            for c in testable]
    parts = [head, note, _table(("claim", "verdict", "measured here", "source"), rows)
             if rows else _el("p", "No claim could be tested on this machine.")]
    if untestable:
        why = sorted({c.verdict.removeprefix(_UNTESTABLE).lstrip(": ") for c in untestable})
        summary = (f"{len(untestable)} more claim(s) not testable here ({'; '.join(why)}): "
                   "they need hardware this machine lacks")
        parts.append(Safe(f'<details class="muted"><summary>{esc(summary)}</summary>'
                          f"{_el('ul', _join(_el('li', c.claim) for c in untestable))}</details>"))
    return _join(parts)


_UNTESTABLE = "not testable here"


def _claims_tally(claims: Sequence[ClaimRow] | None) -> str:
    """"2 hold, 1 does not hold, 13 not testable here" for the summary."""
    if not claims:
        return ""
    counts: dict[str, int] = {}
    for c in claims:
        word = ("not testable here" if c.verdict.startswith(_UNTESTABLE) else
                "do not hold" if c.verdict.startswith("does not hold") else "hold")
        counts[word] = counts.get(word, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in counts.items())


def _advice_rows(advice: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for i, o in enumerate(advice.get("ranked", ()), 1):
        lat, thr = o["latency_s"], o["throughput_per_s"]
        usd, joules = o["usd_per_million"], o["joules_per_sample"]
        rows.append((str(i), o["device"], o["kind"], str(o["batch"]),
                     num(fmt_seconds(lat["value"]), lat["source"]),
                     num(f"{thr['value']:,.0f}/s", thr["source"]),
                     num(f"${usd['value']:.3g}", "estimated") if usd["value"] is not None else "-",
                     num(f"{joules['value']:.3g} J", joules["source"].split(":")[0])
                     if joules["value"] is not None else "-", o.get("bound") or "-"))
    return rows


def _advice_section(runs: Sequence[Run]) -> Safe:
    """What ``chipfit advise`` recommended, with its reasons (runs it saved only)."""
    import json

    parts: list[Any] = []
    for run in runs:
        text = dict(run.settings).get("advice")
        if not text:
            continue
        advice = json.loads(text)
        verdict = advice.get("verdict") or {}
        reasons = [r for r in advice.get("reasons", ()) if r.get("supports_verdict", True)]
        advice = {**advice, "reasons": reasons}
        parts += [_el("h3", f"{advice.get('workload', '?')}: ranked by {advice['objective']} "
                            f"at batch {advice.get('batch', '?')}"),
                  _el("p", _el("strong", verdict["text"])) if verdict.get("text") else Safe(""),
                  _el("p", f"Recommendation: {advice.get('choice') or 'none meets the constraints'}"),
                  _table(("#", "device", "kind", "batch", "latency", "throughput", "$ per 1M",
                          "J / sample", "bound"), _advice_rows(advice), numeric=(3, 4, 5, 6, 7)),
                  _el("ul", _join(_el("li", r["text"]) for r in advice.get("reasons", ()))),
                  *(_el("p", f"excluded {e['device']}: {e['why']}", class_="muted")
                    for e in advice.get("excluded", ()))]
    if not parts:
        return Safe("")
    return _join([_el("h2", "Advice", id="advice"), *parts])


def _fleet_section(runs: Sequence[Run]) -> Safe:
    """Fleet runs: per node type, speed (measured), price (catalog) and $/1M (estimated)."""
    from chipfit.analysis.fleet import fleet_report
    from chipfit.hardware.catalog import load_catalog

    parts: list[Any] = []
    for run in runs:
        report = fleet_report(run, catalog=load_catalog())
        if report is None:
            continue
        for series in dict.fromkeys(r.series for r in report.rows):
            rows = [r for r in report.rows if r.series == series]
            choice = next((c for c in report.choices if c.series == series), None)
            parts += [_el("h3", " ".join(series) + f" (run {run.run_id})"),
                      _table(("node type", "nodes", "device", "latency", "items/s", "$/h",
                              "$ per 1M items", "status"),
                             [_fleet_row(r) for r in rows], numeric=(1, 3, 4, 5, 6))]
            if choice is not None:
                parts.append(_el("p", f"Use {choice.node_type}: {choice.reason}"))
    if not parts:
        return Safe("")
    return _join([_el("h2", "Fleet: which node type", id="fleet"),
                  _el("p", "Prices are the catalog's (accelerator list price x count); "
                      "CPU-only node types have none.", class_="muted"), *parts])


def _fleet_row(r: Any) -> tuple[Any, ...]:
    if r.latency_s is None:
        return (r.node_type, r.nodes, r.device, "-", "-", "-", "-", f"{r.status}: {r.note}")
    price = num(f"{r.price.usd_per_h:.3g}", r.price.source) if r.price else "-"
    per_m = r.usd_per_m_items
    return (r.node_type, r.nodes, r.device, num(fmt_seconds(r.latency_s), "measured"),
            num(f"{r.throughput:.3g}", "measured"), price,
            num(f"{per_m:.3g}", "estimated") if per_m is not None else "-", r.status)


def _metadata_section(data: ReportData) -> Safe:
    parts = [_el("h2", "Run metadata", id="metadata")]
    for run in data.runs:
        rows = [("run id", run.run_id, ""), ("command", run.command, ""),
                ("started", run.started_at, ""), ("finished", run.finished_at or "-", ""),
                ("interrupted", str(run.interrupted), ""),
                ("chipfit version", run.chipfit_version, "")]
        rows += [(f"machine: {k}", v, src("measured")) for k, v in run.machine]
        rows += [(f"setting: {k}", v, "") for k, v in run.settings if k != "advice"]
        rows += [(f"memory guard limit: {' '.join(g.key)}", g.size or "-", src(g.source))
                 for g in run.guard_limits]
        rows += [(f"unavailable: {p.scope}", p.reason, src("measured"))
                 for p in run.discovery.problems]
        parts.append(Safe(f"<details><summary>Run {esc(run.run_id)}</summary>"
                          f"{_table(('field', 'value', 'source'), rows)}</details>"))
    return _join(parts)


def render_report(runs: Sequence[Run], *, ceilings: Mapping[str, Any] | None = None,
                  claims: Sequence[ClaimRow] | None | str = "auto", level: float = 0.95,
                  figures: list[tuple[str, str, Any]] | None = None,
                  data: ReportData | None = None, sections: Sequence[str] = ()) -> str:
    """The whole report as one HTML string.

    ``ceilings`` maps device ids to :class:`chipfit.report.plots.Ceiling` (default: the
    catalog's peaks, where it knows the device; measured ceilings for the rest).
    ``claims="auto"`` asks :func:`load_claims`. ``sections``: more markup built by this
    module's helpers (e.g. :func:`chipfit.report.llm_section.llm_section`), placed before
    the metadata.
    """
    data = data or prepare(runs, level=level, ceilings=ceilings)
    ceilings = data.ceilings
    figures = figures if figures is not None else report_figures(data)
    svg = {fid: _figure(fid, caption, fig) for fid, caption, fig in figures}
    ids = _workload_ids(data)
    claim_rows = load_claims(data.runs) if claims == "auto" else claims
    advice = _advice_section(data.runs)
    body = [_header(data, has_advice=bool(advice)),
            _summary_section(data, claim_rows),  # type: ignore[arg-type]
            advice,
            _devices(data, ceilings),
            *(_workload_section(data, w, wid, svg) for w, wid in ids.items()),
            _stacks_section(data),
            _roofline_section(data, ceilings, svg["roofline"]),
            _claims_section(claim_rows),  # type: ignore[arg-type]
            _fleet_section(data.runs),
            *(Safe(section) for section in sections),
            _metadata_section(data),
            _el("footer", f"Generated by chipfit {__version__}. This file is self-contained: "
                "no scripts, no external resources.", class_="muted")]
    return page("chipfit report", _join(body))


def page(title: str, body: str) -> str:
    """The one page shell of every chipfit HTML file: no script, nothing loaded (the CSP
    says so), readable on a phone (viewport), ``title`` escaped, ``body`` already HTML."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


def _fastest(ms: Sequence[Measurement], size: str) -> Measurement | None:
    ok = [m for m in ms if m.size == size and m.ok]
    return min(ok, key=lambda m: m.median_s) if ok else None


def _size_key(size: str) -> float:
    """Order sizes by the work they name: "70x30@30x70" by its dimensions' product."""
    import re

    numbers = [float(n) for n in re.findall(r"[0-9]+", size)] or [0.0]
    return math.prod(numbers)


def _timed(m: Measurement) -> Safe:
    """A time from one point with its provenance: contended points say so."""
    tag = (src("measured") + src("contended")) if m.contended else src("measured")
    return Safe(f"{esc(m.series_device)} ({_el('span', fmt_seconds(m.median_s), class_='v')}"
                f"{tag})")


def workload_summary(data: ReportData, workload: str) -> Safe:
    """The answer for one model: the fastest device at its smallest and largest size and
    where the faster one changes; figures from contended points are tagged as such."""
    from chipfit.analysis.trust import screen
    from chipfit.report.plots import crossings

    axis = data.axes[workload]
    ms = [m for m in screen(m for m in data.measurements if m.workload == workload).kept
          if m.ok]
    head = _el("strong", workload)
    sizes = sorted({m.size for m in ms}, key=_size_key)
    if not sizes:
        return Safe(f"{head}: nothing measured successfully.")
    small, large = _fastest(ms, sizes[0]), _fastest(ms, sizes[-1])
    parts = [f"fastest at {esc(axis)} {esc(sizes[0])}: {_timed(small)}"]
    if len(sizes) > 1 and large is not None:
        parts.append(f"at {esc(axis)} {esc(sizes[-1])}: {_timed(large)}")
    found = crossings(data.analysis.crossovers_of(workload))
    if found:
        where = ", ".join(f"≈ {words.fmt_position(x.x)}" for _, x in found[:4])
        more = ", ..." if len(found) > 4 else ""
        busy = (" (from contended points: confidence low)"
                if any(c.from_contended for c, _ in found) else "")
        parts.append(esc(f"faster device changes at {axis} {where}{more}{busy}"))
    elif len({m.series_device for m in ms}) > 1:
        parts.append("no crossover in the sizes measured")
    olds = {old for w, _, old, _ in data.superseded if w == workload}
    if olds:
        parts.append(esc(f"newest run of each series shown ({len(olds)} older run(s) of it "
                         "left out)"))
    link = _el("a", "(details)", href=f"#{_workload_ids(data)[workload]}")
    return Safe(f"{head}: {'; '.join(parts)}. {link}")


def _summary_section(data: ReportData, claims: Sequence[ClaimRow] | None) -> Safe:
    """The answer first: advice verdicts, the fastest device per workload, the claims tally."""
    import json

    items: list[Any] = []
    for run in data.runs:
        advice = json.loads(dict(run.settings).get("advice") or "{}")
        text = (advice.get("verdict") or {}).get("text")
        if text:
            items.append(_el("li", Safe(f"{_el('strong', text)} "
                                        f"{_el('a', '(advice)', href='#advice')}")))
    items += [_el("li", workload_summary(data, w)) for w in data.axes]
    tally = _claims_tally(claims)
    if tally:
        items.append(_el("li", Safe(f"The seeds' claims: {esc(tally)} "
                                    f"{_el('a', '(claims)', href='#claims')}")))
    return _join([_el("h2", "Summary", id="summary"), _el("ul", _join(items), class_="findings")])


def _header(data: ReportData, has_advice: bool = False) -> Safe:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    legend = _join(Safe(f"{src(k)} {esc(v)}; ") for k, v in _SOURCES_HELP.items())
    nav = _join([_el("a", "Summary", href="#summary"),
                 *([_el("a", "Advice", href="#advice")] if has_advice else []),
                 _el("a", "Devices", href="#devices"),
                 *(_el("a", w, href=f"#{wid}") for w, wid in _workload_ids(data).items()),
                 _el("a", "Roofline", href="#roofline"), _el("a", "Claims", href="#claims"),
                 _el("a", "Metadata", href="#metadata")])
    runs = ", ".join(r.run_id for r in data.runs)
    return _join([_el("h1", "chipfit report"),
                  _el("p", f"Generated {now} from {len(data.runs)} run(s): {runs}.",
                      class_="muted"),
                  _el("p", Safe("Every number carries its source: " + legend)),
                  _el("nav", nav)])


def write_report(runs: Sequence[Run], path: str | Path, *,
                 ceilings: Mapping[str, Any] | None = None, png_dir: str | Path | None = None,
                 level: float = 0.95, sections: Sequence[str] = ()) -> Path:
    """Write the HTML report of ``runs`` to ``path`` (and each plot as PNG under ``png_dir``).

    ``sections``: more markup placed before the metadata (language models:
    :func:`chipfit.report.llm_section.llm_sections`)."""
    from chipfit.report.plots import save_png

    data = prepare(runs, level=level, ceilings=ceilings)
    figures = report_figures(data)
    from chipfit.paths import write_atomic

    path = write_atomic(path, render_report(runs, figures=figures, data=data, sections=sections),
                        "report")
    for fid, _, fig in figures if png_dir is not None else ():
        save_png(fig, Path(png_dir) / f"{fid}.png")
    return path
