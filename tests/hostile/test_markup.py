"""Names stored in runs are shown as written: rich markup in them neither crashes the
terminal views nor styles (and so hides) any text."""

from __future__ import annotations

import json
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
