"""TensorFlow backend: CPU, GPU and (where TensorFlow itself lists them) TPU devices.

Programs are ``tf.function(jit_compile=True)``: XLA-compiled, the same compiler JAX uses and
the only way TensorFlow runs on a TPU, so a TensorFlow-vs-JAX comparison shows the framework
rather than two compilers (Keras 3 picks XLA on accelerators too, but not on CPU; chipfit keeps
one choice on every device so CPU and GPU numbers are comparable). The first call traces and
compiles; the timer records it apart from steady state (``Measurement.first_call_s``). The
stack is therefore ``jit``, as for JAX.

Fencing: GPUs run TensorFlow ops asynchronously, so a call may return before the device is
done. :meth:`_TfSession.wait` calls ``tf.test.experimental.sync_devices()`` (TensorFlow >=
2.13; it blocks until every device's pending ops finished), else forces a small reduction of
the output to the host. Nothing here assumes CUDA.

Threads: TensorFlow fixes its CPU thread pools when its runtime starts (the first op), after
which ``tf.config.threading`` refuses changes. Discovery only lists physical devices, which
does not start the runtime, so a fresh process (``--executor subprocess`` runs one per device)
can pin ``tensorflow:cpu@Nt`` (intra-op threads N, inter-op 1: ops one at a time, each on N
threads, as torch runs them); a process whose runtime already runs with another count gets a
one-line refusal saying so. A pin cannot be undone when the session closes (TensorFlow allows
no change after start-up); it lasts for the process.

TPU: TensorFlow lists TPU devices only once a TPU system is initialised through
``TPUClusterResolver`` (which may query a metadata server and takes the chips exclusively).
Discovery does not do that: it reports TPU devices TensorFlow already lists, and otherwise a
reason naming ``jax:tpu`` (chipfit's TPU path).

Importing this module imports no TensorFlow; :func:`import_tensorflow` does, quietly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

from chipfit.backends.base import Backend, Session
from chipfit.errors import InvalidInputError
from chipfit.hardware.cpu import maxrss_bytes, probe_cpu, rss_growth
from chipfit.results import DeviceInfo, Problem
from chipfit.spec import DeviceRef

__all__ = ["JIT_COMPILE", "TensorflowBackend", "compiled", "host_arrays", "import_tensorflow",
           "to_tensors"]

#: Every TensorFlow program chipfit builds is XLA-compiled (see the module docstring).
JIT_COMPILE = True
_PLATFORMS = {"cpu": "CPU", "gpu": "GPU", "tpu": "TPU"}
#: Lines TensorFlow's C++ start-up writes to stderr whatever TF_CPP_MIN_LOG_LEVEL says
#: (oneDNN's "custom operations are on" notice, absl's pre-initialisation warning).
_STARTUP_NOISE = (b"WARNING: All log messages before absl::InitializeLog()", b"I0000 ")


def import_tensorflow() -> Any:
    """Import TensorFlow (and Keras 3) with its start-up log noise kept off the terminal.

    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (warnings and info off) in this process and the
    workers it starts, never in the user's shell; a value the user set is kept. The notices
    TensorFlow prints regardless are filtered out of
    stderr while it imports; any other line it writes is passed on.
    """
    import sys

    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _filtered_stderr():
        import tensorflow as tf

        with contextlib.suppress(ImportError):
            import keras  # noqa: F401  (its import starts a second C++ library that logs too)
    return tf


@contextlib.contextmanager
def _filtered_stderr() -> Any:
    """Capture file descriptor 2 (TensorFlow's C++ writes there, not to ``sys.stderr``), then
    write back every line except TensorFlow's start-up notices."""
    import sys

    try:
        os.fstat(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as sink:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()  # Python-level writes made meanwhile land in the sink too
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().splitlines(True)
                    if not line.startswith(_STARTUP_NOISE)]
            if kept:
                os.write(2, b"".join(kept))


def _tree_map(fn: Callable[[Any], Any], value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_tree_map(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _tree_map(fn, v) for k, v in value.items()}
    return fn(value) if value is not None else value


def to_tensors(value: Any, device: str) -> Any:
    """Host arrays (a tree of them) as TensorFlow tensors placed on ``device``."""
    tf = import_tensorflow()

    def put(v: Any) -> Any:
        with tf.device(device):
            return tf.identity(tf.convert_to_tensor(v))

    return _tree_map(put, value)


def host_arrays(shapes: Any, dtype: str, seed: int) -> tuple[Any, ...]:
    """Seeded uniform [0, 1) numpy arrays of ``shapes`` in ``dtype`` (bfloat16 as TensorFlow's
    numpy bfloat16 type), for a builder's host inputs."""
    import numpy as np

    tf = import_tensorflow()
    rng = np.random.default_rng(seed)
    kind = tf.dtypes.as_dtype(dtype).as_numpy_dtype
    return tuple(rng.random(s, dtype=np.float32).astype(kind) for s in shapes)


def compiled(fn: Callable[..., Any], device: str) -> Callable[..., Any]:
    """``fn`` as an XLA-compiled ``tf.function`` that runs on ``device``."""
    tf = import_tensorflow()
    program = tf.function(fn, jit_compile=JIT_COMPILE, reduce_retracing=True)

    def call(*args: Any) -> Any:
        with tf.device(device):
            return program(*args)

    call.program = program  # type: ignore[attr-defined]
    return call


class _TfSession(Session):
    def __init__(self, ref: DeviceRef) -> None:
        tf = import_tensorflow()
        if ref.platform == "gpu":
            _memory_growth(tf)
        if ref.threads is not None:
            _pin_threads(tf, ref)
        super().__init__(ref, f"/{_PLATFORMS[ref.platform]}:{ref.index or 0}")
        self._tf = tf
        self.copies = ref.platform != "cpu"
        self._sync = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
        self._base_rss = self._base_maxrss = 0

    def wait(self, out: Any) -> None:
        if self._sync is not None:
            self._sync()
            return
        # TensorFlow < 2.13: copying one element of the output to the host waits for the
        # kernel that produced it (and, in stream order, for everything before it).
        leaves: list[Any] = []
        _tree_map(leaves.append, out)
        for leaf in leaves:
            if hasattr(leaf, "numpy"):
                self._tf.reduce_sum(self._tf.reshape(leaf, [-1])[:1]).numpy()

    def to_device(self, value: Any) -> Any:
        return to_tensors(value, self.handle)

    def to_host(self, value: Any) -> Any:
        return _tree_map(lambda v: v.numpy() if hasattr(v, "numpy") else v, value)

    def memory_reset(self) -> None:
        import psutil

        if self.ref.platform != "cpu":
            with contextlib.suppress(Exception):
                self._tf.config.experimental.reset_memory_stats(self._logical())
        self._base_rss = psutil.Process().memory_info().rss
        self._base_maxrss = maxrss_bytes()

    def memory_peak(self) -> tuple[int | None, str]:
        if self.ref.platform == "cpu":  # TensorFlow keeps no allocator stats for the CPU
            return rss_growth(self._base_rss, self._base_maxrss), "rss-growth"
        with contextlib.suppress(Exception):
            info = self._tf.config.experimental.get_memory_info(self._logical())
            return int(info["peak"]), "allocator-peak"
        return None, "unavailable"

    def _logical(self) -> str:
        return self.handle.lstrip("/")  # "GPU:0", the form get_memory_info accepts

    def energy_meter(self) -> Any:
        from chipfit.hardware.energy import MeterUnavailable, open_meter

        if self.ref.platform == "cpu":
            return open_meter("cpu")
        return MeterUnavailable(f"no energy counter wired for {self.ref}")

    def is_oom(self, exc: BaseException) -> bool:
        text = str(exc)
        return isinstance(exc, (MemoryError, self._tf.errors.ResourceExhaustedError)) or (
            "OOM when allocating" in text or "RESOURCE_EXHAUSTED" in text)


def _pin_threads(tf: Any, ref: DeviceRef) -> None:
    """Intra-op threads to ``ref.threads`` and inter-op to 1 (ops one after another, each on
    N threads, as torch.set_num_threads runs them), if the runtime has not started yet."""
    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(ref.threads)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if threading.get_intra_op_parallelism_threads() == ref.threads:
            return
        have = threading.get_intra_op_parallelism_threads() or "its default number of"
        raise InvalidInputError(
            f"{ref}: TensorFlow fixes its CPU threads when it starts, and it already runs "
            f"here with {have} threads; measure {ref} in a fresh process with "
            "--executor subprocess (one process per device)") from None


def _memory_growth(tf: Any) -> None:
    """Allocate GPU memory as needed instead of (TensorFlow's default) nearly all of it at
    start-up, so other frameworks in the process still fit; only possible before start-up."""
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(Exception):
            tf.config.experimental.set_memory_growth(gpu, True)


class TensorflowBackend(Backend):
    name = "tensorflow"
    priority = 30

    def _discover(self) -> tuple[list[DeviceInfo], list[Problem]]:
        tf = import_tensorflow()
        versions = (("tensorflow", tf.__version__), *_keras_version())
        devices: list[DeviceInfo] = []
        problems: list[Problem] = []
        for platform, kind in _PLATFORMS.items():
            try:
                found = tf.config.list_physical_devices(kind)
            except Exception as exc:  # a broken plugin must not break discovery
                problems.append(Problem(f"tensorflow:{platform}", _first_line(exc)))
                continue
            if not found and platform != "cpu":
                problems.append(Problem(f"tensorflow:{platform}", _absent(tf, platform)))
            devices += [_info(tf, d, platform, i, versions) for i, d in enumerate(found)]
        return devices, problems

    def _open(self, ref: DeviceRef) -> Session:
        return _TfSession(ref)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:240]


def _keras_version() -> tuple[tuple[str, str], ...]:
    with contextlib.suppress(Exception):
        import keras

        return (("keras", str(keras.__version__)),)
    return ()


def _absent(tf: Any, platform: str) -> str:
    if platform == "tpu":
        return ("TensorFlow lists no TPU (it needs a TPU VM and an initialised TPU system, "
                "which chipfit does not start); use jax:tpu, chipfit's TPU path")
    built = False
    with contextlib.suppress(Exception):
        built = bool(tf.test.is_built_with_gpu_support())
    if not built:
        return ("this TensorFlow build has no GPU support (tensorflow-cpu?); for NVIDIA GPUs "
                "on Linux: pip install 'tensorflow[and-cuda]'; on Apple silicon: "
                "pip install tensorflow-metal")
    return "TensorFlow has GPU support but sees no GPU (driver or CUDA_VISIBLE_DEVICES)"


def _info(tf: Any, device: Any, platform: str, index: int,
          versions: tuple[tuple[str, str], ...]) -> DeviceInfo:
    if platform == "cpu":
        facts = probe_cpu()
        threads = tf.config.threading.get_intra_op_parallelism_threads()
        details = (("arch", facts.arch), ("tf_device", device.name),
                   ("tf_intra_op_threads", str(threads or "default (all cores)")),
                   ("program", f"tf.function(jit_compile={JIT_COMPILE})"))
        return DeviceInfo("tensorflow:cpu", "tensorflow", "cpu", "cpu", facts.name,
                          facts.memory_bytes, facts.cores, facts.threads, None, facts.isa,
                          versions, details)
    facts: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # {"device_name": ..., "compute_capability": (9, 0)}
        facts = dict(tf.config.experimental.get_device_details(device) or {})
    name = str(facts.get("device_name") or f"TensorFlow {platform.upper()}")
    details = [("tf_device", device.name)]
    if "compute_capability" in facts:
        details.append(("capability", ".".join(str(v) for v in facts["compute_capability"])))
    return DeviceInfo(f"tensorflow:{platform}:{index}", "tensorflow", platform, platform, name,
                      None, None, None, None, (), versions, tuple(details))
