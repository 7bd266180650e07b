"""Numbers as a person writes them, for every layer that puts a figure into words: the
terminal and HTML views (through :mod:`chipfit.report.fmt`, which re-exports these) and the
``str()`` summaries of result objects, which live below the report layer. Never an exponent
where one can be avoided: ``1,940 s``, not ``1.94e+03 s``."""

from __future__ import annotations

import math

__all__ = ["fmt_num", "fmt_rate", "fmt_seconds"]


def fmt_num(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures as a person writes it, never in exponent
    form where it can be avoided: ``1940.3`` -> ``1,940``, ``0.0123`` -> ``0.0123``,
    ``2.5e7`` -> ``25,000,000``; only magnitudes under 1e-4 keep an exponent (``3.2e-06``).
    None, NaN and infinities are ``-``."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -4:
        return f"{value:.{digits}g}"
    decimals = digits - 1 - magnitude
    if decimals <= 0:  # no decimals left: round to the figures, group thousands
        return f"{round(value, decimals):,.0f}"
    return f"{value:,.{decimals}f}".rstrip("0").rstrip(".")


def fmt_seconds(seconds: float | None) -> str:
    """``0.0123`` -> ``12.3 ms``; long times in seconds with thousands grouped (``1,940 s``),
    never ``1.94e+03 s``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{fmt_num(seconds / scale)} {unit}"
    return f"{fmt_num(seconds / 1e-9)} ns"


def fmt_rate(value: float, unit: str) -> str:
    """``fmt_rate(72.3e9, "FLOP/s")`` -> ``72.3 GFLOP/s``."""
    if value is None or not math.isfinite(value):
        return "-"
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6),
                          ("k", 1e3)):
        if abs(value) >= scale:
            return f"{fmt_num(value / scale)} {prefix}{unit}"
    return f"{fmt_num(value)} {unit}"
