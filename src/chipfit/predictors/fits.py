"""The fitted artifacts prediction reads (never fits, never validates).

``hardware/data/gpu_model.json`` (the per-kernel GPU models and the eager host costs) and
``hardware/data/bands.json`` (the error band of every prediction stratum) are written by the
fitting and validation code (``pipelines/gpu_validate.py``, ``benchmarks/bands.py``); this
module only reads them, so the predictor never imports what fitted it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from chipfit.analysis.gpu_kernels import GpuParams
from chipfit.analysis.gpu_predict import GpuModel, HostCosts
from chipfit.errors import SchemaError

__all__ = ["ENGINE_FIT_SCHEMA_VERSION", "GPU_MODEL_SCHEMA_VERSION", "BANDS_SCHEMA_VERSION",
           "engine_fit_from", "engine_fit_dict", "last_validation", "shipped_engine_fit",
           "load_gpu_model", "local_band", "shipped_bands", "shipped_gpu_model", "validation_path"]

#: History: 1 = first version.
GPU_MODEL_SCHEMA_VERSION = 1
#: History: 1 = first version (one band per stratum, with its coverage evidence).
BANDS_SCHEMA_VERSION = 1
#: History: 1 = first version (the fit on every published MLPerf row, its leave-one-out median).
ENGINE_FIT_SCHEMA_VERSION = 1


def _package_text(name: str) -> str:
    return resources.files("chipfit.hardware").joinpath(f"data/{name}").read_text("utf-8")


def load_gpu_model(text: str | None = None) -> GpuModel:
    """The shipped fitted model (``hardware/data/gpu_model.json``), or one given as text."""
    data = json.loads(_package_text("gpu_model.json") if text is None else text)
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError(f"gpu_model.json: schema_version must be an integer, not {version!r}")
    if version > GPU_MODEL_SCHEMA_VERSION:
        raise SchemaError("gpu_model.json is newer than this chipfit; upgrade chipfit")
    host = data["host"]
    prov = tuple((k, json.dumps(v) if not isinstance(v, str) else v)
                 for k, v in data.get("provenance", {}).items())
    return GpuModel(GpuParams.of(data["params"]),
                    HostCosts(tuple(sorted(host["per_kernel_s"].items())), host["view_s"],
                              host["module_s"], host["source"],
                              tuple(sorted((str(k), float(v))
                                           for k, v in host.get("machines", {}).items()))),
                    float(data["band"]), str(data["band_basis"]), prov)


@lru_cache(maxsize=1)
def shipped_gpu_model() -> GpuModel:
    return load_gpu_model()


@lru_cache(maxsize=1)
def shipped_bands() -> dict[str, dict[str, Any]]:
    """Stratum -> ``{"band", "basis", "cases", "coverage"}`` from ``bands.json``."""
    try:
        data = json.loads(_package_text("bands.json"))
    except FileNotFoundError:
        return {}
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version > BANDS_SCHEMA_VERSION:
        raise SchemaError("bands.json is newer than this chipfit; upgrade chipfit")
    return {str(k): dict(v) for k, v in data.get("strata", {}).items()}


def validation_path() -> Path:
    """Where ``chipfit validate`` keeps its latest summary (it writes; prediction reads)."""
    from chipfit.paths import data_dir

    return data_dir() / "validation" / "latest.json"


def last_validation(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The summary of the last ``chipfit validate`` (a plain dict), or None."""
    from chipfit.analysis.validation import FORMAT, VALIDATION_SCHEMA_VERSION
    from chipfit.paths import read_versioned_json

    path = Path(path) if path is not None else validation_path()
    if not path.exists():
        return None
    return read_versioned_json(path, FORMAT, VALIDATION_SCHEMA_VERSION, "validation",
                               "run chipfit validate again")


def local_band(device: str) -> tuple[float | None, str]:
    """The band of a calibrated local device: its last ``chipfit validate`` median error
    (from quiet cases only), if any."""
    data = last_validation()
    local = (data or {}).get("summary", {}).get("local", {}).get(device) or {}
    if local.get("mape") is None or not local.get("cases"):
        return None, ""
    return float(local["mape"]), (f"median error of the last chipfit validate on {device} "
                                  f"({local['cases']} cases, {data.get('finished_at', '')})")


def engine_fit_dict(fit: Any) -> dict[str, Any]:
    """An :class:`~chipfit.analysis.stacks.EngineFit` as plain data (the file's ``fit``)."""
    from dataclasses import asdict

    out = asdict(fit)
    out["efficiency"] = dict(fit.efficiency)
    return out


def engine_fit_from(data: dict[str, Any]) -> Any:
    from chipfit.analysis.stacks import EngineFit

    return EngineFit(tuple(sorted(data["efficiency"].items())), float(data["kernel_s"]),
                     float(data["token_fraction"]), tuple(data["rows"]), data["basis"])


@lru_cache(maxsize=1)
def shipped_engine_fit() -> tuple[Any, float, int]:
    """(the engine fit, its leave-one-out median error, rows) from ``engine_fit.json``."""
    data = json.loads(_package_text("engine_fit.json"))
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version > ENGINE_FIT_SCHEMA_VERSION:
        raise SchemaError("engine_fit.json is newer than this chipfit; upgrade chipfit")
    median = data.get("loo_median_error")
    return (engine_fit_from(data["fit"]), float(median) if median is not None else 0.5,
            int(data.get("rows", 0)))
