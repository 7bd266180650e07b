"""Tables that fit: optional columns step aside at narrow widths; numbers never wrap."""

from __future__ import annotations

import io

from rich.console import Console

from chipfit.report.layout import Col, Fitted, kept_columns

COLS = [Col("key"), Col("value", "right"), Col("extra", "right", drop=2),
        Col("more", "right", drop=1), Col("prose", prose=True, drop=3)]
ROWS = [("epyc-genoa-2vcpu", "197.9", "12345.678", "335.0", "a long sentence of words " * 4),
        ("h100-sxm", "989", "1", "2", "short")]


def _render(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_narrow_widths_drop_the_highest_drop_first_and_say_so():
    assert kept_columns(COLS, ROWS, 200) == [0, 1, 2, 3, 4]
    narrow = kept_columns(COLS, ROWS, 40)
    assert 0 in narrow and 1 in narrow and 4 not in narrow  # prose (drop=3) goes first
    assert kept_columns(COLS, ROWS, 40, wide=True) == [0, 1, 2, 3, 4]
    text = _render(Fitted(COLS, ROWS), 40)
    assert "not shown at 40 columns" in text and "--wide" in text


def test_numbers_and_keys_stay_whole_at_any_width():
    for width in (30, 40, 60, 80, 120):
        text = _render(Fitted(COLS, ROWS), width)
        for token in ("epyc-genoa-2vcpu", "197.9", "989"):
            assert token in text, (width, token)
