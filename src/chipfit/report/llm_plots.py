"""Plots of ``chipfit llm``: memory per device against capacity, and tokens/s against batch.

matplotlib is imported when a plot is drawn, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chipfit.report.plots import _COLORS, _figure, _ticks, legend_below, plain, plain_number, slug

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["memory_fit_plot", "tokens_vs_batch_plot"]

_PARTS = (("weights", "#1f77b4"), ("kv_cache", "#ff7f0e"), ("activations", "#2ca02c"),
          ("overhead", "#7f7f7f"))


def memory_fit_plot(report: Any) -> Figure:
    """Stacked bars per hardware: weights, KV cache, activations and overhead per device (GB,
    estimated) at the devices it needs, the device's capacity as a tick: black from the
    catalog, dark red where it was measured (this machine's memory, probed)."""
    fig = _figure()
    ax = fig.add_subplot()
    rows = list(report.rows)
    labels = [f"{r.hardware} x{r.devices_needed or '?'}" for r in rows]
    left = [0.0] * len(rows)
    for part, color in _PARTS:
        widths = [getattr(r.memory, part) / 1e9 for r in rows]
        bars = ax.barh(labels, widths, left=left, color=color, label=part.replace("_", " "))
        for bar in bars:
            bar.set_gid(f"mem-{slug(part)}")
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for source, word, color in (("catalog", "catalog", "black"),
                                ("measured", "measured here", "#7a0000")):
        caps = [(i, r.memory_capacity / 1e9) for i, r in enumerate(rows)
                if r.memory_capacity and getattr(r, "capacity_source", "catalog") == source]
        if caps:
            ax.plot([c for _, c in caps], [i for i, _ in caps], marker="|", ms=22, mew=2.5,
                    color=color, ls="none", label=f"capacity ({word})"
                    )[0].set_gid(f"mem-capacity-{source}")
    ax.invert_yaxis()
    ax.yaxis.set_gid("categorical-y")  # hardware names, not numbers
    ax.set_xlabel("GB per device (estimated; x N = tensor-parallel devices needed)")
    ax.set_title(plain(f"{report.arch.name}: memory per device vs capacity "
                       f"(batch {report.run.batch}, context {report.run.context})"), fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    legend_below(fig, ax, markerscale=0.4)  # the capacity tick at full size spans two rows
    return fig


def tokens_vs_batch_plot(report: Any) -> Figure:
    """Predicted decode tokens/s against batch per hardware: aggregate (solid) and per
    sequence (dashed), up to the largest batch that fits; the run's own batch marked."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, row in enumerate(r for r in report.rows if r.sweep):
        color = _COLORS[i % len(_COLORS)]
        xs = [b for b, _, _ in row.sweep]
        ax.plot(xs, [a for _, _, a in row.sweep], marker="o", ms=3, color=color,
                label=plain(f"{row.hardware} x{row.devices_needed or 1} aggregate")
                )[0].set_gid(f"tps-{slug(row.hardware)}")
        ax.plot(xs, [s for _, s, _ in row.sweep], ls="--", color=color,
                label=plain(f"{row.hardware} per sequence"))[0].set_gid(
                    f"tps-seq-{slug(row.hardware)}")
    if any(r.sweep for r in report.rows):
        ax.axvline(report.run.batch, color="#555555", lw=0.8, ls=":",
                   label=f"this run: batch {report.run.batch}").set_gid("run-batch")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _ticks(ax, plain_number, plain_number, base2_x=True)  # 1-2-5 ticks between decades
    ax.set_xlabel("batch (sequences decoded together; log)")
    ax.set_ylabel("decode tokens/s (predicted; log)")
    ax.set_title(plain(f"{report.arch.name}: decode tokens/s vs batch "
                       f"({report.run.weight_dtype}, context {report.run.context})"), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    legend_below(fig, ax, fontsize=7)
    return fig
