"""Size and batch ladders."""

from __future__ import annotations

import math

__all__ = ["geometric_ladder"]


def geometric_ladder(start: int, stop: int, points: int | None = None) -> list[int]:
    """Sizes from ``start`` to ``stop`` inclusive, evenly spaced in log space.

    With ``points`` unset, the ladder doubles (1, 2, 4, ...), ending exactly at ``stop``.
    """
    if start <= 0 or stop < start:
        from chipfit.errors import InvalidInputError

        raise InvalidInputError(f"need 0 < from <= to, got {start}..{stop}")
    if points is None:
        points = int(math.floor(math.log2(stop / start))) + 1
        if start * 2 ** (points - 1) != stop:
            points += 1
    if points <= 1 or start == stop:
        return [start]
    ratio = (stop / start) ** (1 / (points - 1))
    values = sorted({int(round(start * ratio**i)) for i in range(points)})
    values[-1] = stop
    return values
