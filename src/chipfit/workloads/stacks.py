"""Local software stacks: the same model run by eager torch, torch.compile, ONNX Runtime, int8.

A stack is an axis of a measurement, like its device and dtype (``Job.stack``,
``Measurement.stack``). Stacks other than a backend's default take the workload's inference
module (:meth:`~chipfit.workloads.base.Workload.inference_module`) and turn it into a call:

- ``eager``: the workload's own builder (torch eager; what chipfit always measured);
- ``compile``: ``torch.compile`` (inductor) of the module, under the same autocast as eager;
- ``onnxruntime``: ONNX export (``torch.onnx.export(dynamo=True)``) run by an ONNX Runtime
  session on the execution provider of the device (:mod:`chipfit.backends.onnxruntime`);
- ``int8``: the exported model quantised by ONNX Runtime's ``quantize_dynamic`` (int8
  weights, activations quantised at run time), run by ONNX Runtime;
- ``int8-torch``: ``torch.ao.quantization.quantize_dynamic`` of the module's ``Linear`` and
  ``LSTM`` layers (convolutions stay float32: dynamic quantisation has no convolutions);
- ``int8-static``: ONNX Runtime static quantisation (QDQ, int8 activations) whose activation
  ranges are calibrated on *random* inputs: labelled so, because its accuracy on real data is
  not what this measures;
- ``jit``: JAX's and TensorFlow's only stack (every JAX workload is a jitted program, every
  TensorFlow one a ``tf.function(jit_compile=True)``: XLA in both).

Building a stack is timed apart from the steady state (``Prepared.compile_s``: export,
quantisation, session creation and the first call, where ``torch.compile`` compiles), and
its output is compared with eager's on the same inputs (``max_abs_diff``, and ``max_rel_diff``
= max |stack - eager| / max |eager|). An export or compile that fails raises
:class:`~chipfit.errors.UnsupportedError`, which the runner records as ``unsupported: <reason>``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chipfit.errors import UnknownNameError, UnsupportedError
from chipfit.workloads.base import Prepared

__all__ = ["LOCAL_STACKS", "STACK_LABELS", "build_stack", "default_stack", "device_stacks",
           "forward_module",
           "parse_stacks", "stacks_for"]

LOCAL_STACKS = ("eager", "compile", "onnxruntime", "int8", "int8-torch", "int8-static", "jit")
STACK_LABELS = {
    "eager": "torch eager", "compile": "torch.compile (inductor)", "onnxruntime": "ONNX Runtime",
    "int8": "ONNX Runtime int8 (dynamic)", "int8-torch": "torch int8 (dynamic, Linear/LSTM)",
    "int8-static": "ONNX Runtime int8 (static, calibrated on random inputs)", "jit": "JAX jit",
}
_ALIASES = {"torch": "eager", "torch.compile": "compile", "inductor": "compile",
            "ort": "onnxruntime", "onnx": "onnxruntime", "ort-int8": "int8",
            "onnxruntime-int8": "int8", "torch-int8": "int8-torch", "xla": "jit"}
_STACKS_BY_BACKEND = {"torch": LOCAL_STACKS[:-1], "jax": ("jit",), "tensorflow": ("jit",)}
CALIBRATION_BATCHES = 4


def parse_stacks(texts: Sequence[str]) -> list[str]:
    """Canonical stack names, in order, without repeats; ``all`` is every local stack."""
    out: list[str] = []
    for text in (t.strip().lower() for t in texts if t.strip()):
        names = LOCAL_STACKS if text == "all" else (_ALIASES.get(text, text),)
        for name in names:
            if name not in LOCAL_STACKS:
                raise UnknownNameError("stack", text, LOCAL_STACKS + tuple(_ALIASES))
            if name not in out:
                out.append(name)
    return out


def default_stack(backend: str) -> str:
    """The stack a backend runs without being asked: torch eager, JAX and TensorFlow jit."""
    return "jit" if backend in ("jax", "tensorflow") else "eager"


def stacks_for(backend: str, wanted: Sequence[str]) -> list[str]:
    """The stacks of ``wanted`` that ``backend`` runs; a backend's default stands for
    ``eager`` (so ``--stacks eager,compile`` still measures JAX once, as ``jit``)."""
    own = _STACKS_BY_BACKEND.get(backend, ("eager",))
    default = default_stack(backend)
    out = [s for s in wanted if s in own]
    if default not in out and ("eager" in wanted or default in wanted):
        out.insert(0, default)
    return out


def device_stacks(devices: Sequence[Any], wanted: Sequence[str]) -> list[tuple[Any, str]]:
    """(device, stack) pairs in run order: stack by stack as asked, every device at each;
    backends' default stacks (torch eager, JAX jit) share one slot, so they keep the
    devices' order as they did before stacks existed."""
    per_device = [(ref, stacks_for(ref.backend, wanted)) for ref in devices]

    def slot(stack: str) -> str:
        return "" if stack in ("eager", "jit") else stack

    slots = dict.fromkeys(slot(s) for s in [*wanted, *(s for _, v in per_device for s in v)])
    return [(ref, stack) for want in slots for ref, stacks in per_device for stack in stacks
            if slot(stack) == want]


def forward_module(model: Any, forward: Callable[..., Any]) -> Any:
    """An ``nn.Module`` whose ``forward(*inputs)`` is ``forward(model, *inputs)`` (exportable)."""
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return forward(self.model, *inputs)

    return Forward().eval()


def build_stack(workload: Any, backend: str, stack: str, size: str, dtype: str, mode: str,
                session: Any) -> Prepared:
    """A :class:`Prepared` call of ``workload`` on ``stack`` (the backend's default stack:
    the workload's own builder)."""
    if stack == default_stack(backend):
        return workload.build(backend, size, dtype, mode, session)
    if stack not in _BUILDERS or backend != "torch":
        raise UnsupportedError(f"the {stack} stack does not run on {backend}")
    if mode != "inference":
        raise UnsupportedError(f"the {stack} stack is measured for inference only")
    module, inputs, items, details = workload.inference_module(size)
    import torch

    from chipfit.workloads.training import _on, autocast

    device = session.handle
    module = _on(module, device).eval()
    args = tuple(a.to(device) for a in inputs)
    with torch.inference_mode(), autocast(torch, device.type, dtype):
        reference = module(*args)
    start = time.perf_counter()
    _EXPORTS["current"] = (id(workload), workload.name, size)
    fn, extra = _BUILDERS[stack](module, args, dtype, session)
    out = fn(*args)
    session.wait(out)
    compile_s = time.perf_counter() - start
    abs_diff, rel_diff = agreement(reference, out)
    return Prepared(fn, tuple(inputs), items=items,
                    details=details + (("stack", STACK_LABELS[stack]),) + extra,
                    compile_s=compile_s, max_abs_diff=abs_diff, max_rel_diff=rel_diff)


def agreement(reference: Any, out: Any) -> tuple[float, float]:
    """(max |out - reference|, that over max |reference|), both in float64."""
    import numpy as np

    ref = _numpy(reference)
    got = _numpy(out)
    if ref.shape != got.shape:
        raise UnsupportedError(f"the stack's output has shape {got.shape}, eager's {ref.shape}")
    diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff, (diff / scale if scale else (0.0 if diff == 0 else float("inf")))


def _numpy(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (list, tuple)):
        value = value[0]
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


# --------------------------------------------------------------------------- builders

Built = tuple[Callable[..., Any], tuple[tuple[str, str], ...]]


def _compile(module: Any, args: tuple[Any, ...], dtype: str, session: Any) -> Built:
    import torch

    from chipfit.workloads.training import autocast

    try:
        compiled = torch.compile(module)
    except Exception as exc:
        raise UnsupportedError(f"torch.compile failed: {_first_line(exc)}") from None
    device_type = session.handle.type

    def call(*inputs: Any) -> Any:
        with torch.inference_mode(), autocast(torch, device_type, dtype):
            return compiled(*inputs)

    def first(*inputs: Any) -> Any:
        try:
            return call(*inputs)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # inductor/dynamo errors have many types
            raise UnsupportedError(f"torch.compile failed: {_first_line(exc)}") from None

    return _first_call_then(first, call), (("compiler", f"torch.compile inductor, torch "
                                                        f"{torch.__version__}"),)


def _first_call_then(first: Callable[..., Any], then: Callable[..., Any]) -> Callable[..., Any]:
    """A call that runs ``first`` once (translating its errors), then ``then``."""
    state = {"done": False}

    def call(*inputs: Any) -> Any:
        if state["done"]:
            return then(*inputs)
        out = first(*inputs)
        state["done"] = True
        return out

    return call


def _float32_only(stack: str, dtype: str) -> None:
    if dtype != "float32":
        raise UnsupportedError(f"the {stack} stack runs float32 models here ({dtype} asked); "
                               "its int8 variants quantise from float32")


def _ort_call(path: Path, session: Any) -> tuple[Callable[..., Any], Any]:
    import torch

    from chipfit.backends import onnxruntime as ort

    sess = ort.inference_session(path, session.handle.type, torch.get_num_threads())
    names = ort.input_names(sess)

    def call(*inputs: Any) -> Any:
        # On an accelerator the inputs come back to host numpy each call (the session copies
        # them in again): that round trip is part of what this stack's time includes there.
        feeds = {n: x.detach().cpu().numpy() for n, x in zip(names, inputs, strict=True)}
        return sess.run(None, feeds)[0]

    return call, sess


def _ort_details(sess: Any, exporter: str, extra: str = "") -> tuple[tuple[str, str], ...]:
    import onnxruntime

    out = (("exporter", exporter), ("onnxruntime", onnxruntime.__version__),
           ("providers", ",".join(sess.get_providers())))
    return out + ((("quantization", extra),) if extra else ())


#: The last float32 export, so the onnxruntime, int8 and int8-static stacks of one workload
#: and size export once per process. Keyed by the workload object's id (a re-registered user
#: model is a new object), its name and the size; one entry, replaced by the next export.
_EXPORTS: dict[str, Any] = {}


def _export(module: Any, args: tuple[Any, ...], path: Path) -> str:
    """Export ``module`` to ``path``, reusing this process's last export of the same job."""
    from chipfit.backends import onnxruntime as ort

    key = _EXPORTS.get("current")
    cached = _EXPORTS.get("model")
    if key is not None and cached is not None and cached[0] == key:
        path.write_bytes(cached[1])
        return cached[2] + " (reused from this run's previous export)"
    exporter = ort.export_onnx(module, args, path)
    _EXPORTS["model"] = (key, path.read_bytes(), exporter)
    return exporter


def _onnxruntime(module: Any, args: tuple[Any, ...], dtype: str, session: Any) -> Built:
    from chipfit.backends import onnxruntime as ort

    _float32_only("onnxruntime", dtype)
    ort.require_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="chipfit-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        exporter = _export(module, args, path)
        call, sess = _ort_call(path, session)
    return call, _ort_details(sess, exporter)


def _int8(module: Any, args: tuple[Any, ...], dtype: str, session: Any) -> Built:
    from chipfit.backends import onnxruntime as ort

    _float32_only("int8", dtype)
    ort.require_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="chipfit-onnx-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        exporter = _export(module, args, source)
        how = ort.quantize_dynamic_int8(source, target)
        call, sess = _ort_call(target, session)
    return call, _ort_details(sess, exporter, how)


def _int8_static(module: Any, args: tuple[Any, ...], dtype: str, session: Any) -> Built:
    from chipfit.backends import onnxruntime as ort

    _float32_only("int8-static", dtype)
    ort.require_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="chipfit-onnx-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        exporter = _export(module, args, source)
        probe = ort.inference_session(source, "cpu", 1)
        how = ort.quantize_static_int8(source, target, _random_batches(args),
                                       ort.input_names(probe))
        call, sess = _ort_call(target, session)
    details = _ort_details(sess, exporter, how + "; calibrated on random inputs, so its "
                                                  "accuracy on real data is not measured")
    return call, details


def _random_batches(args: tuple[Any, ...]) -> list[list[Any]]:
    """Seeded random inputs shaped like ``args`` (tokens: ids below the inputs' maximum)."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    batches = []
    for _ in range(CALIBRATION_BATCHES):
        batch = []
        for a in args:
            if a.dtype.is_floating_point:
                batch.append(torch.randn(a.shape, generator=gen).to(a.dtype).cpu().numpy())
            else:
                high = int(a.max().item()) + 1 if a.numel() else 1
                batch.append(torch.randint(0, max(high, 1), a.shape, generator=gen,
                                           dtype=a.dtype).cpu().numpy())
        batches.append(batch)
    return batches


def _int8_torch(module: Any, args: tuple[Any, ...], dtype: str, session: Any) -> Built:
    import warnings

    import torch

    _float32_only("int8-torch", dtype)
    if session.handle.type != "cpu":
        raise UnsupportedError("torch dynamic int8 quantisation runs on the CPU only")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in torch 2.10+
            quantized = torch.ao.quantization.quantize_dynamic(
                module, {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
    except Exception as exc:
        raise UnsupportedError(f"torch dynamic quantisation failed: {_first_line(exc)}") from None

    def call(*inputs: Any) -> Any:
        with torch.inference_mode():
            return quantized(*inputs)

    return call, (("quantization", "torch.ao.quantization.quantize_dynamic (Linear, LSTM; "
                                   "qint8)"),)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:240]


_BUILDERS: dict[str, Callable[..., Built]] = {
    "compile": _compile, "onnxruntime": _onnxruntime, "int8": _int8, "int8-torch": _int8_torch,
    "int8-static": _int8_static,
}
