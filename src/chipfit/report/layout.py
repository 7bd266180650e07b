"""Tables that read at any terminal width: never a number or a key split across lines.

Rich shrinks every column of a table that is too wide, folding ``197`` into ``19/7``. Here
each column says whether it may wrap (prose, at spaces) and how soon it may be dropped; a
table that does not fit loses its optional columns, lowest priority first, and says so in
its caption (``--wide`` brings them back). Columns that stay are as wide as their longest
cell, so numbers and keys are never cut.

A table that cannot fit even so (a terminal narrower than its keys and numbers) is shown
:func:`vertical`: one record per row, a ``header: value`` line per cell, folded at the width.
Consoles never go narrower than :data:`MIN_WIDTH`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = ["MIN_WIDTH", "Col", "Fitted", "Responsive", "fitted_table", "kept_columns",
           "natural_width", "too_wide", "vertical"]

#: The narrowest width anything is laid out for: ``COLUMNS=20`` gets 40 columns (and the
#: vertical layout for every table that needs more).
MIN_WIDTH = 40

# Rich's default box: one border character per column plus the outer edge; one space of
# padding each side of a cell.
_PER_COLUMN = 3
_EDGE = 1
# A column of prose may wrap, but not into a sliver: at least this many characters.
_MIN_PROSE = 16


@dataclass(frozen=True)
class Col:
    """One column: ``drop`` 0 is always shown; higher numbers go first when space is short."""

    header: str
    justify: str = "left"
    drop: int = 0
    prose: bool = False  # may wrap at spaces; otherwise the cell never wraps


def _lines(cell: Any) -> list[str]:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return text.split("\n")


def natural_width(col: Col, cells: Sequence[Any]) -> int:
    """Characters the column needs so no line of any cell wraps (prose: a floor instead)."""
    longest = max([len(col.header)] + [len(line) for c in cells for line in _lines(c)])
    if col.prose:
        word = max([len(w) for c in cells for line in _lines(c) for w in line.split()] or [0])
        return max(min(longest, _MIN_PROSE), word, len(col.header))
    return longest


def kept_columns(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int,
                 wide: bool = False, *, per_column: int = _PER_COLUMN,
                 edge: int = _EDGE) -> list[int]:
    """Indexes of the columns that fit in ``width`` (all of them with ``wide``).
    ``per_column`` and ``edge``: the characters a column's border and padding take, and the
    table's outer edge (rich's default box: 3 and 1; no box, one space each side: 2 and 0)."""
    keep = list(range(len(cols)))
    if wide:
        return keep
    widths = [natural_width(c, [r[i] for r in rows]) for i, c in enumerate(cols)]

    def total(idx: list[int]) -> int:
        return sum(widths[i] for i in idx) + per_column * len(idx) + edge

    for i in sorted(keep, key=lambda i: (-cols[i].drop, -i)):
        if total(keep) <= width or cols[i].drop == 0:
            break
        keep.remove(i)
    return keep


def fitted_table(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int, *,
                 wide: bool = False, caption: str = "", **table_args: Any) -> Table:
    """A rich Table of ``rows`` showing the columns that fit ``width``; the caption names the
    hidden ones. Non-prose columns get their natural width and never wrap."""
    if "box" in table_args and table_args["box"] is None:  # no borders: padding only
        pad = table_args.get("padding", (0, 1))
        sides = (pad, pad) if isinstance(pad, int) else (pad[1], pad[-1] if len(pad) == 4
                                                         else pad[1])
        keep = kept_columns(cols, rows, width, wide, per_column=sum(sides), edge=0)
    else:
        keep = kept_columns(cols, rows, width, wide)
    hidden = [c.header for i, c in enumerate(cols) if i not in keep]
    if hidden:
        joint = " " if caption.endswith(".") else "; " if caption else ""
        caption = caption + joint + (f"not shown at {width} columns: {', '.join(hidden)} "
                                     "(--wide shows them)")
    table = Table(caption=caption or None, caption_justify="left", title_justify="left",
                  **table_args)
    for i in keep:
        col = cols[i]
        if col.prose:
            table.add_column(col.header, justify=col.justify,  # type: ignore[arg-type]
                             min_width=natural_width(col, [r[i] for r in rows]))
        else:
            table.add_column(col.header, justify=col.justify, no_wrap=True,  # type: ignore[arg-type]
                             min_width=natural_width(col, [r[i] for r in rows]))
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


class Responsive:
    """The wide layout where it fits the width it is rendered at, the narrow one otherwise.

    The choice is made at render time (rich's render protocol), so a view need not know the
    terminal: a pipe's 80 columns get the narrow layout, a wide terminal the wide one.
    """

    def __init__(self, wide: Callable[[], Any], narrow: Callable[[int], Any]) -> None:
        self.wide, self.narrow = wide, narrow

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.measure import Measurement

        table = self.wide()
        need = Measurement.get(console, options.update_width(100_000), table).maximum
        yield table if need <= options.max_width else self.narrow(options.max_width)


class Fitted:
    """:func:`fitted_table` for the width it is rendered at (rich's render protocol)."""

    def __init__(self, cols: Sequence[Col], rows: Sequence[Sequence[Any]], *, wide: bool = False,
                 caption: str = "", **table_args: Any) -> None:
        self.cols, self.rows, self.wide = list(cols), [list(r) for r in rows], wide
        self.caption, self.table_args = caption, table_args

    def table(self, width: int) -> Table:
        return fitted_table(self.cols, self.rows, width, wide=self.wide, caption=self.caption,
                            **self.table_args)

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        return Measurement.get(console, options, self.table(options.max_width))


def too_wide(console: Any, options: Any, table: Table) -> bool:
    """Whether ``table`` cannot fit ``options.max_width`` without cutting a cell: its columns'
    narrowest widths (a no-wrap column's longest line, a wrapping one's longest word, with
    padding) and its borders add up to more. Columns that may be cut by design count one
    character: a ``ratio`` column takes what is left, a ``fold`` column folds long words."""
    total = table._extra_width
    for column in table.columns:
        if column.width is None and (column.ratio or (column.overflow == "fold"
                                                      and not column.no_wrap)):
            total += 1 + table._get_padding_width(column._index)
            continue
        measured = table._measure_column(console, options, column)
        total += measured.maximum if column.no_wrap else measured.minimum
    return total > options.max_width


def _flat(cell: Any) -> Text | None:
    """A cell as one line of text (its lines joined by spaces), or None for a renderable."""
    if isinstance(cell, str):
        cell = Text(cell)
    if not isinstance(cell, Text):
        return None
    parts = [part for part in cell.split("\n") if part.plain.strip()]
    return Text(" ").join(parts) if parts else Text("")


def vertical(table: Table) -> Any:
    """``table`` as records, for a width it cannot fit: the title, then per row a
    ``header: value`` line for each non-empty cell (the lines of a cell joined by spaces),
    a blank line between rows, then the caption. Every line folds at the width, so no key or
    number is ever cut, however narrow the console."""
    from rich.console import Group
    from rich.padding import Padding

    items: list[Any] = []
    if table.title:
        items.append(Text(table.title, style="bold") if isinstance(table.title, str)
                     else table.title)
    columns = table.columns
    headers = [c.header.plain if isinstance(c.header, Text) else str(c.header or "")
               for c in columns]
    cells = [list(c.cells) for c in columns]
    for r in range(table.row_count):
        if r:
            items.append(Text(""))
        for header, column in zip(headers, cells, strict=True):
            cell = column[r] if r < len(column) else ""
            flat = _flat(cell)
            label = Text(f"{header}: ", style="bold") if header.strip() else Text("")
            if flat is None:  # a nested renderable: under its label, indented
                if header.strip():
                    items.append(label)
                items.append(Padding(cell, (0, 0, 0, 2)))
            elif flat.plain.strip():
                line = Text.assemble(label, flat)
                line.overflow = "fold"
                items.append(line)
    if table.caption:
        items.append(Text(""))
        items.append(Text(table.caption) if isinstance(table.caption, str) else table.caption)
    return Group(*items)
