"""Readers for the measured GPU kernel data (NeuSight, MIT; ``shared/data/gpu_kernels``).

Files are read with the standard library and numpy only; device names are mapped to catalog
keys through ``gpu_arch.toml``'s ``study_name``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.errors import InvalidInputError
from chipfit.paths import TABLE_FILE_LIMIT, read_user_text

__all__ = ["E2E_MODELS", "kernel_columns", "load_e2e_labels", "load_kernel_rows"]

E2E_MODELS = ("bert_large", "gpt2_large", "switchxl4")

#: The shape columns each operator's kernel model reads (analysis.gpu_fit); elementwise
#: operators (any other name) read B and H.
_DIMS = {"bmm": ("B", "M", "N", "K"), "linear": ("B", "M", "N", "K"),
         "softmax": ("B", "H"), "ln": ("B", "H"),
         "conv": ("B", "Input_Channel", "Output_Channel", "Kernel_Szie", "Input_Size", "Stride",
                  "Padding")}
#: Rows one file may hold (the NeuSight files hold tens of thousands): a bound on memory
#: for a file that decompresses without end.
_MAX_ROWS = 2_000_000
#: The largest batch or sequence length a label may give.
_MAX_LABEL_COUNT = 2**31
_E2E_COLUMNS = ("model", "seq_len", "batch", "device", "mode", "e2e_ms", "forward_ms",
                "backward_ms")


def kernel_columns(op: str) -> tuple[str, ...]:
    """The columns ``op``'s kernel file must have."""
    return ("device", "latency_ms") + _DIMS.get(op, ("B", "H"))


def _read_csv(path: Path, columns: Iterable[str], compressed: bool) -> list[dict[str, str]]:
    """Every row of a CSV file (gzip-compressed when ``compressed``), read through the bounded
    reader (:func:`chipfit.paths.read_user_text`: FIFOs and devices refused, size bounded
    after decompression), refused in one line that names the file when it lacks one of
    ``columns`` or is no CSV."""

    what = "kernel data" if compressed else "end-to-end labels"
    text = read_user_text(path, TABLE_FILE_LIMIT, what, gzipped=compressed)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise InvalidInputError(f"{path}: missing column(s) {', '.join(missing)} (it "
                                    f"has: {', '.join(header[:20]) or 'no header'})")
        rows = []
        for row in reader:
            rows.append(row)
            if len(rows) > _MAX_ROWS:
                raise InvalidInputError(f"{path}: more than {_MAX_ROWS:,} rows; not kernel "
                                        "data chipfit can fit")
        return rows
    except csv.Error as exc:
        raise InvalidInputError(f"{path}: not a CSV file ({exc})") from None


def _number(path: Path, line: int, column: str, text: Any, *, positive: bool = False) -> float:
    """A finite number from a CSV cell (positive if asked), else one line naming the place."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0):
        kind = "a positive number" if positive else "a finite number"
        raise InvalidInputError(f"{path}, line {line}: {column} is {str(text)[:40]!r}, not {kind}")
    return value


def _study_key(name: str, path: Path | None = None) -> str:
    from chipfit.hardware.gpu_arch import study_names

    names = study_names()
    alt = name.replace("_", " ")
    for candidate in (name, alt):
        if candidate in names:
            return names[candidate]
    for study, key in names.items():  # e2e files write spaces as underscores
        if study.replace(" ", "_") == name:
            return key
    where = f"{path}: " if path is not None else ""
    raise InvalidInputError(f"{where}unknown GPU {str(name)[:80]!r} in the kernel data (known: "
                            f"{', '.join(sorted(names))})")


def load_kernel_rows(data_dir: str | Path, ops: tuple[str, ...], *, sample: int | None = None,
                     seed: int = 0) -> Any:
    """One :class:`~chipfit.analysis.gpu_fit.KernelRows` with every row of ``ops``' files.

    ``sample`` keeps that many rows per (operator, device), chosen with ``seed``.
    """
    from chipfit.analysis.gpu_fit import KernelRows

    rng = np.random.default_rng(seed)
    ops_col, dev_col, secs, dims = [], [], [], {}
    for op in ops:
        path = Path(data_dir) / "kernels" / f"{op}.csv.gz"
        rows = _read_csv(path, kernel_columns(op), compressed=True)
        by_dev: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, r in enumerate(rows, start=2):  # line 1 is the header
            by_dev.setdefault(r["device"], []).append((line, r))
        for device, chosen in sorted(by_dev.items()):
            if sample and len(chosen) > sample:
                idx = rng.choice(len(chosen), sample, replace=False)
                chosen = [chosen[i] for i in sorted(idx)]
            key = _study_key(device, path)
            for line, r in chosen:
                ops_col.append(op)
                dev_col.append(key)
                secs.append(_number(path, line, "latency_ms", r["latency_ms"],
                                    positive=True) * 1e-3)
                for name, value in r.items():
                    if name not in ("device", "kernel", "latency_ms") and name is not None:
                        dims.setdefault(name, []).append(_number(path, line, name, value))
    n = len(secs)
    arrays = {k: np.asarray(v, float) for k, v in dims.items() if len(v) == n}
    return KernelRows(np.asarray(ops_col), np.asarray(dev_col), arrays, np.asarray(secs))


def load_e2e_labels(data_dir: str | Path) -> list[dict[str, Any]]:
    """``e2e_labels.csv`` rows with the device as a catalog key and times in seconds."""
    path = Path(data_dir) / "e2e_labels.csv"
    rows = _read_csv(path, _E2E_COLUMNS, compressed=False)
    labels = []
    for line, r in enumerate(rows, start=2):
        labels.append({"model": r["model"], "seq_len": _whole(path, line, r, "seq_len"),
                       "batch": _whole(path, line, r, "batch"),
                       "device": _study_key(r["device"], path),
                       "mode": "train" if r["mode"] == "train" else "inference",
                       "seconds": _number(path, line, "e2e_ms", r["e2e_ms"], positive=True) * 1e-3,
                       "forward_s": _number(path, line, "forward_ms", r["forward_ms"],
                                            positive=True) * 1e-3,
                       "backward_s": _number(path, line, "backward_ms", r["backward_ms"]) * 1e-3})
    return labels


def _whole(path: Path, line: int, row: dict[str, str], column: str) -> int:
    """A positive whole number of at most _MAX_LABEL_COUNT from a label's cell."""
    value = _number(path, line, column, row[column], positive=True)
    if value != int(value) or value > _MAX_LABEL_COUNT:
        raise InvalidInputError(f"{path}, line {line}: {column} is {str(row[column])[:40]!r}, "
                                f"not a whole number up to {_MAX_LABEL_COUNT}")
    return int(value)
