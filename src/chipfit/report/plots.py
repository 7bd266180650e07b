"""Matplotlib figures for the report: time vs size, throughput vs size, and the roofline.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot global state) and
written as SVG with text kept as text (``svg.fonttype = none``: no embedded or fetched fonts)
or as PNG. Labels that come from users (workload, device names) go through :func:`plain`, so
matplotlib never reads them as mathtext; the SVG writer escapes them as XML.

Every plotted number is measured; roofline ceilings say whether they are a catalog peak or
the best this run measured (``Ceiling.source``).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chipfit.analysis.crossover import Crossover, Series, SeriesKey, rate_of
from chipfit.report.fmt import fmt_rate, fmt_seconds
from chipfit.results import Measurement
from chipfit.timing import stats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Ceiling", "crossing_label", "crossings", "legend_below", "measured_ceilings",
           "plain", "plain_number", "roofline_plot", "save_png", "shorten", "size_tick", "slug",
           "throughput_plot", "time_plot", "to_svg"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_SIZE = (7.5, 4.4)


@dataclass(frozen=True)
class Ceiling:
    """A device's roofs: peak FLOP/s and memory bandwidth in bytes/s, with their provenance.

    ``source`` is ``catalog`` for datasheet peaks, ``estimated`` for a CPU's theoretical peak
    (cores x highest clock x FLOPs per cycle), ``measured`` for the best this run reached.
    """

    flops: float | None
    bandwidth: float | None
    source: str
    note: str = ""
    bandwidth_source: str = ""  # where it differs from ``source`` (a CPU's catalog bandwidth)


def plain(text: str) -> str:
    """``text`` as literal label text: dollar signs would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def plain_number(value: float) -> str:
    """A tick label without exponent notation: ``1,000``, ``250``, ``0.05``."""
    if not math.isfinite(value):
        return ""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def shorten(text: str, chars: int) -> str:
    """``text`` cut in the middle with an ellipsis to at most ``chars`` characters (a long
    model path keeps its start and its factory name)."""
    if len(text) <= chars:
        return text
    keep = max(chars - 1, 2)
    return text[:(keep + 1) // 2] + "…" + text[len(text) - keep // 2:]


def slug(text: str) -> str:
    """A safe fragment for element ids and file names (any user text becomes [a-z0-9-])."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:40] or "x"


def _figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=_SIZE, layout="constrained")


def _colors(keys: Iterable[Any]) -> dict[Any, str]:
    order = list(dict.fromkeys(keys))
    return {k: _COLORS[i % len(_COLORS)] for i, k in enumerate(order)}


def _group(key: SeriesKey) -> tuple[str, str, str]:
    return (key.device, key.dtype, key.mode)


def _namer(keys: Sequence[SeriesKey]):
    """Series labels naming only what varies among ``keys`` (device, dtype, mode)."""
    vary = [len({getattr(k, f) for k in keys}) > 1 for f in ("dtype", "mode")]

    def name(key: SeriesKey) -> str:
        parts = [key.device] + [v for v, on in zip((key.dtype, key.mode), vary, strict=True) if on]
        return " ".join(parts)

    return name


def _ci(samples: Sequence[float]) -> tuple[float, float]:
    lo, hi = stats.median_ci(samples)
    mid = stats.median(samples)
    return (mid - lo if math.isfinite(lo) else 0.0, hi - mid if math.isfinite(hi) else 0.0)


def _interp_log(series: Series, x: float) -> float:
    """The series' median time at ``x``, interpolated linearly in log-log space."""
    pts = series.points
    for p, q in zip(pts, pts[1:], strict=False):
        if p.x <= x <= q.x:
            f = math.log(x / p.x) / math.log(q.x / p.x)
            return math.exp(math.log(p.median_s) + f * math.log(q.median_s / p.median_s))
    return math.nan


def time_plot(series: Sequence[Series], crossovers: Sequence[Crossover], *, title: str,
              axis: str, contended: Collection[str] = ()) -> Figure:
    """Median time per call vs size, log-log, one line per series (dashed: end to end),
    error bars the 95% CI of the median, each crossover marked with an X and a rule and
    labelled with its number and size (the list under the plot says the rest). Series whose
    device is in ``contended`` (points measured while the machine was shared) say so in the
    legend."""
    fig = _figure()
    ax = fig.add_subplot()
    shown = [s for s in series if s.points and (s.key.view == "resident" or s.copies)]
    colors = _colors(_group(s.key) for s in shown)
    name = _namer([s.key for s in shown])
    for s in shown:
        xs = [p.x for p in s.points]
        ys = [p.median_s for p in s.points]
        err = list(zip(*(_ci(p.samples_s) for p in s.points), strict=True))
        e2e = s.key.view == "end_to_end"
        label = (name(s.key) + (" (end to end)" if e2e else "")
                 + (" (contended)" if s.key.device in contended else ""))
        line = ax.errorbar(xs, ys, yerr=err, color=colors[_group(s.key)], marker="o", ms=3,
                           capsize=2, lw=1.4, ls="--" if e2e else "-", label=plain(label))
        line[0].set_gid(f"series-{slug(name(s.key))}-{s.key.view}")
    by_key = {s.key: s for s in shown}
    marks = []
    for n, (c, crossing) in enumerate(crossings(crossovers), 1):
        if c.a in by_key:
            marks.append((n, c, crossing, _interp_log(by_key[c.a], crossing.x)))
            _mark_crossing(ax, c, crossing, marks[-1][3], n)
    _finish(ax, title, f"{axis} (log)", "time per call (log; measured)", yfmt=fmt_seconds)
    _label_crossings(fig, ax, [(n, x.x, y) for n, _, x, y in marks if math.isfinite(y)])
    return fig


def crossings(crossovers: Sequence[Crossover]) -> list[tuple[Crossover, Any]]:
    """Every crossing of ``crossovers``, in the order the plot numbers them (1, 2, ...)."""
    return [(c, x) for c in crossovers for x in c.crossings]


def _mark_crossing(ax: Any, c: Crossover, crossing: Any, y: float, n: int) -> None:
    rule = ax.axvline(crossing.x, color="#555555", lw=0.8, ls=":")
    rule.set_gid(f"crossover-rule-{n}-{slug(c.view)}")
    if math.isfinite(y):
        mark = ax.plot([crossing.x], [y], marker="X", ms=11, color="black", ls="none")[0]
        mark.set_gid(f"crossover-{n}-{slug(c.view)}")


def crossing_label(n: int, x: float) -> str:
    """The short text beside crossover mark ``n``: its number and where it lies."""
    from chipfit.report.crossover_view import fmt_position

    return f"{n}: ≈ {fmt_position(x)}"


_LABEL_PT = 8  # font size of the crossover labels
# DejaVu Sans (matplotlib's default) averages under 0.62 em per character for digits, signs
# and lower-case letters; line height 1.2 em. Both rounded up, so estimated boxes are larger
# than the drawn ones and boxes that do not overlap draw as labels that do not.
_EM_WIDTH, _EM_HEIGHT = 0.66, 1.5


def _label_crossings(fig: Any, ax: Any, marks: Sequence[tuple[int, float, float]]) -> None:
    """Each crossover's label placed near its mark, inside the plot, clear of the others
    (:func:`chipfit.report.axes.place_labels`); one with no room keeps only its mark."""
    from chipfit.report.axes import place_labels

    if not marks:
        return
    fig.draw_without_rendering()  # the layout fixes the axes' size in pixels
    box = ax.get_window_extent()
    px = fig.dpi / 72 * _LABEL_PT
    to_axes = ax.transAxes.inverted()
    texts = [crossing_label(n, x) for n, x, _ in marks]
    anchors = [tuple(to_axes.transform(ax.transData.transform((x, y)))) for _, x, y in marks]
    sizes = [(len(t) * _EM_WIDTH * px / box.width, _EM_HEIGHT * px / box.height) for t in texts]
    for (n, x, y), text, spot, (_, h) in zip(marks, texts,
                                               place_labels(anchors, sizes, gap=0.03), sizes,
                                               strict=True):
        if spot is None:
            continue
        label = ax.annotate(plain(text), (x, y), xytext=(spot[0], spot[1] + h * 0.2),
                            textcoords="axes fraction", fontsize=_LABEL_PT, ha="left",
                            va="bottom", annotation_clip=True,
                            arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.6,
                                        "shrinkA": 1, "shrinkB": 5})
        label.set_gid(f"crossover-label-{n}")


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def size_tick(value: float) -> str:
    """A size-axis label: plain up to 65536, then a power of two (2¹⁷) or 3 digits."""
    if value <= 0 or not math.isfinite(value):
        return ""
    exp = math.log2(value)
    if value > 65536 and abs(exp - round(exp)) < 1e-9:
        return "2" + str(round(exp)).translate(_SUPERSCRIPT)
    return plain_number(value) if value < 1000 else f"{value:,.0f}"


def _locator(base2: bool) -> Any:
    """Major ticks of a log axis from :func:`chipfit.report.axes.log_ticks`: at least three
    numbered ticks whatever the span (matplotlib's own leave a sub-decade axis bare)."""
    from matplotlib.ticker import Locator

    from chipfit.report.axes import log_ticks, widen

    class _LogTicks(Locator):
        def __call__(self) -> list[float]:
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, vmin: float, vmax: float) -> list[float]:
            return log_ticks(vmin, vmax, base2=base2)

        def view_limits(self, vmin: float, vmax: float) -> tuple[float, float]:
            # a near-flat series gets an axis wide enough for three distinct tick labels
            return widen(vmin, vmax) if 0 < vmin and 0 < vmax else (vmin, vmax)

    return _LogTicks()


def _ticks(ax: Any, xfmt: Any, yfmt: Any, base2_x: bool) -> None:
    """Plain-text tick labels: no mathtext (slow, and not needed for 10 us or 2¹⁷)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis, fmt, base2 in ((ax.xaxis, xfmt, base2_x), (ax.yaxis, yfmt, False)):
        axis.set_major_locator(_locator(base2))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos, f=fmt: f(v)))
        axis.set_minor_formatter(NullFormatter())


def legend_below(fig: Any, ax: Any, fontsize: int = 8, **options: Any) -> None:
    """The legend under the plot, outside the axes (it never covers a point), in as many
    columns as its longest entry allows across the figure."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    across = fig.get_figwidth() * 72 / (fontsize * _EM_WIDTH)
    # never wider than the figure; a cut through "\$" must not leave a bare "$" (mathtext)
    labels = [re.sub(r"(?<!\\)\$", r"\$", shorten(t, int(across) - 6)) for t in labels]
    chars = max(len(t) for t in labels) + 5  # + the line sample and the gaps
    cols = max(1, min(len(labels), int(across // chars)))
    fig.legend(handles, labels, loc="outside lower center", ncols=cols, fontsize=fontsize,
               frameon=False, **options).set_gid("legend")


def _finish(ax: Any, title: str, xlabel: str, ylabel: str, *, xfmt: Any = size_tick,
            yfmt: Any = None, base2_x: bool = True) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    _ticks(ax, xfmt, yfmt or (lambda v: fmt_rate(v, "")), base2_x)
    title_chars = int(ax.figure.get_figwidth() * 72 / (11 * _EM_WIDTH))
    ax.set_title(plain(shorten(title, title_chars)), fontsize=11)
    ax.set_xlabel(plain(xlabel))
    ax.set_ylabel(plain(ylabel))
    ax.grid(True, which="major", alpha=0.3)
    legend_below(ax.figure, ax)


def throughput_plot(measurements: Sequence[Measurement], *, title: str, axis: str, unit: str,
                    position: Any) -> Figure:
    """Rate vs size (items/s for batched work, else FLOP/s or B/s), the best point starred;
    a series with points measured while the machine was shared says so in the legend."""
    fig = _figure()
    ax = fig.add_subplot()
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for m in measurements:
        x, r = position(m.workload, m.size), rate_of(m, unit)
        if m.ok and math.isfinite(x) and math.isfinite(r):
            groups.setdefault((m.series_device, m.dtype, m.mode), []).append((x, r))
    busy = {(m.series_device, m.dtype, m.mode) for m in measurements if m.ok and m.contended}
    colors = _colors(groups)
    keys = [SeriesKey("", *g) for g in groups]
    name = _namer(keys)
    for key, (group, points) in zip(keys, groups.items(), strict=True):
        points.sort()
        label = name(key) + (" (contended)" if group in busy else "")
        ax.plot(*zip(*points, strict=True), marker="o", ms=3, color=colors[group],
                label=plain(label))[0].set_gid(f"rate-{slug(name(key))}")
        best = max(points, key=lambda p: p[1])
        ax.plot([best[0]], [best[1]], marker="*", ms=13, color=colors[group],
                ls="none")[0].set_gid(f"best-{slug(name(key))}")
    _finish(ax, title, f"{axis} (log)", f"{unit} (log; measured; ★ best)",
            yfmt=lambda v: fmt_rate(v, "") if unit in ("FLOP/s", "B/s") else plain_number(v))
    return fig


def measured_ceilings(measurements: Iterable[Measurement]) -> dict[str, Ceiling]:
    """Per device: the best FLOP/s and the best bytes/s any of its measurements reached."""
    best: dict[str, list[float]] = {}
    for m in measurements:
        if m.ok and m.flops and m.bytes_moved:
            top = best.setdefault(m.device, [0.0, 0.0])
            top[0] = max(top[0], m.flops / m.median_s)
            top[1] = max(top[1], m.bytes_moved / m.median_s)
    return {d: Ceiling(f or None, b or None, "measured", "best measured in this report")
            for d, (f, b) in best.items()}


def _roof(ax: Any, ceiling: Ceiling, color: str, xs: tuple[float, float], device: str) -> None:
    import numpy as np

    grid = np.logspace(math.log10(xs[0]), math.log10(xs[1]), 200)
    peak = ceiling.flops or math.inf
    bw = ceiling.bandwidth or math.inf
    roof = np.minimum(peak, bw * grid)
    if not np.isfinite(roof).any():
        return
    word = {"catalog": "catalog peak", "estimated": "peak at the highest clock"}.get(
        ceiling.source, "measured ceiling")
    stated = ceiling.source in ("catalog", "estimated")
    ax.plot(grid, roof, color=color, lw=1.2, ls="-" if stated else "--",
            alpha=0.8, label=plain(f"{device}: {word}"))[0].set_gid(f"roof-{slug(device)}")


def roofline_plot(measurements: Sequence[Measurement],
                  ceilings: Mapping[str, Ceiling] | None = None, *,
                  title: str = "Roofline") -> Figure:
    """Achieved FLOP/s vs arithmetic intensity (FLOP per byte moved), every measured point,
    against each device's roofs: catalog peaks where given, else measured ceilings."""
    fig = _figure()
    ax = fig.add_subplot()
    points: dict[str, list[tuple[float, float]]] = {}
    for m in measurements:
        if m.ok and m.flops and m.bytes_moved:
            points.setdefault(m.device, []).append((m.flops / m.bytes_moved, m.flops / m.median_s))
    colors = _colors(points)
    measured = measured_ceilings(measurements)
    roofs: dict[Ceiling, list[str]] = {}  # devices sharing one roof (one CPU, two frameworks)
    for device, pts in points.items():
        ax.scatter(*zip(*pts, strict=True), s=14, color=colors[device],
                   label=plain(f"{device} (measured)")).set_gid(f"points-{slug(device)}")
        ceiling = (ceilings or {}).get(device) or measured.get(device)
        if ceiling is not None:
            roofs.setdefault(ceiling, []).append(device)
    if points:
        xs = [x for pts in points.values() for x, _ in pts]
        for ceiling, devices in roofs.items():
            _roof(ax, ceiling, colors[devices[0]], (min(xs) / 4, max(xs) * 4), ", ".join(devices))
    _finish(ax, title, "arithmetic intensity, FLOP/byte (log)", "achieved FLOP/s (log)",
            xfmt=plain_number, yfmt=lambda v: fmt_rate(v, "FLOP/s"), base2_x=False)
    return fig


def _clean_labels(fig: Figure) -> None:
    """Every text of ``fig`` (titles, labels, legends: names from stored runs) with its
    control and bidirectional characters as visible escapes (:func:`~chipfit.report.fmt.clean`):
    the SVG stays well-formed XML and no glyph is missing."""
    from matplotlib.text import Text as MplText

    from chipfit.report.fmt import UNSAFE, clean

    for artist in fig.findobj(MplText):
        label = artist.get_text()
        if UNSAFE.search(label):
            artist.set_text(clean(label))


def to_svg(fig: Figure, element_id: str) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no doctype), ids unique per
    ``element_id`` so several figures can share one HTML page."""
    import matplotlib

    _clean_labels(fig)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": element_id}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    start = text.index("<svg")
    return text[start:].replace("<svg ", f'<svg id="{slug(element_id)}" role="img" ', 1)


def save_png(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    from chipfit.paths import write_atomic

    _clean_labels(fig)
    buf = io.BytesIO()  # rendered first, so a failing render leaves no half-written file
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return write_atomic(path, buf.getvalue(), "PNG file")
