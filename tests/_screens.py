"""Is a command's terminal output readable at a given width? One checker for every screen.

``assert_readable(text, width, tokens=...)`` fails, naming the line, when:

- a line is wider than ``width`` (it would wrap on the terminal, or be cut);
- a cell was clipped: an ellipsis glued to a key, a number or a device (``elementwi…``,
  ``84.4 GFLOP…``, ``torch:cp…``, ``×0.…``). A table that clips prose by design (the
  description column of ``chipfit workloads``) passes ``prose=True``: an ellipsis after a
  plain word is then allowed, never after a digit or a ``:@_.%×±/`` character;
- a token the screen must show whole (a device id, a run id, a setting key, a number copied
  from ``--json``) is not on any one line (split across lines, cut, or missing).

Other helpers' commands join the same test at merge: render at 80 and 120 columns (the test
runner's ``cli(..., env={"COLUMNS": "80"})``) and call :func:`assert_readable`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["assert_readable", "paragraphs", "problems"]

# An ellipsis and the run of non-space characters glued to its left (what was clipped).
_CLIPPED = re.compile(r"([^\s│┃|]*)…")
# Characters that make a clipped run a key, number or device rather than a word of prose.
_NOT_PROSE = re.compile(r"[\d:@_.%×±/]")


def problems(text: str, width: int, tokens: Iterable[str] = (), *,
             prose: bool = False) -> list[str]:
    """Everything unreadable in ``text`` at ``width`` columns, one message each (empty: fine)."""
    found = []
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        wide = len(line.rstrip())
        if wide > width:
            found.append(f"line {n} is {wide} characters wide (> {width}): {line!r}")
        for clip in _CLIPPED.finditer(line):
            glued = clip.group(1)
            if glued and (not prose or _NOT_PROSE.search(glued)):
                found.append(f"line {n} clips a cell ({glued}…): {line!r}")
    for token in dict.fromkeys(tokens):
        if token and not any(token in line for line in lines):
            found.append(f"{token!r} is not whole on any line (split, cut or missing)")
    return found


def assert_readable(text: str, width: int, tokens: Iterable[str] = (), *,
                    prose: bool = False) -> None:
    """Fail with every problem :func:`problems` finds in ``text`` at ``width`` columns."""
    found = problems(text, width, tokens, prose=prose)
    assert not found, f"unreadable at {width} columns:\n" + "\n".join(found) + (
        "\n--- output ---\n" + text)


def paragraphs(stderr: str, start: str = "warning:") -> list[str]:
    """The messages of ``stderr`` that begin with ``start``, each with its wrapped
    continuation lines (indented two spaces) joined back into one line."""
    found: list[str] = []
    inside = False
    for line in stderr.splitlines():
        if line.startswith(start):
            found.append(line)
            inside = True
        elif inside and line.startswith("  "):
            found[-1] += " " + line.strip()
        else:
            inside = False
    return found
