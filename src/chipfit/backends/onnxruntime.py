"""ONNX Runtime as a stack on top of torch: export, quantise, open an inference session.

A torch ``nn.Module`` is exported with ``torch.onnx.export(dynamo=True)`` (the
``torch.export``-based exporter, which needs ``onnxscript``), optionally quantised to int8 by
``onnxruntime.quantization`` (dynamic: weights int8, activations quantised per call; static:
activation ranges calibrated on inputs the caller provides), and run by an
``InferenceSession`` on the execution provider that matches the torch device: CPU here, CUDA
or ROCm/MIGraphX where the onnxruntime build has them. Every failure is an
:class:`~chipfit.errors.UnsupportedError` whose message says what failed, so the suite goes
on and records ``unsupported: <reason>``.

Importing this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from chipfit.errors import UnsupportedError

__all__ = ["export_onnx", "inference_session", "providers_for", "quantize_dynamic_int8",
           "quantize_static_int8", "require_onnxruntime"]

#: Execution providers by torch device platform, in preference order.
PROVIDERS = {"cpu": ("CPUExecutionProvider",),
             "cuda": ("CUDAExecutionProvider", "ROCMExecutionProvider",
                      "MIGraphXExecutionProvider")}


def require_onnxruntime() -> Any:
    """Import onnxruntime, or raise UnsupportedError naming the extra to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UnsupportedError(f"the onnxruntime stacks need onnx and onnxruntime ({exc.name} "
                               "is missing): pip install 'chipfit[stacks]'") from None
    return onnxruntime


def providers_for(platform: str) -> list[str]:
    """The execution providers to run on torch platform ``platform`` (``cpu``, ``cuda``)."""
    ort = require_onnxruntime()
    have = set(ort.get_available_providers())
    wanted = [p for p in PROVIDERS.get(platform, ()) if p in have]
    if not wanted:
        raise UnsupportedError(f"this onnxruntime build has no execution provider for "
                               f"{platform} (it has {', '.join(sorted(have))})")
    return wanted


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's and quantiser's progress logs and warnings (not errors)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(module: Any, inputs: Sequence[Any], path: Path) -> str:
    """Export ``module`` called on ``inputs`` to ``path``; returns the exporter's name."""
    import torch

    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise UnsupportedError("ONNX export needs onnxscript: pip install 'chipfit[stacks]'") from None
    try:
        with quiet(), contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
            program = torch.onnx.export(module, tuple(inputs), dynamo=True, verbose=False,
                                        external_data=False)
            program.save(str(path))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # the exporter raises many types; each is a finding
        raise UnsupportedError(f"ONNX export failed: {_first_line(exc)}") from None
    return f"torch.onnx.export(dynamo=True), torch {torch.__version__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:240]


def _int8_saturates_here() -> bool:
    import platform

    from chipfit.hardware.cpu import int8_saturates, probe_cpu

    return int8_saturates(platform.machine(), probe_cpu().isa)


_REDUCED = "reduce_range: 7-bit weights, since this CPU's int8 products saturate without VNNI"


def quantize_dynamic_int8(source: Path, target: Path, reduce_range: bool | None = None) -> str:
    """Dynamic int8 quantisation (int8 weights, activations quantised per call).

    ``reduce_range`` (7-bit weights) defaults to whether this CPU's int8 products saturate
    (x86 without VNNI or AMX: ``hardware.cpu.int8_saturates``), which is ONNX Runtime's own
    advice for such CPUs: with 8-bit weights an MLP's output there is 10-20% off eager's,
    with 7-bit ones about 1-2%.
    """
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if reduce_range is None:
        reduce_range = _int8_saturates_here()
    try:
        with quiet():
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                             reduce_range=reduce_range)
    except Exception as exc:
        raise UnsupportedError(f"onnxruntime dynamic quantisation failed: {_first_line(exc)}") from None
    if reduce_range:
        return f"onnxruntime.quantization.quantize_dynamic (weights QInt8, {_REDUCED})"
    return "onnxruntime.quantization.quantize_dynamic (weights QInt8)"


def quantize_static_int8(source: Path, target: Path, batches: Sequence[Sequence[Any]],
                         names: Sequence[str], reduce_range: bool | None = None) -> str:
    """Static int8 quantisation (QDQ) with activation ranges calibrated on ``batches``;
    ``reduce_range`` as in :func:`quantize_dynamic_int8`."""
    require_onnxruntime()
    if reduce_range is None:
        reduce_range = _int8_saturates_here()
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = iter([dict(zip(names, b, strict=True)) for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    try:
        with quiet():
            quantize_static(str(source), str(target), Reader(), activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, reduce_range=reduce_range)
    except Exception as exc:
        raise UnsupportedError(f"onnxruntime static quantisation failed: {_first_line(exc)}") from None
    reduced = f", {_REDUCED}" if reduce_range else ""
    return (f"onnxruntime.quantization.quantize_static (QDQ, QInt8; {len(batches)} random "
            f"batches{reduced})")


def inference_session(path: Path, platform: str, threads: int | None) -> Any:
    """An InferenceSession for ``path`` on ``platform`` with ``threads`` intra-op threads."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=providers_for(platform))
    except UnsupportedError:
        raise
    except Exception as exc:
        raise UnsupportedError(f"onnxruntime could not load the model: {_first_line(exc)}") from None


def input_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]
