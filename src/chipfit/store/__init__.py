"""Results that last: the SQLite history of runs and measurements.

Every measurement is written the moment it completes, so a crash, a ``kill -9`` or a power
cut keeps what was measured; ``chipfit bench --resume`` carries on from there.
"""

from __future__ import annotations

from chipfit.store.sqlite import SCHEMA_VERSION, RunSummary, Store, default_db_path, open_store

__all__ = ["SCHEMA_VERSION", "RunSummary", "Store", "default_db_path", "open_store"]
