"""Number formatting shared by the terminal and HTML views."""

from __future__ import annotations

import math

__all__ = ["fmt_bytes", "fmt_rate", "fmt_seconds"]


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_bytes(count: float | None) -> str:
    if count is None or not math.isfinite(count):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return "-"  # pragma: no cover


def fmt_rate(value: float, unit: str) -> str:
    """``fmt_rate(72.3e9, "FLOP/s")`` -> ``72.3 GFLOP/s``."""
    if value is None or not math.isfinite(value):
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
