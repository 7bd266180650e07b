"""Reading a chipfit SQLite store from outside, read-only, while a run may still write it
(tests that stop runs with signals count what was stored)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    """Rows of ``sql`` on ``db``; none while the file or its tables do not exist yet."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        conn.close()


def count(db: Path) -> int:
    """How many measurements ``db`` holds."""
    return (rows(db, "SELECT COUNT(*) FROM measurements") or [(0,)])[0][0]
