"""Where a plot's ticks and labels go: pure arithmetic, no matplotlib.

:func:`log_ticks` picks the major ticks of a log axis so every plot has at least three
numbered ticks: powers of two on a size axis when enough fit, else decades, 1-2-5 steps
between decades when a decade or two spans the plot, every integer multiple when less, and
evenly spaced round numbers when the axis spans less than one 1-2-5 step.

:func:`place_labels` puts short text boxes near their anchor points (crossover marks) so no
two overlap and all stay inside the plot; a label that has no room is left out (its text is
in the list under the plot anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["MAX_TICKS", "MIN_RATIO", "Box", "log_ticks", "overlaps", "place_labels", "widen"]

#: More major ticks than this crowd the axis: sparser schemes are chosen instead.
MAX_TICKS = 10
#: The narrowest axis drawn, as top over bottom: a flatter range is widened around its middle,
#: so ticks three significant digits apart exist (1.00 1.05 1.10, never 1.00 1.00 1.00).
MIN_RATIO = 1.1
_EPS = 1e-9


def widen(lo: float, hi: float) -> tuple[float, float]:
    """``(lo, hi)`` ordered, and widened around its geometric middle to at least
    :data:`MIN_RATIO` (an axis over one value, or values equal to three digits)."""
    lo, hi = min(lo, hi), max(lo, hi)
    if hi / lo >= MIN_RATIO:
        return lo, hi
    middle = math.sqrt(lo * hi)
    return middle / math.sqrt(MIN_RATIO), middle * math.sqrt(MIN_RATIO)


def _within(values: list[float], lo: float, hi: float) -> list[float]:
    return sorted({v for v in values if lo * (1 - _EPS) <= v <= hi * (1 + _EPS)})


def _decimal(lo: float, hi: float, mantissas: Sequence[int]) -> list[float]:
    first, last = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    values = [float(f"{m}e{e}") for e in range(first, last + 1) for m in mantissas]
    return _within(values, lo, hi)


def _powers_of_two(lo: float, hi: float) -> list[float]:
    first, last = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
    return _within([2.0 ** e for e in range(first, last + 1)], lo, hi)


def _thin(ticks: list[float]) -> list[float]:
    """Every k-th tick, so at most :data:`MAX_TICKS` remain (and still at least three)."""
    step = math.ceil(len(ticks) / MAX_TICKS)
    return ticks[::step]


def _linear(lo: float, hi: float) -> list[float]:
    """Round, evenly spaced values: the largest 1-2-2.5-5 step at most a third of the span,
    so an interval that long holds at least three of its multiples."""
    span = hi - lo
    exp = math.floor(math.log10(span / 3))
    step = max(m * 10.0 ** exp for m in (1, 2, 2.5, 5, 10) if m * 10.0 ** exp <= span / 3)
    start = math.ceil(lo / step - _EPS)
    values = [round((start + i) * step, 12 - exp) for i in range(int(span / step) + 2)]
    return _thin(_within(values, lo, hi))


def log_ticks(lo: float, hi: float, base2: bool = False) -> list[float]:
    """At least three major ticks inside ``widen(lo, hi)`` (positive) for a log axis, at most
    :data:`MAX_TICKS`: powers of two (``base2``) when three or more fit, else decades; 1-2-5
    steps when there are fewer than three decades; then 1-9 multiples; then linear steps."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= 0:
        return []
    lo, hi = widen(lo, hi)
    if base2:
        ticks = _powers_of_two(lo, hi)
        if len(ticks) >= 3:
            return _thin(ticks)
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = _decimal(lo, hi, mantissas)
        if len(ticks) >= 3 and _spread(ticks, lo, hi):
            decades = _decimal(lo, hi, (1,))
            return _thin(decades) if len(ticks) > MAX_TICKS and len(decades) >= 3 else \
                _thin(ticks)
    return _linear(lo, hi)


def _spread(ticks: list[float], lo: float, hi: float) -> bool:
    """Whether ``ticks`` reach across the axis: neither end left bare over 40% of it (in log)
    (0.71 to 1.41 has 0.8 0.9 1 and nothing above: linear steps read better there)."""
    span = math.log(hi / lo)
    return max(math.log(ticks[0] / lo), math.log(hi / ticks[-1])) <= 0.4 * span


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def overlaps(a: Box, b: Box) -> bool:
    """Whether two boxes share any area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates(anchor: tuple[float, float], size: tuple[float, float], bounds: Box,
                gap: float) -> list[tuple[float, float]]:
    """Lower-left corners to try: beside the anchor first (above right, above left, below
    right, below left, further away each round), then a grid over the bounds, nearest
    first."""
    (ax, ay), (w, h) = anchor, size
    near = []
    for k in range(1, 6):
        d = gap * k
        near += [(ax + gap, ay + d), (ax - gap - w, ay + d), (ax + gap, ay - d - h),
                 (ax - gap - w, ay - d - h)]
    x0, y0, x1, y1 = bounds
    nx, ny = 40, 40
    grid = [(x0 + (x1 - x0 - w) * i / nx, y0 + (y1 - y0 - h) * j / ny)
            for i in range(nx + 1) for j in range(ny + 1)]
    grid.sort(key=lambda p: (p[0] + w / 2 - ax) ** 2 + (p[1] + h / 2 - ay) ** 2)
    return near + grid


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 bounds: Box = (0.0, 0.0, 1.0, 1.0), gap: float = 0.02
                 ) -> list[tuple[float, float] | None]:
    """A lower-left corner for each label (width, height) near its anchor, in the anchors'
    units: inside ``bounds``, overlapping no other label and, where there is room, covering
    no anchor. ``None`` for a label that fits nowhere (too big, or no room left)."""
    placed: list[Box] = []
    marks = [(x - gap / 2, y - gap / 2, x + gap / 2, y + gap / 2) for x, y in anchors]
    out: list[tuple[float, float] | None] = []
    for anchor, (w, h) in zip(anchors, sizes, strict=True):
        spot = None
        if 0 < w <= bounds[2] - bounds[0] and 0 < h <= bounds[3] - bounds[1]:
            options = _candidates(anchor, (w, h), bounds, gap)
            for avoid in (placed + marks, placed):  # marks are a wish, labels a must
                spot = next((p for p in options if _free((p[0], p[1], p[0] + w, p[1] + h),
                                                           bounds, avoid)), None)
                if spot is not None:
                    break
        if spot is not None:
            placed.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
        out.append(spot)
    return out


def _free(box: Box, bounds: Box, avoid: Sequence[Box]) -> bool:
    tol = 1e-12
    inside = (box[0] >= bounds[0] - tol and box[1] >= bounds[1] - tol
              and box[2] <= bounds[2] + tol and box[3] <= bounds[3] + tol)
    return inside and not any(overlaps(box, other) for other in avoid)
