"""JSON and CSV exports of a :class:`~chipfit.results.Run`.

The JSON format carries a schema version; files from a newer chipfit are refused, never
misread. History of ``SCHEMA_VERSION``:

1. chipfit 0.1: run metadata, discovery, measurements with raw block times.
2. The memory guard's limits are a ``guard_limits`` list, no longer
   ``guard_limit|workload|device|dtype|mode`` settings keys (schema-1 files still read: their
   keys become the list).
3. Measurements gain ``contended`` (true/false; absent or null: unknown, as every older
   measurement reads), ``contention`` (the evidence, numbers), ``contention_note`` and
   ``attempts``; the run gains ``contention`` (a summary, derived, ignored when read).
4. measurements carry ``stack`` (``eager``, ``compile``, ``onnxruntime``, ``int8`` ...; JAX
   ``jit``), ``compile_s``, ``max_abs_diff`` and ``max_rel_diff``; older files read their
   measurements as the backend's default stack.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError
from chipfit.paths import (
    check_versioned,
    open_atomic,
    read_versioned_json,
    runs_dir,
    write_json_atomic,
)
from chipfit.results import (
    Discovery,
    GuardLimit,
    Measurement,
    Run,
    check_run_id,
    check_settings,
    checked_from_plain,
    split_legacy_limits,
    summarize_contention,
)

__all__ = ["SCHEMA_VERSION", "CSV_COLUMNS", "load_run", "run_file", "run_from_dict",
           "run_to_dict", "save_run", "write_csv"]

SCHEMA_VERSION = 4
FORMAT = "chipfit-run"
_UPGRADE = "upgrade chipfit to read it"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def run_to_dict(run: Run) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "run_id": run.run_id,
        "command": run.command,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "interrupted": run.interrupted,
        "chipfit_version": run.chipfit_version,
        "machine": dict(run.machine),
        "settings": dict(run.settings),
        "guard_limits": [{f.name: getattr(g, f.name) for f in fields(g)} for g in run.guard_limits],
        "discovery": {
            "devices": [{f.name: _jsonable(getattr(d, f.name)) for f in fields(d)}
                        for d in run.discovery.devices],
            "problems": [{"scope": p.scope, "reason": p.reason} for p in run.discovery.problems],
        },
        "contention": summarize_contention(run.measurements).to_dict(),
        "measurements": [{k: _jsonable(v) for k, v in m.to_dict().items()}
                         for m in run.measurements],
    }


def run_from_dict(data: Mapping[str, Any], origin: str = "input") -> Run:
    """The run in ``data`` (a parsed results file), every field checked: a damaged file is
    one InvalidInputError naming ``origin`` and the field, never a crash further on."""
    data = check_versioned(data, FORMAT, SCHEMA_VERSION, origin, "results", _UPGRADE)
    pairs = _pairs(data, "settings", origin)
    check_settings(pairs, origin)
    settings, legacy = split_legacy_limits(pairs)
    return Run(
        run_id=_run_id(data, origin), command=_text(data, "command", origin),
        started_at=_text(data, "started_at", origin),
        finished_at=_text(data, "finished_at", origin),
        machine=_pairs(data, "machine", origin),
        discovery=Discovery.checked(data.get("discovery", {}), origin),
        measurements=tuple(_measurement(m, f"{origin} (measurement {i})")
                           for i, m in enumerate(_list(data, "measurements", origin))),
        interrupted=_flag(data, "interrupted", origin),
        chipfit_version=_text(data, "chipfit_version", origin),
        settings=settings,
        guard_limits=legacy + tuple(_guard_limit(g, origin)
                                    for g in _list(data, "guard_limits", origin)),
    )


def _damaged(origin: str, what: str) -> InvalidInputError:
    return InvalidInputError(f"{origin} is damaged: {what}")


def _run_id(data: Mapping[str, Any], origin: str) -> str:
    if "run_id" not in data:
        raise _damaged(origin, "'run_id' is missing")
    return check_run_id(data["run_id"], f"{origin} is damaged: 'run_id'")


def _text(data: Mapping[str, Any], key: str, origin: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise _damaged(origin, f"{key!r} is {type(value).__name__}, not text")
    return value


def _flag(data: Mapping[str, Any], key: str, origin: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise _damaged(origin, f"{key!r} is {type(value).__name__}, not true/false")
    return value


def _list(data: Mapping[str, Any], key: str, origin: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise _damaged(origin, f"{key!r} is {type(value).__name__}, not a list")
    return value


def _pairs(data: Mapping[str, Any], key: str, origin: str) -> tuple[tuple[str, str], ...]:
    value = data.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise _damaged(origin, f"{key!r} is not an object of text values")
    return tuple(sorted(value.items()))


def _guard_limit(data: Any, origin: str) -> GuardLimit:
    if not isinstance(data, Mapping) or not {"workload", "device", "dtype", "mode"} <= set(data):
        raise InvalidInputError(f"{origin} has a malformed guard limit: {str(data)[:80]}")
    return checked_from_plain(GuardLimit, data, f"{origin} (guard limit)")


def _measurement(data: Any, origin: str) -> Measurement:
    if not isinstance(data, Mapping):
        raise _damaged(origin, f"a measurement is {type(data).__name__}, not an object")
    clean = {k: v for k, v in data.items() if v is not None or k in ("first_call_s",
                                                                      "peak_memory_bytes",
                                                                      "energy_j")}
    return Measurement.checked(clean, origin)


def run_file(run_id: str) -> Path:
    """Where run ``run_id`` is kept in the data directory: ``runs/<run_id>.json``. The id is
    checked first (:func:`chipfit.results.check_run_id`): one read from a database or a file
    is data, and must never name a path elsewhere (``../x``, ``/abs``)."""
    folder = runs_dir()
    path = folder / f"{check_run_id(run_id, 'run')}.json"
    if path.parent != folder:  # the pattern allows no separator and no "..": belt and braces
        raise InvalidInputError(f"run id {run_id!r} names no file in {folder}")
    return path


def save_run(run: Run, path: str | os.PathLike[str]) -> Path:
    """Write ``run`` as JSON atomically (a crash mid-write leaves the old file whole)."""
    return write_json_atomic(path, run_to_dict(run))


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a results JSON file (any schema version up to :data:`SCHEMA_VERSION`)."""
    return run_from_dict(read_versioned_json(path, FORMAT, SCHEMA_VERSION, "results", _UPGRADE),
                         str(path))


CSV_COLUMNS = (
    "run_id", "workload", "size", "device", "stack", "dtype", "mode", "status", "source",
    "median_s", "ci_low_s", "ci_high_s", "rel_ci", "iqr_s", "samples", "number_per_block", "first_call_s",
    "transfer_h2d_s", "transfer_d2h_s", "end_to_end_s", "gflops", "gbps", "throughput_per_s",
    "peak_memory_bytes", "memory_method", "stop_reason", "noisy", "contended", "attempts",
    "contention_note", "note", "compile_s", "max_abs_diff", "max_rel_diff",
)


def csv_row(run_id: str, m: Measurement) -> dict[str, Any]:
    lo, hi = m.ci_s
    return {
        "run_id": run_id, "workload": m.workload, "size": m.size, "device": m.device,
        "stack": m.stack, "compile_s": m.compile_s, "max_abs_diff": m.max_abs_diff,
        "max_rel_diff": m.max_rel_diff,
        "dtype": m.dtype, "mode": m.mode, "status": m.status, "source": m.source,
        "median_s": m.median_s, "ci_low_s": lo, "ci_high_s": hi, "rel_ci": m.rel_ci,
        "iqr_s": m.iqr_s, "samples": len(m.block_times_s), "number_per_block": m.number_per_block,
        "first_call_s": m.first_call_s, "transfer_h2d_s": m.transfer_h2d_s,
        "transfer_d2h_s": m.transfer_d2h_s, "end_to_end_s": m.end_to_end_s, "gflops": m.gflops,
        "gbps": m.gbps, "throughput_per_s": m.throughput, "peak_memory_bytes": m.peak_memory_bytes,
        "memory_method": m.memory_method, "stop_reason": m.stop_reason, "noisy": m.noisy,
        "contended": "" if m.contended is None else m.contended, "attempts": m.attempts,
        "contention_note": m.contention_note, "note": m.note,
    }


def write_csv(runs: Iterable[Run], path: str | os.PathLike[str]) -> Path:
    """One row per measurement with derived statistics (raw samples live in the JSON)."""
    with open_atomic(path, "CSV file", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            for m in run.measurements:
                writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v)
                                 for k, v in csv_row(run.run_id, m).items()})
    return Path(path)
