"""A re-measured point replaces its row in one transaction: a kill at any moment leaves
exactly one row per job (appending, then rewriting at the end, left two after a kill)."""

from __future__ import annotations

import sqlite3

from chipfit.results import Discovery, Measurement, Run
from chipfit.store import open_store


def test_replacing_a_measurement_keeps_one_row_in_its_place(tmp_path) -> None:
    first = Measurement("matmul", "64", "torch:cpu", block_times_s=(1.0, 1.1, 1.2))
    other = Measurement("matmul", "96", "torch:cpu", block_times_s=(2.0, 2.1, 2.2))
    again = Measurement("matmul", "64", "torch:cpu", block_times_s=(0.5, 0.5, 0.6), attempts=2)
    run = Run("r1", "bench", "2026-01-01T00:00:00+00:00", discovery=Discovery(()))
    with open_store(tmp_path / "h.sqlite3") as store:
        store.begin_run(run)
        store.add_measurement("r1", first)
        store.add_measurement("r1", other)
        store.replace_measurement("r1", again)
        loaded = store.load_run("r1")
    assert [(m.size, m.attempts) for m in loaded.measurements] == [("64", 2), ("96", 1)]
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    rows = conn.execute("SELECT seq, size FROM measurements ORDER BY seq").fetchall()
    conn.close()
    assert rows == [(0, "64"), (1, "96")]
