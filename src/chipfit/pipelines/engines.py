"""Fit the fused-engine stack on published MLPerf results, and predict engines with it.

Orchestration for :mod:`chipfit.analysis.stacks`: the MLPerf rows of the shipped reference
results (``hardware/data/reference_results.toml``) are predicted *eager* first (the
architectures traced on the meta device, catalog roofs), then the engine layer is fitted on
top. Prediction (:mod:`chipfit.predictors.engine`) reads the fit this module writes
(``write_fit``, run by ``benchmarks/engine_fit.py``); the leave-one-out report is
validation's. Offline rows are the throughput of a large batch (``OFFLINE_BATCH``),
single-stream rows the latency of batch 1. Fits are cached under the data directory, keyed
by the chipfit version and the catalog and reference data, because tracing the models takes
seconds.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chipfit.analysis.roofline import catalog_roofs, predict, scaled
from chipfit.analysis.stacks import (
    EngineFit,
    EngineRow,
    fit_engine,
    from_operators,
    hardware_from_spec,
    leave_one_out,
    summary,
)
from chipfit.predictors.core import sustained_share
from chipfit.predictors.engine import (  # the predictor side, re-exported for callers here
    engine_precision,
    predict_engine,
    resolve_stack,
)
from chipfit.predictors.fits import ENGINE_FIT_SCHEMA_VERSION, engine_fit_dict, engine_fit_from

__all__ = ["engine_fit", "engine_precision", "engine_rows", "loo_report", "predict_engine",
           "resolve_stack", "write_fit"]

FIT_SCHEMA_VERSION = 1  # history: 1 = first engine fit (chipfit 0.1 + stacks)


def _precision(row: dict[str, Any]) -> str:
    return {"int8": "int8", "fp16": "float16", "fp16-amp": "float16"}.get(row["precision"],
                                                                         "float32")


def engine_rows(models: tuple[str, ...] | None = None) -> list[EngineRow]:
    """Every MLPerf (engine) row of the reference results, predicted eager (``models``:
    only rows of those models)."""
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.validate import (
        OFFLINE_BATCH,
        REFERENCE_DEVICES,
        reference_model_costs,
        reference_rows,
    )

    catalog = load_catalog()
    rows = []
    for row in reference_rows():
        if not row["scenario"].startswith("mlperf") or (models and row["model"] not in models):
            continue
        spec = _reference_spec(row["device"], catalog, REFERENCE_DEVICES)
        if spec is None or row["model"] not in OFFLINE_BATCH:
            continue  # a device the catalog lacks, or an architecture chipfit cannot trace
        count = int(row.get("accelerators") or 1)
        batch = int(row.get("batch") or OFFLINE_BATCH[row["model"]])
        costs = reference_model_costs(row["model"], batch, int(row.get("seq_len") or 384))
        eager = from_operators(predict(costs, scaled(catalog_roofs(spec, "torch"), count)),
                               costs.ops)
        precision = _precision(row)
        hardware = hardware_from_spec(spec, precision, count, sustained_share(spec.key))
        if hardware.missing_peak:
            continue  # no catalog peak at the row's precision: nothing to fit it on
        value = float(row["value"])
        published = value if row["metric"] == "throughput" else value * _unit_s(row["unit"])
        rows.append(EngineRow(row["id"], "cpu" if spec.kind == "cpu" else "gpu", precision,
                              eager, hardware, row["metric"], published,
                              padded=bool(row.get("seq_len")), model=row["model"]))
    return rows


def _reference_spec(name: str, catalog: Any, known: dict[str, str]) -> Any:
    """The catalog entry of a published row's device name (``2x Xeon ...``: the per-device
    entry; the row's ``accelerators`` says how many)."""
    import re

    if name in known:
        return catalog[known[name]]
    return catalog.match(re.sub(r"^\d+\s*x\s*", "", name.strip()))


def _unit_s(unit: str) -> float:
    return {"ms": 1e-3, "us": 1e-6, "s": 1.0}[unit]


def _cache_key() -> str:
    import hashlib
    from importlib import resources

    from chipfit._version import __version__

    digest = hashlib.sha256(f"{__version__}/{FIT_SCHEMA_VERSION}".encode())
    for name in ("catalog.toml", "reference_results.toml"):
        digest.update(resources.files("chipfit.hardware").joinpath(f"data/{name}").read_bytes())
    from chipfit.analysis import stacks  # the model itself: a changed model is fitted again

    digest.update(Path(stacks.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())  # and the table this module writes
    return digest.hexdigest()[:16]


def _cache_path() -> Any:
    from chipfit.paths import data_dir

    return data_dir() / "validation" / "engine_fit.json"


@lru_cache(maxsize=1)
def _fitted() -> dict[str, Any]:
    """The fit on every engine row plus the leave-one-out table, cached on disk."""
    path, key = _cache_path(), _cache_key()
    if path.exists():
        from chipfit.errors import InvalidInputError
        from chipfit.paths import RUN_FILE_LIMIT, read_user_json

        try:
            data = read_user_json(path, RUN_FILE_LIMIT, "cache file")
            if data.get("key") == key and data.get("schema_version") == FIT_SCHEMA_VERSION:
                return data
        except (InvalidInputError, AttributeError):
            pass  # a damaged cache is recomputed
    data = _compute_fit()
    data.update(key=key, schema_version=FIT_SCHEMA_VERSION)
    from chipfit.paths import write_json_atomic

    write_json_atomic(path, data)
    return data


def _compute_fit() -> dict[str, Any]:
    rows = engine_rows()
    full = fit_engine(rows, f"fitted on {len(rows)} published MLPerf rows")
    pairs = leave_one_out(rows)
    table = [{"id": r.id, "model": r.model, "family": r.family, "device": r.hardware.key,
              "precision": r.precision,
              "metric": r.metric, "published": r.published, "loo_predicted": r.predicted(f),
              "loo_error": r.error(f), "fit_error": r.error(full),
              "loo_fit": _fit_dict(f)} for r, f in pairs]
    return {"fit": _fit_dict(full), "loo": table, "summary": dict(summary(pairs))}


_fit_dict = engine_fit_dict
_fit_from = engine_fit_from


def engine_fit() -> EngineFit:
    """The engine parameters fitted on every published MLPerf row."""
    return _fit_from(_fitted()["fit"])


def loo_report() -> dict[str, Any]:
    """Leave-one-out rows (each predicted with a fit that excludes it) and median errors."""
    data = _fitted()
    return {"rows": data["loo"], "summary": data["summary"], "fit": data["fit"]}


def write_fit(path: Path) -> dict[str, Any]:
    """Write the shipped fit (``hardware/data/engine_fit.json``) that prediction reads."""
    from chipfit.paths import utc_now

    data = _compute_fit()
    out = {"schema_version": ENGINE_FIT_SCHEMA_VERSION, "written_at": utc_now(),
           "script": "benchmarks/engine_fit.py", "rows": len(data["loo"]),
           "loo_median_error": data["summary"]["all"], "fit": data["fit"]}
    path.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    return out
