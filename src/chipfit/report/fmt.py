"""Number formatting shared by the terminal and HTML views, and :func:`clean`, which makes
text read from a file safe to show on a terminal or in a page."""

from __future__ import annotations

import math
import re

from chipfit.timing.units import fmt_num, fmt_rate, fmt_seconds

__all__ = ["UNSAFE", "ascii_for", "clean", "fmt_bytes", "fmt_num", "fmt_rate", "fmt_seconds"]

#: Characters a terminal (or a browser) acts on instead of showing: C0 controls but tab and
#: newline (ESC starts the sequences that hide, recolour or retitle), DEL and the C1 controls
#: (U+009B is a one-byte CSI), lone surrogates (they cannot even be encoded), and every Unicode
#: format and separator character: bidirectional overrides and isolates that reorder a line,
#: zero-width characters that hide text, line and paragraph separators, tag characters.
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
    "\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else (
        f"\\U{code:08x}")


def clean(text: str) -> str:
    """``text`` with every :data:`UNSAFE` character written as a visible escape (``\\x1b``,
    ``\\u202e``), as Python writes it in a repr: a stored name shows what it holds instead of
    acting on the terminal. Tabs, newlines and all printable text are left as they are."""
    return UNSAFE.sub(_escaped, text)


#: What chipfit's own non-ASCII characters become on a console that cannot show them
#: (``PYTHONIOENCODING=ascii``, a Latin-1 terminal): the reading survives, not just a "?".
_ASCII = {
    "\u2014": "-", "\u2013": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-", "\xb1": "+-",
    "\xd7": "x", "\xf7": "/", "\u2192": "->", "\u2190": "<-", "\u2194": "<->", "\u21d2": "=>",
    "\u2264": "<=", "\u2265": ">=", "\u2248": "~", "\u2260": "!=", "\u2026": "...", "\xb5": "u",
    "\u03bc": "u", "\xb0": " deg", "\xb7": ".", "\u2022": "*", "\u2018": "'", "\u2019": "'",
    "\u201c": '"', "\u201d": '"', "\xab": "<<", "\xbb": ">>", "\u2713": "v", "\u2714": "v",
    "\u2717": "x", "\u2718": "x", "\u221e": "inf", "\u221a": "sqrt", "\u2206": "delta",
    "\u0394": "delta", "\u03c3": "sigma", "\u2502": "|", "\u2500": "-", "\xa0": " ",
    "\u2009": " ", "\u202f": " ", "\u26a0": "!",
}


def ascii_for(char: str) -> str:
    """An ASCII stand-in for ``char``: chipfit's own symbols by table (``±`` -> ``+-``), box
    drawing by direction, accented letters without their accents, anything else ``?``."""
    if char in _ASCII:
        return _ASCII[char]
    import unicodedata

    name = unicodedata.name(char, "")
    if name.startswith("BOX DRAWINGS"):
        return "-" if "HORIZONTAL" in name else "|" if "VERTICAL" in name else "+"
    if name.startswith(("BLOCK", "FULL BLOCK", "LEFT ", "RIGHT ", "UPPER ", "LOWER ")) and (
            "BLOCK" in name):
        return "#"
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
    return plain if plain and plain.isprintable() else "?"


def fmt_bytes(count: float | None) -> str:
    if count is None or not math.isfinite(count):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return "-"  # pragma: no cover
