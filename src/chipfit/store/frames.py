"""Runs as pandas DataFrames, for analysis in a notebook.

pandas is optional: it is imported when a frame is asked for, and its absence is a clear
error with the install command, not an ImportError from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chipfit.errors import BackendUnavailableError
from chipfit.results import Run
from chipfit.store.runs import CSV_COLUMNS, csv_row

__all__ = ["FRAME_COLUMNS", "to_dataframe"]

#: The CSV export's columns, plus the machine and the raw per-call times (the truth).
FRAME_COLUMNS = ("fingerprint", "hostname") + CSV_COLUMNS + ("times_s",)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise BackendUnavailableError("to_dataframe needs pandas, which is not installed; "
                                      "install it with: pip install 'chipfit[pandas]'") from None
    return pandas


def to_dataframe(runs: Run | Iterable[Run]) -> Any:
    """One row per measurement of ``runs`` (a run or several), with derived statistics.

    Columns are :data:`FRAME_COLUMNS`; ``times_s`` holds the raw per-call times as a tuple,
    ``source`` says every figure is ``measured``. Failed points keep their row (status, note)
    with NaN timings.
    """
    pandas = _pandas()
    rows = []
    for run in [runs] if isinstance(runs, Run) else runs:
        machine = dict(run.machine)
        for m in run.measurements:
            row = {"fingerprint": machine.get("fingerprint", ""),
                   "hostname": machine.get("hostname", "")}
            row.update(csv_row(run.run_id, m))
            row["times_s"] = m.times_s
            rows.append(row)
    return pandas.DataFrame(rows, columns=list(FRAME_COLUMNS))
