"""Views of the stored history: the list of runs, one run's header, and a comparison.

Results never print themselves; these functions turn them into rich renderables (for the
terminal) and plain rows (for JSON and CSV exports).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from chipfit.analysis.compare import PointComparison, RunComparison
from chipfit.report.fmt import fmt_seconds
from chipfit.results import Measurement, Run, RunSummary

__all__ = ["COMPARE_COLUMNS", "compare_dict", "compare_rows", "compare_table", "run_header",
           "runs_table", "summary_dict", "write_compare_csv"]

_VERDICT_STYLE = {"regression": "bold red", "broken": "bold red", "improvement": "green",
                  "fixed": "green", "unsure": "yellow", "unchanged": "", "failed": "yellow",
                  "only_a": "dim", "only_b": "dim", "contended": "magenta"}
_STATE_STYLE = {"complete": "green", "interrupted": "yellow", "unfinished": "yellow"}


def summary_dict(s: RunSummary) -> dict[str, Any]:
    """A run summary as plain JSON-ready values."""
    return {"run_id": s.run_id, "command": s.command, "workloads": list(s.workloads),
            "started_at": s.started_at,
            "finished_at": s.finished_at, "state": s.state, "hostname": s.hostname,
            "fingerprint": s.fingerprint, "chipfit_version": s.chipfit_version,
            "devices": list(s.devices), "versions": dict(s.versions), "planned": s.planned,
            "measured": s.measured, "ok": s.ok}


def _what(s: RunSummary) -> str:
    """Which command made the run, and on which workloads (the first few)."""
    names = ", ".join(s.workloads[:3]) + (f" +{len(s.workloads) - 3}" if len(s.workloads) > 3
                                          else "")
    return f"{s.command or '?'}\n{names}" if names else s.command or "?"


def runs_table(summaries: Sequence[RunSummary], where: str, wide: bool = False) -> Table:
    """``chipfit runs``: newest first, one row per run (``wide`` adds machine and versions)."""
    table = Table(title=f"Runs in {where} (newest first)", title_justify="left",
                  caption="ok/meas./plan.: measurements that succeeded, that were made, "
                  "and that the run planned" + ("" if wide else "; --wide adds machine and "
                                                 "versions"), caption_justify="left")
    table.add_column("run / started (UTC)", no_wrap=True)
    table.add_column("command / workloads")
    table.add_column("state", no_wrap=True)
    table.add_column("devices")
    if wide:
        table.add_column("machine", no_wrap=True)
        table.add_column("versions", no_wrap=True)
    table.add_column("ok/meas./plan.", justify="right", no_wrap=True)
    for s in summaries:
        row = [Text(f"{s.run_id}\n{s.started_at[:16].replace('T', ' ')}"), Text(_what(s)),
               Text(s.state, style=_STATE_STYLE.get(s.state, "")), Text("\n".join(s.devices))]
        if wide:
            row += [Text(f"{s.hostname}\n{s.fingerprint[:8]}"),
                    Text("\n".join(f"{k} {v}" for k, v in (("chipfit", s.chipfit_version),
                                                             *s.versions)))]
        table.add_row(*row, f"{s.ok}/{s.measured}/{s.planned or '-'}")
    return table


def run_header(run: Run) -> Table:
    """``chipfit show``: when, where and how a run was made."""
    machine, settings = dict(run.machine), dict(run.settings)
    state = ("interrupted" if run.interrupted else "complete" if run.finished_at
             else "unfinished")
    table = Table(title=Text(f"Run {run.run_id}"), title_justify="left", show_header=False,
                  box=None)
    # Keys wrap at their spaces past 28 columns ("memory guard limit matmul torch:cpu ...")
    # so the values keep the room: a timestamp or a number is never folded.
    table.add_column(style="bold", max_width=28)
    table.add_column(overflow="fold")  # folds only a word longer than the whole column
    rows = [("command", run.command), ("started", run.started_at),
            ("finished", run.finished_at or "-"), ("state", state),
            ("machine", f"{machine.get('hostname', '?')} ({machine.get('cpu', '?')}, "
                        f"{machine.get('os', '?')})"),
            ("fingerprint", machine.get("fingerprint", "?")),
            ("chipfit", run.chipfit_version),
            ("measurements", f"{sum(m.ok for m in run.measurements)} ok of "
                             f"{len(run.measurements)}")]
    for key, value in sorted(settings.items()):
        if key == "advice":
            continue  # shown apart, in words (chipfit show); the record: show --json -
        if key == "fleet_nodes":
            rows.append((key, "recorded (show --json - lists them)"))
            continue
        # "a=1,b=2" lists wrap after a comma, never inside a key or a number
        rows.append((key, value.replace(",", ", ") if " " not in value else value))
    rows += [(f"memory guard limit {' '.join(g.key)}", f"{g.size or '-'} ({g.source})")
             for g in run.guard_limits]
    for key, value in rows:
        table.add_row(Text(key), Text(value))  # stored text: never read as markup
    return table


def _time_cell(m: Measurement | None, view: str) -> Text:
    if m is None:
        return Text("-", style="dim")
    if not m.ok:
        return Text(m.status, style="yellow")
    rel = m.rel_ci
    return Text(fmt_seconds(m.seconds(view)) + (f" ±{rel * 100:.1f}%" if math.isfinite(rel)
                                                 else " ±?") + f"\nn={len(m.block_times_s)}")


def _ratio_text(p: PointComparison) -> str:
    if not math.isfinite(p.ratio):
        return "-"
    change = (p.ratio - 1) * 100
    return f"×{p.ratio:.3f}\n{change:+.1f}%"


def compare_table(result: RunComparison) -> Group:
    """``chipfit compare``: one row per point; regressions in red, with the test's p-value."""
    table = Table(title=Text(f"B = {result.run_b}  vs  A = {result.run_a}"), title_justify="left",
                  show_lines=True)
    for col in ("workload", "size", "device", "dtype / mode", "A median", "B median", "B/A",
                "p", "noise", "verdict"):
        table.add_column(col, justify="right" if col in ("A median", "B median", "B/A", "p",
                                                         "noise")
                         else "left")
    for p in result.points:
        workload, size, device, dtype, mode = p.key
        table.add_row(Text(workload), Text(size), Text(device), Text(f"{dtype}\n{mode}"),
                      _time_cell(p.a, result.view),
                      _time_cell(p.b, result.view), _ratio_text(p),
                      f"{p.p_value:.2g}" if math.isfinite(p.p_value) else "-",
                      f"{p.noise_floor:.1%}" if math.isfinite(p.noise_floor) else "-",
                      Text(p.verdict + ("\n(contended)" if p.contended and
                                        p.verdict != "contended" else ""),
                           style=_VERDICT_STYLE.get(p.verdict, "")))
    notes = [Text(f"median per call ({result.view.replace('_', ' ')}) ±95% CI; n samples. "
                  f"A regression is B slower by more than {result.threshold:.0%} and than "
                  "the point's noise floor (the drift of its chunk medians within a run), "
                  f"with Mann-Whitney U p < {result.alpha:g} on the chunk medians (stretches "
                  "of each run, not single samples). contended: past the bar but measured "
                  "while the machine was shared (never flagged: re-run on a quiet machine). "
                  "All figures measured.", style="dim")]
    if not result.same_machine:
        notes.append(Text("A and B were measured on different machines (or one is unknown): "
                          "differences include the hardware.", style="yellow"))
    if result.busy:
        notes.append(Text(f"the machine was busy ({'; '.join(result.busy)}): every point counts "
                          "as contended and no timing change is flagged; compare runs made on "
                          "a quiet machine", style="yellow"))
    n = len(result.regressions)
    notes.append(Text(f"verdict: {result.verdict}; {n} regression(s), "
                      f"{len(result.improvements)} improvement(s) in {len(result.points)} "
                      "point(s)", style="bold red" if n else "bold"))
    return Group(table, *notes)


COMPARE_COLUMNS = ("workload", "size", "device", "dtype", "mode", "a_status", "b_status",
                   "a_median_s", "b_median_s", "a_samples", "b_samples", "ratio", "p_value",
                   "noise_floor", "verdict", "flagged", "contended")


def compare_rows(result: RunComparison) -> list[dict[str, Any]]:
    """One plain row per point (NaN as None), for JSON and CSV."""
    rows = []
    for p in result.points:
        a_s = p.a.seconds(result.view) if p.a is not None and p.a.ok else None
        b_s = p.b.seconds(result.view) if p.b is not None and p.b.ok else None
        rows.append(dict(zip(("workload", "size", "device", "dtype", "mode"), p.key, strict=True),
                         a_status=p.a.status if p.a else None,
                         b_status=p.b.status if p.b else None, a_median_s=a_s, b_median_s=b_s,
                         a_samples=len(p.a.block_times_s) if p.a else 0,
                         b_samples=len(p.b.block_times_s) if p.b else 0,
                         ratio=p.ratio if math.isfinite(p.ratio) else None,
                         p_value=p.p_value if math.isfinite(p.p_value) else None,
                         noise_floor=p.noise_floor if math.isfinite(p.noise_floor) else None,
                         verdict=p.verdict, flagged=p.flagged, contended=p.contended))
    return rows


def compare_dict(result: RunComparison) -> dict[str, Any]:
    """The comparison as JSON-ready values (``format`` chipfit-compare, schema version 2:
    version 1's p-values came from raw samples; 2 adds ``noise_floor`` and ``contended``, and
    later the run-level ``verdict`` and ``busy`` evidence)."""
    return {"format": "chipfit-compare", "schema_version": 2, "run_a": result.run_a,
            "run_b": result.run_b, "threshold": result.threshold, "alpha": result.alpha,
            "view": result.view, "same_machine": result.same_machine,
            "test": "Mann-Whitney U, two-sided, on chunk medians; bar: max(threshold, "
                    "noise floor)",
            "verdict": result.verdict, "busy": list(result.busy),
            "regressions": len(result.regressions), "points": compare_rows(result)}


def write_compare_csv(result: RunComparison, path: str | os.PathLike[str]) -> Path:
    from chipfit.paths import open_atomic

    with open_atomic(path, "CSV file", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COMPARE_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()}
                         for row in compare_rows(result))
    return Path(path)
