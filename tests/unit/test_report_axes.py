"""Tick choice and label placement of the report's plots (pure; chipfit.report.axes)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.report.axes import MAX_TICKS, MIN_RATIO, log_ticks, overlaps, place_labels, widen
from chipfit.report.fmt import fmt_seconds
from chipfit.report.plots import plain_number, size_tick

positive = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(positive, positive, st.booleans())
def test_ticks_cover_the_range_with_three_to_ten_distinct_labels(a, b, base2):
    lo, hi = widen(a, b)
    assert lo <= min(a, b) and hi >= max(a, b) and hi / lo >= MIN_RATIO * (1 - 1e-9)
    ticks = log_ticks(a, b, base2=base2)
    assert 3 <= len(ticks) <= MAX_TICKS
    assert ticks == sorted(set(ticks))
    assert all(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)
    # the ticks spread over the range: no more than half of it (in log) left bare at an end
    span = math.log(hi / lo)
    assert max(math.log(ticks[0] / lo), math.log(hi / ticks[-1])) <= span / 2 + 1e-9
    for fmt in (fmt_seconds, plain_number, size_tick):
        labels = [fmt(t) for t in ticks]
        assert len(set(labels)) == len(labels), labels


def test_ticks_between_decades_when_one_or_two_decades_span_the_axis():
    assert log_ticks(5, 300) == [5, 10, 20, 50, 100, 200]  # the tokens/s axis of the issue
    assert log_ticks(3e-5, 2e-4) == [5e-5, 1e-4, 2e-4]  # one tick ("1 s") before
    assert log_ticks(16, 1024, base2=True) == [16, 32, 64, 128, 256, 512, 1024]
    assert log_ticks(1e-6, 1e3) == [10.0 ** e for e in range(-6, 4)]  # decades: 10 fit
    assert log_ticks(100, 100) == [97.5, 100, 102.5]  # one value: an axis around it
    assert log_ticks(0, 10) == [] and log_ticks(1, math.inf) == []


boxes = st.tuples(st.floats(0.02, 0.25), st.floats(0.02, 0.08))
points = st.tuples(st.floats(0, 1), st.floats(0, 1))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(points, boxes), min_size=1, max_size=5))
def test_labels_are_placed_inside_the_plot_and_apart(labels):
    anchors, sizes = zip(*labels, strict=True)
    spots = place_labels(anchors, sizes)
    assert None not in spots  # five small labels always find room in the plot
    placed = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes, strict=True)]
    for i, box in enumerate(placed):
        assert -1e-9 <= box[0] and box[2] <= 1 + 1e-9 and -1e-9 <= box[1] and box[3] <= 1 + 1e-9
        assert not any(overlaps(box, other) for other in placed[i + 1:])


def test_labels_stay_near_their_marks_and_off_other_marks():
    # two crossovers 2% apart (the "≈ 518" drawn on "≈ 764")
    spots = place_labels([(0.50, 0.50), (0.52, 0.51)], [(0.1, 0.05)] * 2, gap=0.03)
    (x1, y1), (x2, y2) = spots
    assert not overlaps((x1, y1, x1 + 0.1, y1 + 0.05), (x2, y2, x2 + 0.1, y2 + 0.05))
    assert all(abs(x - 0.5) < 0.2 and abs(y - 0.5) < 0.2 for x, y in spots)
    assert place_labels([(0.5, 0.5)], [(1.5, 0.1)]) == [None]  # wider than the plot
