"""Names stored in runs are shown as written: rich markup in them neither crashes the
terminal views nor styles (and so hides) any text; control, C1 and bidirectional characters
in them (or in what a user typed) reach neither the terminal nor an HTML page raw: they show
as escapes (``\x1b[8m``), in tables, plain lines, one-line errors and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.hostile._support import StoredRun

HOSTILE = {"workload": "mm[/]", "size": "[red]64", "device": "torch:cpu[bold]"}


def _marked_run(stored_run: StoredRun, path: Path, run_id: str) -> Path:
    data = json.loads(stored_run.json.read_text())
    data["run_id"] = run_id
    data["settings"]["note"] = "[/][link=http://x]click[/link]"
    data["machine"]["hostname"] = "[blink]host[/]"
    for m in data["measurements"]:
        m.update(HOSTILE)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("command", ["show", "compare"])
def test_markup_in_stored_names_prints_as_written(command: str, stored_run, tmp_path, cli) -> None:
    # (run ids hold no markup: one outside chipfit's own pattern is refused, test_stored_data)
    a = _marked_run(stored_run, tmp_path / "a.json", "20260101T000000Z-00000a")
    b = _marked_run(stored_run, tmp_path / "b.json", "20260101T000000Z-00000b")
    args = ["show", str(a)] if command == "show" else ["compare", str(a), str(b)]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    text = proc.stdout
    for literal in ("mm[/]", "[red]64", "torch:cpu[bold]"):
        assert literal in text, f"{literal!r} vanished from:\n{text}"
    assert ("20260101T000000Z-00000a" in text) and (command == "show" or
                                                    "20260101T000000Z-00000b" in text)
    if command == "show":
        assert "[link=http://x]click[/link]" in text and "[blink]host[/]" in text


# ---- control characters: shown as escapes, never acted on --------------------------------------
#: What a crafted file may hide in its names: an escape sequence that hides the rest of a row
#: (SGR 8), one that retitles the terminal (OSC 0, ended by BEL), a one-byte C1 CSI, a
#: right-to-left override, a zero-width space and a NUL.
CONTROL = {"workload": "mm\x1b[8mHIDDEN", "size": "64\u202e46", "device": "torch:cpu\x9b2J",
           "note": "x\x1b]0;pwned\x07y\u200bz\x00"}


#: What must never reach a terminal or a page raw (independent of chipfit's own list).
_RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _unsafe(text: str) -> list[str]:
    return _RAW.findall(text)


def _controlled_run(stored_run: StoredRun, path: Path) -> Path:
    data = json.loads(stored_run.json.read_text())
    data["settings"]["note"] = "hid\x1b[8mden"
    data["machine"]["hostname"] = "host\x1b]0;title\x07"
    for m in data["measurements"]:
        m.update(CONTROL)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("command", ["show", "compare", "compare-narrow", "report"])
def test_control_characters_in_stored_names_are_escaped_not_sent_to_the_terminal(
        command: str, stored_run, tmp_path, cli) -> None:
    run = _controlled_run(stored_run, tmp_path / "a.json")
    html = tmp_path / "r.html"
    args = {"show": ["show", str(run)], "compare": ["compare", str(run), str(run)],
            "compare-narrow": ["compare", str(run), str(run)],
            "report": ["report", str(run), "-o", str(html)]}[command]
    proc = cli(*args, env={"COLUMNS": "30"} if command.endswith("narrow") else None)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not _unsafe(proc.stdout + proc.stderr), proc.stdout
    shown = html.read_text(encoding="utf-8") if command == "report" else proc.stdout
    assert not _unsafe(shown)
    assert "\\x1b[8mHIDDEN" in shown and "\\u202e" in shown and "\\x9b2J" in shown, shown
    if command == "show":
        assert "\\x1b]0;title" in shown and "\\x1b[8mden" in shown


def test_control_characters_in_a_database_are_escaped_in_runs(stored_run, tmp_path, cli) -> None:
    from tests.hostile._support import copy_db, sql

    db = copy_db(stored_run, tmp_path / "h.sqlite3")
    sql(db, "UPDATE runs SET command = ?", "bench\x1b[2J\x1b[8m")
    sql(db, "UPDATE measurements SET workload = ?", "mm\u202emm")
    for args in (["runs", "--db", str(db)], ["show", "latest", "--db", str(db)]):
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert not _unsafe(proc.stdout + proc.stderr), proc.stdout
        assert "\\x1b[2J" in proc.stdout or "\\u202e" in proc.stdout, proc.stdout


ECHOED = [
    ("argparse-unrecognized", ["devices", "\x1b[2Jjunk"]),
    ("gpu-data-folder", ["validate", "--gpu-data", "/no/such/\x1b[8mdir"]),
    ("gpu-data-folder-bidi", ["validate", "--gpu-data", "/no/such/\u202erid"]),
    # quoted with repr() today; kept so a message that stops quoting cannot regress
    ("unknown-workload", ["predict", "mm\x1b[8mhidden"]),
    ("missing-config", ["llm", "/no/such/\x1b]0;pwned\x07.json"]),
    ("unknown-hardware", ["llm", "llama-3.2-1b", "--hardware", "h100\u202esxm"]),
]


@pytest.mark.parametrize("args", [a for _, a in ECHOED], ids=[i for i, _ in ECHOED])
def test_an_error_quoting_the_users_text_escapes_its_control_characters(args, tmp_path,
                                                                       cli) -> None:
    proc = cli(*args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not _unsafe(proc.stdout + proc.stderr), repr(proc.stderr)


def test_a_written_path_with_control_characters_is_echoed_escaped(stored_run, tmp_path,
                                                                   cli) -> None:
    out = tmp_path / "cmp\x1b[8m.json"
    proc = cli("compare", str(stored_run.json), str(stored_run.json), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert not _unsafe(proc.stdout + proc.stderr) and "cmp\\x1b[8m.json" in proc.stderr
