"""Catalog GPUs predicted by the fitted per-kernel GPU models (package data ``gpu_model.json``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["gpu_prediction", "shipped_gpu_model"]


@lru_cache(maxsize=1)
def shipped_gpu_model() -> Any:
    from chipfit.pipelines.gpu_validate import load_gpu_model

    return load_gpu_model()


def gpu_prediction(costs: Any, key: str, framework: str = "torch") -> Any:
    """A :class:`~chipfit.analysis.roofline.Prediction` for catalog GPU ``key`` from the
    fitted kernel models, copies timed from the catalog's host link where it is sourced."""
    from chipfit.analysis.gpu_predict import estimate, to_prediction
    from chipfit.analysis.roofline import catalog_roofs, transfer_seconds
    from chipfit.hardware.catalog import load_catalog
    from chipfit.hardware.gpu_arch import gpu_figures

    dev = gpu_figures()[key]
    catalog = load_catalog()
    keys = set(catalog)
    notes: list[str] = []
    transfer, known = 0.0, False
    if key in keys:
        roofs = catalog_roofs(catalog[key], framework, dtypes=(costs.dtype,))
        transfer, known = transfer_seconds(costs, roofs), roofs.copy_known
        notes += [n for n in roofs.notes if "host link" in n]
    else:
        notes.append("host link not in the catalog: copy time unknown (not 0)")
    model = shipped_gpu_model()
    est = estimate(costs, dev, model, framework)
    return to_prediction(est, costs, dev, model, key=key, name=dev.name, transfer_s=transfer,
                         transfer_known=known, notes=tuple(notes))
