"""Fused inference engines (TensorRT-like ``tensorrt`` on GPUs, ``engine`` on any catalog
device) predicted on top of an eager :class:`~chipfit.analysis.roofline.Prediction`.

The engine parameters are the shipped fit (``hardware/data/engine_fit.json``), fitted on the
published MLPerf rows by ``pipelines/engines.py`` and written by ``benchmarks/engine_fit.py``;
prediction reads it and never fits. The band is the ``engine`` stratum's (``bands.json``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chipfit.analysis.roofline import Prediction
from chipfit.analysis.stacks import ENGINE_STACKS, engine_prediction, hardware_from_spec
from chipfit.errors import InvalidInputError, UnknownNameError

__all__ = ["EAGER_ITEMSIZE", "ENGINE_PRECISIONS", "engine_precision", "predict_engine",
           "resolve_stack", "token_basis_note"]

EAGER_ITEMSIZE = 4  # the eager predictions an engine is layered on are float32
ENGINE_PRECISIONS = ("int8", "float16", "bfloat16", "float8")
_PRECISION_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp8": "float8",
                      "i8": "int8"}


def resolve_stack(name: str) -> str:
    """A predicted stack's canonical name (``trt`` -> ``tensorrt``)."""
    text = name.strip().lower()
    text = {"trt": "tensorrt", "fused": "engine"}.get(text, text)
    if text != "eager" and text not in ENGINE_STACKS:
        raise UnknownNameError("predicted stack", name, ("eager", *ENGINE_STACKS))
    return text


def engine_precision(text: str) -> str:
    """An engine precision's canonical name; float32 is refused (engines run reduced ones)."""
    name = _PRECISION_ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in ENGINE_PRECISIONS:
        raise UnknownNameError("engine precision", text, ENGINE_PRECISIONS)
    return name


def predict_engine(eager: Prediction, spec: Any, stack: str, precision: str,
                   count: int = 1) -> Prediction:
    """``eager`` (a catalog prediction on ``spec``) as a fused ``stack`` at ``precision``."""
    from chipfit.predictors.core import band_for
    from chipfit.predictors.fits import shipped_engine_fit

    if stack == "tensorrt" and spec.kind != "gpu":
        raise InvalidInputError(f"tensorrt is a GPU stack and {spec.key} is a {spec.kind}: use "
                                "--stack engine for a fused engine on it")
    fit, loo_median, rows = shipped_engine_fit()
    band, basis = band_for("engine", loo_median,
                           f"leave-one-out median error over {rows} published MLPerf rows")
    pred = engine_prediction(eager, hardware_from_spec(spec, precision, count), fit,
                             stack=stack, precision=precision, eager_itemsize=EAGER_ITEMSIZE,
                             band=band, band_basis=basis)
    return replace(pred, stratum="engine", route=eager.route,
                   notes=(*pred.notes, *token_basis_note(eager, fit.token_fraction)))


def token_basis_note(eager: Prediction, fitted_fraction: float) -> tuple[str, ...]:
    """What token count an engine row for a sequence model (one with attention) is priced
    at: every token of its sequence (no padding skipped), while the published MLPerf BERT
    rows the engine was fitted on carried only ``fitted_fraction`` real tokens of their
    384-token window. Said in the row, so neither basis is silent."""
    if not any(c.op_class == "attention" for c in eager.breakdown):
        return ()
    return (f"tokens: priced at every token of each sequence ({eager.size}: no padding "
            f"skipped); the MLPerf BERT rows this engine fit comes from carried "
            f"{fitted_fraction:.0%} real tokens of a 384-token window (the engine skips "
            "padding), so padded inputs run faster than this row",)
