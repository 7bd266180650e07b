"""Bring your own model, safely.

Accepted, in order of safety:

- a built-in workload name (``resnet50``);
- a torch.export program (``.pt2``, ``torch.export.save``);
- a TorchScript archive (``torch.jit.save``);
- a Python factory ``package.module:function`` (or ``path/to/file.py:function``) returning a
  module, or ``(module, example_inputs)``; optionally with a safetensors state dict to load;
- a full pickle (the seeds' ``torch.save(model)`` then ``torch.load``) **only** with
  ``trust_pickle=True``: unpickling runs whatever code the file names.

Any other ``.pt``/``.pth`` file is opened with ``torch.load(weights_only=True)``, whose
restricted unpickler refuses to call arbitrary code; a file that needs more is refused with
an explanation. A ``.pt2`` (whatever its name) loads with nothing unpickled beyond
weights-only and nothing in it run, where ``torch.export.load`` alone would unpickle fully and
evaluate strings from the archive (:func:`chipfit.workloads.pickles.load_exported`); archives
are also scanned first, so a pickle naming anything but tensor-rebuilding globals is refused
before any loader reads it.

User code (a factory, a forward) and user files fail in every way: each failure becomes one
InvalidInputError (or OutOfMemoryError) naming the model and the cause, never a traceback.
Nothing here downloads anything.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import os
import re
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError, OutOfMemoryError, UnsafeFileError, UnsupportedError
from chipfit.paths import check_user_file
from chipfit.results import Cost
from chipfit.workloads.base import Prepared, Workload

__all__ = ["InputSpec", "UserModel", "UserWorkload", "first_tensor", "load_model", "parse_input",
           "user_output_to_stderr"]

_INPUT = re.compile(r"^(?P<shape>\d+(?:x\d+)*)(?::(?P<dtype>[a-z0-9]+))?$")
_INPUT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4,
             "bool": 1}
#: No input has more elements than this (2^48, 256 Ti): beyond it sizes overflow int64
#: arithmetic in the frameworks' allocators, and no machine holds it anyway.
MAX_INPUT_ELEMENTS = 2**48
_MAX_DIMS = 8
MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".bin", ".pkl", ".zip")
PICKLE_RISK = (
    "{path} is a full pickle (the torch.save(model) pattern); loading it runs whatever code "
    "the file names, so chipfit refuses it by default. Save the model with torch.jit.save or "
    "torch.export.save, or pass a factory plus a safetensors state dict; re-run with "
    "--trust-pickle only if you trust where the file came from"
)


@dataclass(frozen=True)
class InputSpec:
    """One model input: shape with the batch first, and dtype (``1x3x224x224:float32``)."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __str__(self) -> str:
        return "x".join(map(str, self.shape)) + f":{self.dtype}"

    def nbytes(self, batch: int | None = None) -> int:
        """Bytes of one input tensor at ``batch`` (default: the batch in the shape)."""
        elements = batch if batch is not None else self.shape[0]
        for d in self.shape[1:]:
            elements *= d
        return elements * _ITEMSIZE.get(self.dtype, 4)

    def make(self, batch: int, seed: int = 0) -> Any:
        import torch

        shape = (batch, *self.shape[1:])
        gen = torch.Generator().manual_seed(seed)
        if self.dtype in ("int64", "int32"):
            return torch.randint(0, 100, shape, generator=gen, dtype=getattr(torch, self.dtype))
        if self.dtype == "bool":
            return torch.ones(shape, dtype=torch.bool)
        return torch.randn(shape, generator=gen).to(getattr(torch, self.dtype))


def parse_input(text: str) -> InputSpec:
    """``1x3x224x224:float32`` -> InputSpec; every dimension positive, the total bounded."""
    match = _INPUT.match(str(text).strip().lower())
    if not match or len(match["shape"]) > 200:
        raise InvalidInputError(f"malformed --input {text!r}: use SHAPE[:DTYPE] with the batch "
                                "first, e.g. 1x3x224x224:float32 or 1x128:int64")
    dtype = match["dtype"] or "float32"
    if dtype not in _INPUT_DTYPES:
        from chipfit.errors import UnknownNameError

        raise UnknownNameError("input dtype", dtype, _INPUT_DTYPES)
    shape = tuple(int(d) for d in match["shape"].split("x"))
    if len(shape) > _MAX_DIMS:
        raise InvalidInputError(f"--input {text!r} has {len(shape)} dimensions; at most "
                                f"{_MAX_DIMS} are supported")
    if min(shape) <= 0:
        raise InvalidInputError(f"--input {text!r}: every dimension must be positive")
    elements = 1
    for d in shape:
        elements *= d
    if elements > MAX_INPUT_ELEMENTS:
        raise InvalidInputError(f"--input {text!r} has {elements:.3g} elements, more than any "
                                f"machine holds (limit {MAX_INPUT_ELEMENTS:.3g}); check the shape")
    return InputSpec(shape, dtype)


@dataclass(frozen=True)
class UserModel:
    """A loaded model: the module, example input specs, and where it came from."""

    name: str
    module: Any
    inputs: tuple[InputSpec, ...]
    origin: str  # export | torchscript | factory | pickle | module
    static_batch: int | None = None  # exported programs without a dynamic batch dimension
    reload: Callable[[], Any] | None = None  # a fresh copy (deepcopy breaks TorchScript params)
    notes: tuple[str, ...] = ()  # what loading changed (a weights dtype converted, ...)

    def fresh(self) -> Any:
        """An independent copy of the module, safe to move and train."""
        return self.reload() if self.reload is not None else copy.deepcopy(self.module)


def _one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception from user code, short enough for one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:200]


_QUIET_LOCK = threading.Lock()
_quiet: list[Any] = []  # [saved fd 1 (or None), saved sys.stdout] while any level is active
_quiet_depth = [0]


@contextlib.contextmanager
def user_output_to_stderr() -> Iterator[None]:
    """While user model code runs, whatever it prints goes to stderr, so stdout carries only
    chipfit's own output (``--json``): Python's ``print`` (``sys.stdout``) and everything
    written to file descriptor 1 (TorchScript's ``print`` runs in C++). Nests, and threads
    may overlap: the outermost level moves the streams and the last one out puts them back,
    after flushing what the model left in the buffers into stderr."""
    import sys

    with _QUIET_LOCK:
        _quiet_depth[0] += 1
        if _quiet_depth[0] == 1:
            _flush_all()  # chipfit's own output so far stays on stdout
            try:
                saved = os.dup(1)
                os.dup2(2, 1)
            except OSError:  # no file descriptors to move (an embedded interpreter)
                saved = None
            _quiet[:] = [saved, sys.stdout]
            sys.stdout = sys.stderr
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth[0] -= 1
            if _quiet_depth[0] == 0:
                _flush_all()  # what the model printed goes out while fd 1 is still stderr
                saved, sys.stdout = _quiet
                if saved is not None:
                    os.dup2(saved, 1)
                    os.close(saved)
                _quiet.clear()


def _flush_all() -> None:
    import ctypes
    import sys

    for stream in {id(s): s for s in (sys.stdout, sys.__stdout__) if s is not None}.values():
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):  # C stdio buffers (std::cout shares them)
        ctypes.CDLL(None).fflush(None)


def first_tensor(out: Any, name: str) -> Any:
    """The tensor a model's output leads with (a tensor; the first item of a tuple or list;
    the first value of a dict; a ``ModelOutput``'s logits), else a one-line error that says
    what the forward returned."""
    import torch

    value = out
    while isinstance(value, (tuple, list)) and value:
        value = value[0]
    if isinstance(value, dict) and value:
        value = next(iter(value.values()))
    if not isinstance(value, torch.Tensor) and isinstance(getattr(value, "logits", None),
                                                           torch.Tensor):
        value = value.logits
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"{name}'s forward returned {_returned(out)}, not a tensor: "
                                "return a tensor, or a tuple or dict whose first item is one")
    return value


def _returned(out: Any) -> str:
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} holding no tensor first"
    return "None" if out is None else f"a {type(out).__name__}"


def _load_factory(spec: str) -> Any:
    target, _, func = spec.rpartition(":")
    if not target or not func.isidentifier():
        raise InvalidInputError(f"malformed factory {spec!r}: use package.module:function or "
                                "path/to/file.py:function")
    try:
        if target.endswith(".py"):
            path = check_user_file(target, "factory file")  # a FIFO would block the import
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except ImportError as exc:
        raise InvalidInputError(f"cannot import factory module {target!r}: {exc}") from None
    except (InvalidInputError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - user code: SyntaxError, SystemExit, anything
        raise InvalidInputError(f"factory module {target} failed to load ({_one_line(exc)})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise InvalidInputError(f"{target} has no callable {func!r}")
    try:
        return fn()
    except KeyboardInterrupt:
        raise
    except MemoryError:
        raise OutOfMemoryError(f"factory {spec} ran out of memory building the model: it "
                               "does not fit in this machine's memory") from None
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit
        raise InvalidInputError(f"factory {spec} raised {_one_line(exc)}") from None


def _tensor_specs(values: Any) -> tuple[InputSpec, ...]:
    values = values if isinstance(values, (tuple, list)) else (values,)
    return tuple(InputSpec(tuple(v.shape), str(v.dtype).removeprefix("torch.")) for v in values)


def _from_factory(spec: str, weights: str | None
                  ) -> tuple[Any, tuple[InputSpec, ...], tuple[str, ...]]:
    import torch

    made = _load_factory(spec)
    if isinstance(made, tuple) and len(made) != 2:
        raise InvalidInputError(f"factory {spec} returned a tuple of {len(made)}; return a "
                                "module, or (module, example_inputs)")
    module, inputs = (made if isinstance(made, tuple) else (made, None))
    if not isinstance(module, torch.nn.Module):
        what = f"the class {module.__name__}" if isinstance(module, type) else type(module).__name__
        raise InvalidInputError(f"factory {spec} returned {what}, not a torch module instance")
    notes = _load_weights(module, weights) if weights else ()
    try:
        specs = _tensor_specs(inputs) if inputs is not None else ()
    except (AttributeError, TypeError):
        raise InvalidInputError(f"factory {spec} returned example inputs that are not tensors; "
                                "return (module, (tensor, ...)) or give --input") from None
    return module, specs, notes


def _load_weights(module: Any, weights: str) -> tuple[str, ...]:
    """Load a safetensors state dict into ``module``; notes say what was converted."""
    path = check_user_file(weights, "weights file")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # SafetensorError (truncated, garbage), OSError, ...
        raise InvalidInputError(f"{weights} is not a readable safetensors file "
                                f"({_one_line(exc)})") from None
    own = dict(module.state_dict())
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if shapes:
        raise InvalidInputError(f"{weights} does not match the factory's model: shapes differ "
                                f"({'; '.join(shapes[:3])})")
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except Exception as exc:
        raise InvalidInputError(f"{weights} does not load into the factory's model "
                                f"({_last_error_line(exc)})") from None
    if missing or unexpected:
        raise InvalidInputError(f"{weights} does not match the factory's model: missing "
                                f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
    converted = sorted({f"{str(v.dtype).removeprefix('torch.')} -> "
                        f"{str(own[k].dtype).removeprefix('torch.')}"
                        for k, v in state.items() if k in own and v.dtype != own[k].dtype})
    return tuple(f"{weights}: weights converted {c} to match the model" for c in converted)


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except zipfile.BadZipFile:
        return []


def _load_file(path: Path, trust_pickle: bool) -> tuple[Any, tuple[InputSpec, ...], str, int | None]:
    from chipfit.workloads.pickles import LOAD_LOCK

    # The loaders warn about protocols and legacy formats on stderr; what matters reaches the
    # user as the one-line error below. One load at a time: the export loader's guard switches
    # process-wide settings (see chipfit.workloads.pickles.weights_only_loading).
    with LOAD_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _load_file_quietly(path, trust_pickle)


def _load_file_quietly(path: Path, trust_pickle: bool
                       ) -> tuple[Any, tuple[InputSpec, ...], str, int | None]:
    import torch

    from chipfit.workloads import pickles

    if not path.is_file():
        raise InvalidInputError(f"model file {path} is not a regular file")
    names = _zip_names(path)
    if any(n.endswith("models/model.json") or n.endswith("archive_format") for n in names):
        if not trust_pickle:  # defence in depth: the loader below unpickles weights-only
            pickles.check_model_file(path)
        program, module = pickles.load_exported(path, trust_pickle=trust_pickle)
        try:
            return _exported(program, module)
        except Exception as exc:
            raise InvalidInputError(f"{path} is a damaged torch.export archive "
                                    f"({_last_error_line(exc)})") from None
    if any("/code/" in n for n in names):
        if not trust_pickle:  # torch.jit.load's C++ unpickler imports no Python globals
            pickles.check_model_file(path, torchscript=True)
        try:
            return torch.jit.load(str(path), map_location="cpu"), (), "torchscript", None
        except Exception as exc:
            raise InvalidInputError(f"{path} is a damaged TorchScript archive "
                                    f"({_last_error_line(exc)})") from None
    try:
        value = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler refused, or not a torch file at all
        if not trust_pickle:
            finding = pickles.scan_file(path)
            if not finding.globals and not finding.unverifiable:
                raise InvalidInputError(f"{path} is not a model file chipfit can read "
                                        f"({_last_error_line(exc)}); give a .pt2, TorchScript "
                                        "file or a factory") from None
            raise UnsafeFileError(PICKLE_RISK.format(path=path)) from None
        try:
            value = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise InvalidInputError(f"{path} could not be unpickled ({_one_line(exc2)})") from None
        if not isinstance(value, torch.nn.Module):
            raise InvalidInputError(f"{path} holds a {type(value).__name__}, not a module") from exc
        return value, (), "pickle", None
    raise InvalidInputError(f"{path} holds only weights ({type(value).__name__}); give the "
                            "model's code as --factory package.module:function with --weights")


def _exported(program: Any, module: Any) -> tuple[Any, tuple[InputSpec, ...], str, int | None]:
    import torch

    class _Exported(torch.nn.Module):
        """An exported graph; its module refuses train()/eval(), which are moot for it."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def train(self, mode: bool = True) -> _Exported:
            self.training = mode
            return self

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

    inputs: tuple[InputSpec, ...] = ()
    static = None
    example = getattr(program, "example_inputs", None)
    if example:
        args = example[0]
        inputs = _tensor_specs(args)
        first = args[0] if args else None
        if first is not None and all(isinstance(d, int) for d in first.shape):
            static = int(first.shape[0]) if first.dim() else None
    return _Exported(module), inputs, "export", static


def load_model(spec: str, *, inputs: tuple[str, ...] = (), weights: str | None = None,
               trust_pickle: bool = False, name: str | None = None) -> UserModel:
    """Load a user model from ``spec`` (a file or ``module:function``), safely by default."""
    parsed = tuple(parse_input(t) for t in inputs)
    notes: tuple[str, ...] = ()
    path = Path(spec)
    if path.suffix in MODEL_SUFFIXES or path.exists():
        if not path.exists():
            raise InvalidInputError(f"model file {spec} does not exist")
        if weights:
            raise InvalidInputError("--weights goes with --factory, not with a model file")
        with user_output_to_stderr():  # loading runs the model's code (TorchScript, export)
            module, found, origin, static = _load_file(path, trust_pickle)

        def reload() -> Any:
            with user_output_to_stderr():
                return _load_file(path, trust_pickle)[0]
    elif ":" in spec:
        with user_output_to_stderr():  # importing the factory's module and calling it
            module, found, notes = _from_factory(spec, weights)
        origin, static = "factory", None

        def reload() -> Any:
            with user_output_to_stderr():
                return _from_factory(spec, weights)[0]
    else:
        from chipfit.errors import UnknownNameError
        from chipfit.workloads import all_workloads

        raise UnknownNameError("workload (or model file / module:function)", spec,
                               [w.name for w in all_workloads()])
    specs = parsed or found
    if not specs:
        raise InvalidInputError(f"{spec}: say what the model takes, e.g. --input 1x3x224x224:float32")
    return UserModel(name or (path.stem if origin != "factory" else _factory_name(spec)),
                     module, specs, origin, static, reload, notes)


def _factory_name(spec: str) -> str:
    """``pkg.models:make`` -> ``models.make``: a factory's bare function name ("make",
    "build", "create") says nothing about the model, its module does. A module given as a
    file (``mymodel.py:make``, ``src/mymodel.py:make``) is named by the file's stem
    (``mymodel.make``), not by its ``.py`` suffix."""
    module, _, function = spec.rpartition(":")
    if module.endswith(".py") or "/" in module or "\\" in module:
        return f"{Path(module).stem}.{function}"
    return f"{module.rpartition('.')[2]}.{function}"


def expected_inputs(module: Any) -> str:
    """Words for what the first layer of ``module`` expects, for wrong-shape errors."""
    for _, layer in module.named_modules():
        kind = getattr(layer, "original_name", type(layer).__name__)
        if kind in ("Conv1d", "Conv2d", "Conv3d") and hasattr(layer, "in_channels"):
            return f"{layer.in_channels} input channels ({kind}: batch x channels x spatial dims)"
        if kind == "Linear" and hasattr(layer, "in_features"):
            return f"a last dimension of {layer.in_features} features (Linear)"
        if kind in ("LSTM", "GRU", "RNN") and hasattr(layer, "input_size"):
            return f"{layer.input_size} features per step ({kind})"
        if kind == "Embedding" and hasattr(layer, "num_embeddings"):
            return f"integer token ids below {layer.num_embeddings} (Embedding)"
        weight = getattr(layer, "weight", None)
        if kind in ("Conv2d", "Linear") and weight is not None:  # TorchScript keeps no attrs
            dims = tuple(weight.shape)
            return (f"{dims[1]} input channels ({kind})" if kind == "Conv2d"
                    else f"a last dimension of {dims[1]} features (Linear)")
    return "an input shape it accepts (its first layer could not be inspected)"


def _last_error_line(exc: BaseException) -> str:
    """The informative line of an error (TorchScript puts the real one last)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    errors = [line for line in lines if "Error" in line or "shape" in line]
    return (errors[-1] if errors else lines[-1])[:200]


_ALLOCATION_HINTS = ("can't allocate memory", "out of memory", "not enough memory",
                     "failed to allocate", "std::bad_alloc", "cannot allocate memory")


def is_allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out (torch's allocators and Python's own)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or any(
        hint in text for hint in _ALLOCATION_HINTS)


#: Inputs larger than this are first tried on fake tensors (shapes only, no memory), so a
#: wrong shape is refused before gigabytes of random input are made.
_FAKE_FIRST_BYTES = 256 * 2**20


def _check_shapes_without_memory(model: UserModel, batch: int, given: str) -> None:
    """Run the forward on fake tensors; a shape error there is the user's. Where fake
    tensors cannot run the model (data-dependent shapes, TorchScript, custom ops) nothing
    is concluded and the real check decides."""
    import logging

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    noisy = logging.getLogger("torch._subclasses.fake_tensor")  # logs each failed meta kernel
    level, noisy.level = noisy.level, logging.CRITICAL + 1
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.inference_mode(), \
                user_output_to_stderr():
            args = [torch.empty((batch, *s.shape[1:]), dtype=getattr(torch, s.dtype))
                    for s in model.inputs]
            model.module.eval()
            model.module(*args)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        if _fake_says_wrong_shape(exc):
            raise InvalidInputError(f"{model.name} rejected input {given}: it expects "
                                    f"{_expected(model.module)} ({_last_error_line(exc)})") from None
    finally:
        noisy.level = level


_FAKE_LIMITS = ("fake", "storage", "data pointer", "data-dependent", "meta", "symbolic", "item()")


def _fake_says_wrong_shape(exc: Exception) -> bool:
    """A plain error from the model's own ops (a shape check), not a limit of fake tensors."""
    module = type(exc).__module__
    text = str(exc).lower()
    return (isinstance(exc, (RuntimeError, ValueError, IndexError))
            and not module.startswith(("torch._subclasses", "torch.fx", "torch._dynamo"))
            and not any(word in text for word in _FAKE_LIMITS))


def _expected(module: Any) -> str:
    try:
        return expected_inputs(module)
    except Exception:  # noqa: BLE001 - a user module may break introspection too
        return "an input shape it accepts"


def check_inputs(model: UserModel, batch: int = 1, memory_limit: int | None = None) -> None:
    """Run one inference on the CPU; a shape mismatch becomes a clear usage error, memory
    running out an OutOfMemoryError ("does not fit"). Inputs larger than ``memory_limit``
    bytes (the host's, see :func:`chipfit.execute.probe.host_memory_limit`) are refused
    before anything is allocated."""
    import torch

    batch = model.static_batch or batch
    given = ", ".join(str(s) for s in model.inputs)
    need, limit = sum(s.nbytes(batch) for s in model.inputs), memory_limit
    if limit is not None and need > limit:
        raise InvalidInputError(f"input {given} needs {need / 2**30:.3g} GiB, more than the "
                                f"{limit / 2**30:.3g} GiB this host allows; check the shape")
    if need > _FAKE_FIRST_BYTES:
        _check_shapes_without_memory(model, batch, given)
    try:
        args = [s.make(batch) for s in model.inputs]
        with torch.inference_mode(), user_output_to_stderr():
            model.module.eval()
            out = model.module(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        if is_allocation_failure(exc):
            raise OutOfMemoryError(f"{model.name} does not fit in this machine's memory with "
                                   f"input {given} ({_last_error_line(exc)})") from None
        first = _last_error_line(exc)
        raise InvalidInputError(f"{model.name} rejected input {given}: it expects "
                                f"{_expected(model.module)} ({first})") from None
    first_tensor(out, model.name)  # a forward that returns no tensor cannot be timed or traced


def _loss(out: Any) -> Any:
    return first_tensor(out, "the model").float().pow(2).mean()


def _head_prefix(module: Any) -> tuple[str, ...]:
    """The last child holding parameters: the part transfer learning retrains."""
    owners = [name for name, child in module.named_children() if any(True for _ in child.parameters())]
    if owners:
        return (owners[-1],)
    names = [n for n, _ in module.named_parameters()]
    return (names[-1].rsplit(".", 1)[0],) if names else ()


class UserWorkload(Workload):
    """A user's model as a workload: batch is the size axis."""

    family = "user"
    axis = "batch"
    modes = ("inference", "train", "finetune")
    default_sizes = ("1", "2", "4", "8", "16", "32")
    quick_sizes = ("1", "8")

    def __init__(self, model: UserModel) -> None:
        self.model = model
        self.name = model.name
        self.description = f"user model ({model.origin}): inputs {', '.join(map(str, model.inputs))}"
        if model.static_batch:
            self.default_sizes = self.quick_sizes = (str(model.static_batch),)
        self._costs: dict[tuple[str, str, str], Cost] = {}

    def parse_size(self, text: str) -> str:
        size = super().parse_size(text)
        if self.model.static_batch and int(size) != self.model.static_batch:
            raise InvalidInputError(f"{self.name} was exported for batch {self.model.static_batch} "
                                    "only; re-export it with a dynamic batch dimension")
        return size

    def _inputs(self, batch: int) -> tuple[Any, ...]:
        return tuple(s.make(batch, seed=i) for i, s in enumerate(self.model.inputs))

    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        key = (size, dtype, mode)
        if key not in self._costs:
            self._costs[key] = self._count(int(size), mode)
        return self._costs[key]

    def _count(self, batch: int, mode: str) -> Cost:
        import torch

        from chipfit.cost.records import WorkloadCosts
        from chipfit.cost.torch import tracer

        module = self.model.fresh().eval()
        args = self._inputs(batch)
        trace = tracer()
        with trace, torch.no_grad(), user_output_to_stderr():
            first_tensor(module(*args), self.name)
        # the matrix FLOPs of the forward pass (the convention of chipfit.cost.records)
        forward = WorkloadCosts("call", "", "", "", "torch", "real", tuple(trace.ops)).matrix_flops
        flops = forward if mode == "inference" else 3 * forward  # backward ~ 2x forward
        param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
        input_bytes = sum(a.numel() * a.element_size() for a in args)
        return Cost(flops=flops, bytes_moved=float(param_bytes + input_bytes),
                    transfer_bytes=float(input_bytes), kernels=0)

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int:
        params = sum(p.numel() * 4 for p in self.model.module.parameters())
        inputs = sum(a.numel() * a.element_size() for a in self._inputs(int(size)))
        # weights (+ gradients + SGD momentum when training) and a generous activation allowance
        return params * (1 if mode == "inference" else 3) + inputs * 64

    def inference_module(self, size: str) -> tuple[Any, tuple[Any, ...], int, tuple[tuple[str, str], ...]]:
        from chipfit.workloads.training import count_params, model_bytes

        module = self.model.fresh().eval()
        details = (("params", str(count_params(module))), ("trainable_params", "0"),
                   ("model_bytes", str(model_bytes(module))))
        return module, self._inputs(int(size)), int(size), details

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        from chipfit.workloads.training import prepared, torch_model_call

        if self.model.origin == "export" and mode != "inference":
            raise UnsupportedError("exported programs are inference graphs; train a module or "
                                   "TorchScript model instead")
        module = self.model.fresh()
        fn = torch_model_call(module, mode, dtype, session.handle, _loss, _head_prefix(module))
        return prepared(fn, self._inputs(int(size)), module, int(size), mode)

