"""Readers for the measured GPU kernel data (NeuSight, MIT; ``shared/data/gpu_kernels``).

Files are read with the standard library and numpy only; device names are mapped to catalog
keys through ``gpu_arch.toml``'s ``study_name``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from chipfit.errors import InvalidInputError
from chipfit.paths import TABLE_FILE_LIMIT, read_user_text

__all__ = ["E2E_MODELS", "load_e2e_labels", "load_kernel_rows"]

E2E_MODELS = ("bert_large", "gpt2_large", "switchxl4")


def _study_key(name: str) -> str:
    from chipfit.hardware.gpu_arch import study_names

    names = study_names()
    alt = name.replace("_", " ")
    for candidate in (name, alt):
        if candidate in names:
            return names[candidate]
    for study, key in names.items():  # e2e files write spaces as underscores
        if study.replace(" ", "_") == name:
            return key
    raise InvalidInputError(f"unknown GPU {name!r} in the kernel data")


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
        rows = list(csv.DictReader(io.StringIO(
            read_user_text(path, TABLE_FILE_LIMIT, "kernel data", gzipped=True), newline="")))
        by_dev: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            by_dev.setdefault(r["device"], []).append(r)
        for device, chosen in sorted(by_dev.items()):
            if sample and len(chosen) > sample:
                idx = rng.choice(len(chosen), sample, replace=False)
                chosen = [chosen[i] for i in sorted(idx)]
            key = _study_key(device)
            for r in chosen:
                ops_col.append(op)
                dev_col.append(key)
                secs.append(float(r["latency_ms"]) * 1e-3)
                for name, value in r.items():
                    if name not in ("device", "kernel", "latency_ms"):
                        dims.setdefault(name, []).append(float(value))
    n = len(secs)
    arrays = {k: np.asarray(v, float) for k, v in dims.items() if len(v) == n}
    return KernelRows(np.asarray(ops_col), np.asarray(dev_col), arrays, np.asarray(secs))


def load_e2e_labels(data_dir: str | Path) -> list[dict[str, Any]]:
    """``e2e_labels.csv`` rows with the device as a catalog key and times in seconds."""
    path = Path(data_dir) / "e2e_labels.csv"
    rows = list(csv.DictReader(io.StringIO(
        read_user_text(path, TABLE_FILE_LIMIT, "end-to-end labels"), newline="")))
    return [{"model": r["model"], "seq_len": int(r["seq_len"]), "batch": int(r["batch"]),
             "device": _study_key(r["device"]), "mode": "train" if r["mode"] == "train"
             else "inference", "seconds": float(r["e2e_ms"]) * 1e-3,
             "forward_s": float(r["forward_ms"]) * 1e-3,
             "backward_s": float(r["backward_ms"]) * 1e-3} for r in rows]
