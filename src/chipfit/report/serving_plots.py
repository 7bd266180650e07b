"""The serving frontier of ``chipfit llm --html``: tokens/s per device against tokens/s per user.

Each hardware's chosen configuration, swept over 1, 2, 4 ... concurrent users (predicted):
more users raise what a device delivers and lower what each user gets. The region where
each user gets at least the SLO's tokens/s (1 / TPOT) is shaded. matplotlib is imported
when the plot is drawn, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chipfit.report.plots import _COLORS, _figure, plain, slug

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["pareto_plot"]


def pareto_plot(report: Any) -> Figure:
    """Output tokens/s per device (y) against tokens/s per user (x), one line per hardware
    (its configuration named), points labelled with their concurrent users; the SLO region
    (per-user tokens/s >= 1 / TPOT target) shaded."""
    fig = _figure()
    ax = fig.add_subplot()
    xs_all: list[float] = []
    for i, row in enumerate(r for r in report.rows if r.pareto and r.plan is not None):
        color = _COLORS[i % len(_COLORS)]
        o = row.plan.option
        xs = [a for _, a, _ in row.pareto]
        ys = [b for _, _, b in row.pareto]
        xs_all += xs
        ax.plot(xs, ys, marker="o", ms=3, color=color,
                label=plain(f"{row.hardware} TP{o.tp}" + (f" PP{o.pp}" if o.pp > 1 else ""))
                )[0].set_gid(f"pareto-{slug(row.hardware)}")
        for users, x, y in row.pareto:
            ax.annotate(str(users), (x, y), fontsize=6, color=color,
                        xytext=(2, 2), textcoords="offset points")
    tpot = report.slo.tpot_s
    if tpot and xs_all:
        right = max(max(xs_all) * 1.2, 1.2 / tpot)
        ax.axvspan(1.0 / tpot, right, color="#2ca02c", alpha=0.10,
                   label=plain(f"SLO: >= {1 / tpot:.3g} tok/s per user")).set_gid("pareto-slo")
        ax.set_xlim(left=0, right=right)
    ax.set_xlabel("tokens/s per user (1 / TPOT p50; predicted)")
    ax.set_ylabel("output tokens/s per device (predicted)")
    ax.set_title(plain(f"{report.arch.name}: serving frontier (numbers: concurrent users)"),
                 fontsize=11)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    return fig
