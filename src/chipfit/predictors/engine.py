"""Fused inference engines (TensorRT-like ``tensorrt`` on GPUs, ``engine`` on any catalog
device) predicted on top of an eager :class:`~chipfit.analysis.roofline.Prediction`.

The engine parameters are the shipped fit (``hardware/data/engine_fit.json``), fitted on the
published MLPerf rows by ``pipelines/engines.py`` and written by ``benchmarks/engine_fit.py``;
prediction reads it and never fits. The band is the ``engine`` stratum's (``bands.json``).

Two pricing rules live here, so that ``predict`` and ``advise`` apply them alike: a token
model is priced at its real tokens (:func:`token_window`, :func:`real_tokens`: the user's
``--seq-len`` as given, else the fitted real-token share of the window), and a device
without the precision's peak gets an unknown row (no time, no band), never a stand-in peak.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from chipfit.analysis.roofline import Prediction
from chipfit.analysis.stacks import (
    ENGINE_STACKS,
    engine_prediction,
    hardware_from_spec,
    tokens_scaled,
)
from chipfit.errors import InvalidInputError, UnknownNameError

__all__ = ["EAGER_ITEMSIZE", "ENGINE_PRECISIONS", "NOT_TOKENS", "TokenWindow", "engine_precision",
           "predict_engine", "real_tokens", "resolve_stack", "token_window",
           "untold_tokens_note"]

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


@dataclass(frozen=True)
class TokenWindow:
    """The sequence a token model's engine row is priced at.

    ``window`` is the tokens per sequence the model was traced at (a built-in's own
    sequence, a config's ``--seq-len`` or its default); ``given`` says the user named it
    (``--seq-len``: real tokens, priced as given), and ``flag`` is how they could (shown in
    the note of a row priced at the fitted share; "" where there is no such flag)."""

    window: int
    given: bool = False
    flag: str = ""


#: The window of a model whose inputs are no token sequences (images): no token rule.
NOT_TOKENS = TokenWindow(0)


def token_window(workload: Any = None, *, seq_len: int | None = None,
                 default_seq_len: int = 0, flag: str = "") -> TokenWindow | None:
    """The :class:`TokenWindow` of a model an engine prices: :data:`NOT_TOKENS` for one
    whose inputs are no token sequences, None where chipfit cannot tell (a factory's
    tensors).

    A workload says it with ``Workload.tokens`` (bert-base, gpt2-small, t5-small: their
    128-token window; the image models 0). A transformers config (``workload`` None) has
    the user's ``seq_len`` when given, else ``default_seq_len`` (0: an image config).
    Predict and advise both ask this."""
    if workload is not None:
        tokens = getattr(workload, "tokens", None)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            return None
        return TokenWindow(tokens)
    if seq_len is not None:
        return TokenWindow(int(seq_len), given=True, flag=flag)
    return TokenWindow(int(default_seq_len), flag=flag) if default_seq_len > 0 else NOT_TOKENS


def real_tokens(tokens: TokenWindow, fitted_fraction: float) -> tuple[int, str]:
    """The real tokens per sequence an engine row is priced at, and the row's note saying so.

    Given tokens (``--seq-len``) are real tokens, priced as given. Otherwise the window is
    taken as padded the way the published MLPerf BERT inputs the engine was fitted on are:
    ``fitted_fraction`` of it holds real tokens (the engines skip padding), at least one."""
    window = tokens.window
    if tokens.given:
        return window, (f"tokens: priced at the {window} real tokens per sequence of "
                        f"{tokens.flag or 'the sequence length'} {window} (as given: no "
                        "padding assumed)")
    real = min(window, max(1, round(window * fitted_fraction)))
    hint = (f"; {tokens.flag} N prices N real tokens" if tokens.flag else "")
    return real, (f"tokens: priced at {real} real tokens of the {window}-token window (the "
                  f"fitted share {fitted_fraction:.0%} of padded MLPerf-style inputs{hint})")


def predict_engine(eager: Prediction, spec: Any, stack: str, precision: str,
                   count: int = 1, tokens: TokenWindow | None = None) -> Prediction:
    """``eager`` (a catalog prediction on ``spec``) as a fused ``stack`` at ``precision``.

    ``tokens`` (:func:`token_window`) prices a token model at its real tokens
    (:func:`real_tokens`): the work of ``eager`` scaled to them as the fit scaled the MLPerf
    BERT rows (:func:`chipfit.analysis.stacks.tokens_scaled`). A spec without the
    precision's peak gives an unknown row (no time, no band), never a stand-in peak."""
    from chipfit.predictors.core import band_for
    from chipfit.predictors.fits import shipped_engine_fit

    if stack == "tensorrt" and spec.kind != "gpu":
        raise InvalidInputError(f"tensorrt is a GPU stack and {spec.key} is a {spec.kind}: use "
                                "--stack engine for a fused engine on it")
    fit, loo_median, rows = shipped_engine_fit()
    band, basis = band_for("engine", loo_median,
                           f"leave-one-out median error over {rows} published MLPerf rows")
    from chipfit.predictors.core import sustained_share

    hardware = hardware_from_spec(spec, precision, count, sustained_share(spec.key))
    notes: tuple[str, ...] = ()
    if tokens is not None and tokens.window and not hardware.missing_peak:
        real, note = real_tokens(tokens, fit.token_fraction)
        eager = tokens_scaled(eager, real / tokens.window)
        notes = (note,)
    elif tokens is None and not hardware.missing_peak:
        notes = untold_tokens_note(eager)
    pred = engine_prediction(eager, hardware, fit, stack=stack, precision=precision,
                             eager_itemsize=EAGER_ITEMSIZE, band=band, band_basis=basis)
    return replace(pred, stratum="engine", route=eager.route, notes=(*notes, *pred.notes))


def untold_tokens_note(eager: Prediction) -> tuple[str, ...]:
    """The token basis of an engine row with attention whose inputs chipfit cannot read as
    token sequences (a factory's tensors): every traced token, said in the row."""
    if not any(c.op_class == "attention" for c in eager.breakdown):
        return ()
    return (f"tokens: priced at every token of the traced input ({eager.size}): chipfit "
            "cannot tell its padding, and the engine skips padding",)
