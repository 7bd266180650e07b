"""``chipfit calibrate``: measure what this machine's processors actually reach.

For one local device (``torch:cpu``, ``torch:cpu@1t``, ``jax:cpu:0``, ``torch:cuda:0`` ...)
it times, with chipfit's fenced adaptive timer:

- the per-operator dispatch cost (a one-element add), the cost of a view and of an
  ``nn.Module`` call (torch), or of one jitted-program call (JAX);
- square matmuls and 3x3 convolutions over a ladder of sizes, per dtype: achievable FLOP/s as
  a curve over FLOPs per operation (small operations reach less of the peak);
- ``y + 1.5 x`` over a ladder of sizes: achievable bytes/s as a curve over bytes per
  operation (working sets in cache run faster than from DRAM);
- on a torch CPU, the kernels eager torch runs far below that stream rate: batch norm,
  layer norm, softmax (bytes/s) and 3x3 max pooling (outputs/s), and 1x1 convolutions
  on one sample, which torch sends down a different path than other convolutions;
- host->device and device->host copies of 64 MiB (accelerators only).

Rates are net of the dispatch cost, so ``dispatch + flops / rate(flops)`` reproduces a
calibration point. The ladders sit between the sizes ``chipfit validate`` checks, so
validation never scores a point the fit was made on. A few held-out points are predicted and
measured at the end; their error is stored as the calibration's own check.

The fit is stored as JSON under ``data_dir()/calibration`` with a schema version (a newer
file is refused, never misread). Raw per-point times are kept: they are the truth, the
curves are derived from them.

Trust: the whole calibration is watched for contention (:mod:`chipfit.timing.contention`),
and the evidence is stored with it. A fit whose held-out checks miss by more than
:data:`chipfit.analysis.trust.MAX_CHECK_ERROR`, or one measured while the machine was shared
(its checks ran in the same busy window, so passing them proves little), is measured once more
after a back-off; if it is still refused, :func:`save_calibration` refuses it (one line, what
to do next, the previous file kept) and :func:`reusable` refuses to hand a stored one to
predict (validate measures it again). A stored file is checked field by field as it is read:
a rate that is not finite, beyond any device, or (a CPU) far beyond this CPU's theoretical
peak is a one-line error, never a prediction.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chipfit.analysis.calibration import (
    MAX_BYTES_PER_S,
    MAX_FLOPS_PER_S,
    MAX_OVERHEAD_S,
    Calibration,
    CalPoint,
    contention_of,
    fit_curve,
    refusal,
    roofs_from_calibration,
)
from chipfit.analysis.roofline import Curve
from chipfit.cost.records import PROBE_ROWS
from chipfit.errors import InvalidInputError, UnsupportedError
from chipfit.paths import check_versioned, read_versioned_json, utc_now, write_json_atomic
from chipfit.spec import DeviceRef, TimingConfig, parse_dtype

__all__ = ["CALIBRATION_SCHEMA_VERSION", "calibrate", "calibration_path", "load_calibration",
           "reusable", "save_calibration"]

# History: 1 = chipfit 0.1 (curves, overheads, raw points, held-out checks).
#          2 = ``contended``, ``contention`` (evidence numbers), ``contention_note``; a
#              version-1 file reads as contended = None (unknown).
#          (2, additive: ``streamed`` curves, ``private_cache_bytes``, ``llc_bytes``; a file
#              without them reads as empty/None and the LLM decode uses the older curves.)
CALIBRATION_SCHEMA_VERSION = 2
FORMAT = "chipfit-calibration"
_UPGRADE = "upgrade chipfit or run chipfit calibrate again"

MATMUL_SIDES = (48, 96, 192, 384, 768, 1536)
# Few-row matmuls (rows x k @ k x k) at records.PROBE_ROWS, per variant of
# chipfit.cost.records.rows_variant.
MATMUL_ROWS_K = (256, 768, 2048)
MATMUL_SIDES_QUICK = (48, 96, 192, 384, 768)
CONV_SHAPES = ((16, 24), (32, 24), (48, 40), (64, 48), (96, 64))  # (channels, height=width)
CONV_SHAPES_QUICK = ((16, 24), (48, 40), (96, 64))
# 1x1 convolutions on one sample: eager torch on a CPU runs them on their own kernel path.
CONV1X1_SHAPES = ((32, 64, 32), (96, 192, 32), (256, 512, 24), (512, 1024, 14))  # in, out, side
CONV1X1_SHAPES_QUICK = ((32, 64, 32), (96, 192, 32), (512, 1024, 14))
# Operator kinds whose CPU kernels run well below the stream rate: (kind, shapes)
KIND_SHAPES = {
    "batch_norm": ((16, 24), (64, 48), (128, 96)),     # (channels, side), one sample
    "layer_norm": ((32, 256), (256, 768), (2048, 768)),  # (rows, features)
    "softmax": ((64, 128), (512, 512), (4096, 512)),     # (rows, features)
    "pool": ((16, 48), (64, 96), (64, 160)),            # (channels, side); 3x3 stride 2
}
# One LSTM layer, batch 1: (hidden, steps). Weights of 0.26 and 1 MB (cache-resident), so a
# step is its floor plus streaming them; the built-in workloads' layers (320-512) are not here
RECURRENT_SHAPES = ((128, 64), (256, 64))
STREAM_ELEMENTS = tuple(2**e for e in range(11, 26, 2))  # 2K .. 32M elements
STREAM_ELEMENTS_QUICK = tuple(2**e for e in range(11, 26, 3))
CHECKS = (("matmul", 320), ("matmul", 1100), ("elementwise", 2**20), ("elementwise", 2**14))
COPY_BYTES = 64 * 2**20
# Few-row linear layers over weights that do not stay in the private caches, as an eager
# decode step runs them: chains of transformer-shaped layers (q, k, v, o, gate, up, down of
# width w), a few small operators between consecutive matrices (as a layer's norms, rotary
# embedding and activations sit between them: the worker threads of a parallel matmul have
# gone idle by the next one), at least four times the last-level cache, at these row counts.
# Two widths separate a fixed time per matrix from the bytes streamed.
STREAM_ROWS = (1, 4, 16, 64)
STREAM_WIDTHS = (256, 1024)
STREAM_GAP_OPS = 8
# A language model's head is much taller than wide (vocabulary x width: 32x for Llama-2-7B,
# 31x for Llama-3-8B, 8x for GPT-2 small): its few-row product runs its own kernel path.
STREAM_TALL = 32
FAST_QUANTILE = 0.2
# Every probe is timed in this many passes over the whole probe list, each with its share of
# the timing budget and of the minimum blocks, and its blocks pooled: on a shared machine a
# burst of interference lasting a second or two spoils one visit to a probe (rates 2x apart
# between two quick single-pass calibrations on a quiet 2-core VM), not all of them. The
# streamed-weight probes (seconds each) are timed once, in the last pass.
CALIBRATION_PASSES = 2
# ------------------------------------------------------------------------- measuring

def _per_call_seconds(thunk: Callable[[], Any], wait: Callable[[Any], None],
                      timing: TimingConfig) -> list[float]:
    """The per-call time of ``thunk`` in each timed block."""
    from chipfit.timing.timer import measure

    result, _ = measure(thunk, wait, timing)
    return [t / result.number_per_block for t in result.block_times_s]


def _fast_seconds(per_call: Sequence[float]) -> tuple[float, float, float]:
    """(fast quantile, median, relative CI) of per-call times.

    Calibration keeps the 20th percentile of the blocks: on a shared machine the slow blocks
    are other tenants, not the processor ("the lowest value gives a lower bound for how fast
    your machine can run the given code snippet; higher values ... are typically ... caused by
    other processes interfering", Python ``timeit`` documentation). A lower quantile rather
    than the minimum keeps one lucky block from setting the rate. The blocks come from
    CALIBRATION_PASSES visits to the probe, seconds apart, so one burst of interference
    cannot cover all of them.
    """
    from chipfit.timing import stats

    return (stats.quantile(per_call, FAST_QUANTILE), stats.median(per_call),
            stats.rel_ci_halfwidth(per_call))


class _TorchProbes:
    """Thunks for torch on one device; tensors are created on the device up front."""

    backend = "torch"

    def __init__(self, session: Any) -> None:
        import torch

        self.torch, self.session, self.device = torch, session, session.handle
        self._weights: dict[tuple[Any, ...], list[Any]] = {}

    def _rand(self, *shape: int, dtype: str) -> Any:
        gen = self.torch.Generator().manual_seed(0)
        host = self.torch.rand(*shape, generator=gen).to(getattr(self.torch, dtype))
        return self.session.to_device(host)

    def matmul(self, n: int, dtype: str) -> tuple[Callable[[], Any], float]:
        a, b = self._rand(n, n, dtype=dtype), self._rand(n, n, dtype=dtype)
        return (lambda: self.torch.matmul(a, b)), 2.0 * n**3

    def matmul_rows(self, rows: int, k: int, dtype: str) -> tuple[Callable[[], Any], float]:
        """A linear layer's shape: ``rows x k`` activations times a ``k x k`` weight."""
        a, w = self._rand(rows, k, dtype=dtype), self._rand(k, k, dtype=dtype)
        linear = self.torch.nn.functional.linear
        return (lambda: linear(a, w)), 2.0 * rows * k * k

    def streamed(self, rows: int, width: int, layers: int, dtype: str,
                 tall: bool = False) -> tuple[Callable[[], Any], float, int]:
        """``layers`` transformer-shaped layers of width ``width`` (attention with a quarter
        as many key/value columns, a gated MLP 2.75x wide) applied to ``rows`` tokens, with
        STREAM_GAP_OPS small operators after each matrix: returns the thunk, the weight bytes
        it reads and the number of matrices. ``tall``: output projections shaped like a
        language model's head instead (STREAM_TALL x ``width`` outputs, ``width`` inputs)."""
        inner = int(width * 2.75)
        shapes = [(width, width), (width // 4, width), (width // 4, width), (width, width),
                  (inner, width), (inner, width), (width, inner)]
        if tall:
            shapes = [(STREAM_TALL * width, width)]
        key = (width, layers, dtype, tall)
        if key not in self._weights:  # the same weights for every row count
            self._weights = {key: [self._rand(o, i, dtype=dtype) for _ in range(layers)
                                   for o, i in shapes]}
        weights = self._weights[key]
        x_w, x_i = self._rand(rows, width, dtype=dtype), self._rand(rows, inner, dtype=dtype)
        small = self._rand(16, dtype="float32")
        linear = self.torch.nn.functional.linear

        def chain() -> Any:
            out = None
            for w in weights:
                out = linear(x_i if w.shape[1] == inner else x_w, w)
                for _ in range(STREAM_GAP_OPS):
                    small.mul_(1.0)
            return out

        size = weights[0].element_size()
        return chain, float(sum(w.numel() for w in weights) * size), len(weights)

    def conv(self, channels: int, side: int, dtype: str) -> tuple[Callable[[], Any], float]:
        x = self._rand(1, channels, side, side, dtype=dtype)
        w = self._rand(channels, channels, 3, 3, dtype=dtype)
        conv2d = self.torch.nn.functional.conv2d
        return (lambda: conv2d(x, w, padding=1)), 2.0 * channels * channels * 9 * side * side

    def stream(self, n: int, dtype: str) -> tuple[Callable[[], Any], float]:
        x, y = self._rand(n, dtype=dtype), self._rand(n, dtype=dtype)
        size = x.element_size()
        return (lambda: self.torch.add(y, x, alpha=1.5)), 3.0 * n * size

    def conv1x1(self, cin: int, cout: int, side: int,
                dtype: str) -> tuple[Callable[[], Any], float]:
        x = self._rand(1, cin, side, side, dtype=dtype)
        w = self._rand(cout, cin, 1, 1, dtype=dtype)
        conv2d = self.torch.nn.functional.conv2d
        return (lambda: conv2d(x, w)), 2.0 * cin * cout * side * side

    def kind(self, kind: str, a: int, b: int) -> tuple[Callable[[], Any], float]:
        """An operator kind's thunk and its work: bytes in + out (pool: output elements)."""
        f = self.torch.nn.functional
        if kind in ("batch_norm", "pool"):
            x = self._rand(1, a, b, b, dtype="float32")
            if kind == "pool":
                out_side = (b + 2 - 3) // 2 + 1
                return (lambda: f.max_pool2d(x, 3, 2, 1)), float(a * out_side * out_side)
            mean, var, w, bias = (self._rand(a, dtype="float32") for _ in range(4))
            return (lambda: f.batch_norm(x, mean, var, w, bias, training=False),
                    8.0 * x.numel())
        x = self._rand(a, b, dtype="float32")
        if kind == "layer_norm":
            w, bias = self._rand(b, dtype="float32"), self._rand(b, dtype="float32")
            return (lambda: f.layer_norm(x, (b,), w, bias)), 8.0 * x.numel()
        return (lambda: self.torch.softmax(x, -1)), 8.0 * x.numel()

    def dispatch(self) -> Callable[[], Any]:
        x, y = self._rand(1, dtype="float32"), self._rand(1, dtype="float32")
        return lambda: self.torch.add(x, y)

    def recurrent(self, hidden: int, steps: int) -> tuple[Callable[[], Any], float]:
        """One LSTM layer (``hidden`` in and out) over ``steps`` steps of one sequence, as a
        model in inference runs it (CPUs: oneDNN's fused layer); FLOPs as the tracer counts."""
        torch = self.torch
        lstm = torch.nn.LSTM(hidden, hidden).to(self.device).requires_grad_(False)
        x = self._rand(steps, 1, hidden, dtype="float32")

        def run() -> Any:
            with torch.inference_mode():
                return lstm(x)[0]

        return run, 2.0 * steps * 4 * hidden * (hidden + hidden)

    def view(self) -> Callable[[], Any]:
        x = self._rand(4, 4, dtype="float32")
        return lambda: x.view(16)

    def module(self, depth: int = 32) -> Callable[[], Any]:
        stack = self.torch.nn.Sequential(*[self.torch.nn.Identity() for _ in range(depth)])
        x = self._rand(1, dtype="float32")
        return lambda: stack(x)


class _JaxProbes:
    """Thunks for JAX: each is one call of a jitted program (compiled before timing)."""

    backend = "jax"
    compiled = True  # one program call per workload call: a per-call, not per-op, overhead

    def __init__(self, session: Any) -> None:
        import jax
        import jax.numpy as jnp
        import numpy as np

        self.jax, self.jnp, self.np, self.session = jax, jnp, np, session

    def _rand(self, *shape: int, dtype: str) -> Any:
        host = self.np.random.default_rng(0).random(shape, dtype=self.np.float32)
        return self.session.to_device(host.astype(self.jnp.dtype(dtype)))

    def _jit(self, fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        compiled = self.jax.jit(fn).lower(*args).compile()
        return lambda: compiled(*args)

    def matmul(self, n: int, dtype: str) -> tuple[Callable[[], Any], float]:
        a, b = self._rand(n, n, dtype=dtype), self._rand(n, n, dtype=dtype)
        return self._jit(self.jnp.matmul, a, b), 2.0 * n**3

    def matmul_rows(self, rows: int, k: int, dtype: str) -> tuple[Callable[[], Any], float]:
        """A dense layer's shape: ``rows x k`` activations times a ``k x k`` weight."""
        a, w = self._rand(rows, k, dtype=dtype), self._rand(k, k, dtype=dtype)
        return self._jit(self.jnp.matmul, a, w), 2.0 * rows * k * k

    def conv(self, channels: int, side: int, dtype: str) -> tuple[Callable[[], Any], float]:
        from jax import lax

        x = self._rand(1, channels, side, side, dtype=dtype)
        w = self._rand(channels, channels, 3, 3, dtype=dtype)
        return (self._jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME"), x, w),
                2.0 * channels * channels * 9 * side * side)

    def stream(self, n: int, dtype: str) -> tuple[Callable[[], Any], float]:
        x, y = self._rand(n, dtype=dtype), self._rand(n, dtype=dtype)
        return self._jit(lambda x, y: 1.5 * x + y, x, y), 3.0 * n * x.dtype.itemsize

    def dispatch(self) -> Callable[[], Any]:
        x = self._rand(1, dtype="float32")
        return self._jit(lambda x: x + 1, x)


class _TfProbes:
    """Thunks for TensorFlow: each is one call of a ``tf.function(jit_compile=True)``
    (traced and compiled before timing), as its workloads run."""

    backend = "tensorflow"
    compiled = True

    def __init__(self, session: Any) -> None:
        import numpy as np

        from chipfit.backends.tensorflow import import_tensorflow

        self.tf, self.np, self.session = import_tensorflow(), np, session

    def _rand(self, *shape: int, dtype: str) -> Any:
        host = self.np.random.default_rng(0).random(shape, dtype=self.np.float32)
        return self.session.to_device(host.astype(self.tf.dtypes.as_dtype(dtype).as_numpy_dtype))

    def _jit(self, fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        from chipfit.backends.tensorflow import compiled

        call = compiled(fn, self.session.handle)
        self.session.wait(call(*args))  # trace and compile now, not in the timed window
        return lambda: call(*args)

    def matmul(self, n: int, dtype: str) -> tuple[Callable[[], Any], float]:
        a, b = self._rand(n, n, dtype=dtype), self._rand(n, n, dtype=dtype)
        return self._jit(lambda a, b: self.tf.linalg.matmul(a, b), a, b), 2.0 * n**3

    def matmul_rows(self, rows: int, k: int, dtype: str) -> tuple[Callable[[], Any], float]:
        """A dense layer's shape: ``rows x k`` activations times a ``k x k`` weight."""
        a, w = self._rand(rows, k, dtype=dtype), self._rand(k, k, dtype=dtype)
        return self._jit(lambda a, w: self.tf.linalg.matmul(a, w), a, w), 2.0 * rows * k * k

    def conv(self, channels: int, side: int, dtype: str) -> tuple[Callable[[], Any], float]:
        # NHWC / HWIO: TensorFlow's CPU convolutions are channels-last
        x = self._rand(1, side, side, channels, dtype=dtype)
        w = self._rand(3, 3, channels, channels, dtype=dtype)
        return (self._jit(lambda x, w: self.tf.nn.conv2d(x, w, 1, "SAME"), x, w),
                2.0 * channels * channels * 9 * side * side)

    def stream(self, n: int, dtype: str) -> tuple[Callable[[], Any], float]:
        x, y = self._rand(n, dtype=dtype), self._rand(n, dtype=dtype)
        return self._jit(lambda x, y: 1.5 * x + y, x, y), 3.0 * n * x.dtype.size

    def dispatch(self) -> Callable[[], Any]:
        x = self._rand(1, dtype="float32")
        return self._jit(lambda x: x + 1, x)


def _probes(session: Any, backend: str) -> Any:
    if backend == "torch":
        return _TorchProbes(session)
    if backend == "jax":
        return _JaxProbes(session)
    if backend == "tensorflow":
        return _TfProbes(session)
    raise UnsupportedError(f"no calibration probes for backend {backend!r}")


@dataclass
class _Run:
    """Mutable bookkeeping while one device is calibrated."""

    probes: Any
    wait: Callable[[Any], None]
    timing: TimingConfig
    progress: Callable[[str], None]
    points: list[CalPoint] = field(default_factory=list)
    # per-call times of each (probe, dtype, size) from the earlier passes, pooled with this
    # pass's; ``samples``: this pass's
    earlier: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    samples: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    # set on the last pass only: the whole timing, for probes timed in that pass alone
    whole: TimingConfig | None = None

    def time(self, probe: str, dtype: str, size: str, thunk: Callable[[], Any],
             work: float = 0.0) -> float:
        self.progress(f"{probe} {dtype} {size}")
        key = (probe, dtype, size)
        self.samples[key] = _per_call_seconds(thunk, self.wait, self.timing)
        fast, median, rel = _fast_seconds(self.earlier.get(key, []) + self.samples[key])
        rel = rel if math.isfinite(rel) else math.nan
        self.points.append(CalPoint(probe, dtype, size, work, fast, median, rel))
        return fast


def _measure_overheads(run: _Run) -> dict[str, float]:
    probes = run.probes
    if getattr(probes, "compiled", False):
        return {"host_per_call_s": run.time("call", "float32", "1", probes.dispatch())}
    depth = 32
    module = run.time("module", "float32", str(depth), probes.module(depth))
    return {"host_per_op_s": run.time("dispatch", "float32", "1", probes.dispatch()),
            "host_per_view_s": run.time("view", "float32", "16", probes.view()),
            "host_per_module_s": module / depth}


def _measure_compute(run: _Run, dtypes: Sequence[str], quick: bool, overhead: float,
                     skipped: list[str]) -> tuple[dict[str, Curve], dict[str, Curve]]:
    matmul: dict[str, Curve] = {}
    conv: dict[str, Curve] = {}
    sides = MATMUL_SIDES_QUICK if quick else MATMUL_SIDES
    shapes = CONV_SHAPES_QUICK if quick else CONV_SHAPES
    for dtype in dtypes:
        try:
            for n in sides:
                thunk, flops = run.probes.matmul(n, dtype)
                run.time("matmul", dtype, str(n), thunk, flops)
            for channels, side in shapes:
                thunk, flops = run.probes.conv(channels, side, dtype)
                run.time("conv", dtype, f"{channels}c{side}", thunk, flops)
        except Exception as exc:  # an unsupported dtype is a finding, not a crash
            skipped.append(f"{dtype}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            continue
        mine = [p for p in run.points if p.dtype == dtype]
        matmul[dtype] = fit_curve([p for p in mine if p.probe == "matmul"], overhead)
        conv[dtype] = fit_curve([p for p in mine if p.probe == "conv"], overhead)
        _measure_rows(run, dtype, overhead, matmul)
    return matmul, conv


def _measure_rows(run: _Run, dtype: str, overhead: float, matmul: dict[str, Curve]) -> None:
    """Curves for few-row matmuls (``<dtype>/gemv``, ``<dtype>/skinny``)."""
    if not hasattr(run.probes, "matmul_rows"):
        return
    for variant, rows in PROBE_ROWS:
        for k in MATMUL_ROWS_K:
            thunk, flops = run.probes.matmul_rows(rows, k, dtype)
            run.time(f"matmul_{variant}", dtype, f"{rows}x{k}", thunk, flops)
        points = [p for p in run.points if p.probe == f"matmul_{variant}" and p.dtype == dtype]
        matmul[f"{dtype}/{variant}"] = fit_curve(points, overhead)


def _measure_conv1x1(run: _Run, dtypes: Sequence[str], quick: bool, overhead: float,
                     conv: dict[str, Curve]) -> None:
    """The 1x1, one-sample convolution path (torch only), as ``conv["<dtype>/1x1b1"]``."""
    if not hasattr(run.probes, "conv1x1"):
        return
    for dtype in [d for d in dtypes if d in conv]:
        for cin, cout, side in (CONV1X1_SHAPES_QUICK if quick else CONV1X1_SHAPES):
            thunk, flops = run.probes.conv1x1(cin, cout, side, dtype)
            run.time("conv1x1", dtype, f"{cin}to{cout}c{side}", thunk, flops)
        points = [p for p in run.points if p.probe == "conv1x1" and p.dtype == dtype]
        conv[f"{dtype}/1x1b1"] = fit_curve(points, overhead)


def _measure_kinds(run: _Run, overhead: float) -> tuple[dict[str, Curve], Curve]:
    """Per-kind rates (torch only): bytes/s for norms and softmax, outputs/s for pooling."""
    if not hasattr(run.probes, "kind"):
        return {}, ()
    curves: dict[str, Curve] = {}
    for kind, shapes in KIND_SHAPES.items():
        for a, b in shapes:
            thunk, work = run.probes.kind(kind, a, b)
            run.time(kind, "float32", f"{a}x{b}", thunk, work)
        curves[kind] = fit_curve([p for p in run.points if p.probe == kind], overhead)
    pool = curves.pop("pool")
    return curves, pool


def _measure_streamed(run: _Run, dtypes: Sequence[str], overhead: float,
                      caches: tuple[int | None, int | None]) -> dict[str, Curve]:
    """Per dtype, over STREAM_ROWS: ``<dtype>/stream_bw`` (weight bytes/s) and
    ``<dtype>/stream_fixed`` (seconds per matrix beyond the host's dispatch) of few-row
    linear layers whose weights stream from beyond the private caches (see STREAM_ROWS), and
    the same with a ``_tall`` suffix for head-shaped matrices (STREAM_TALL).
    ``t = matrices * fixed + bytes / bw`` is solved from the two widths. Torch CPUs only."""
    if not hasattr(run.probes, "streamed"):
        return {}
    floor = max(4 * (caches[1] or 0), 128 * 2**20)
    curves: dict[str, Curve] = {}
    for dtype, tall in ((d, t) for d in dtypes for t in (False, True)):
        timed: dict[int, list[tuple[int, float, float]]] = {r: [] for r in STREAM_ROWS}
        for width in STREAM_WIDTHS:  # one width's weights serve every row count
            params = STREAM_TALL if tall else 11.25  # x width^2 per layer
            layer = params * width * width * (4 if dtype == "float32" else 2)  # bytes
            layers = max(1, math.ceil(floor / layer))
            for rows in STREAM_ROWS:
                thunk, nbytes, calls = run.probes.streamed(rows, width, layers, dtype, tall)
                name = "streamed_tall" if tall else "streamed"
                seconds = run.time(name, dtype, f"{rows}x{width}x{layers}", thunk, nbytes)
                # the host's dispatch of the matrix and of the operators between is counted
                # elsewhere (eager host overhead): only the matrices' own time stays
                timed[rows].append((calls, nbytes, max(seconds - calls * (1 + STREAM_GAP_OPS)
                                                       * overhead, seconds / 4)))
        bw, fixed = [], []
        for rows in STREAM_ROWS:
            (n1, b1, t1), (n2, b2, t2) = timed[rows]
            # n1 c + b1 / B = t1 ; n2 c + b2 / B = t2
            det = n1 * b2 - n2 * b1
            inv_bw = (n1 * t2 - n2 * t1) / det if det else 0.0
            c = (t1 - b1 * inv_bw) / n1 if inv_bw > 0 else 0.0
            if inv_bw <= 0 or c < 0:  # no fixed cost visible: bandwidth from the larger
                c, inv_bw = 0.0, t2 / b2
            bw.append((float(rows), 1.0 / inv_bw))
            fixed.append((float(rows), max(c, 1e-9)))
        suffix = "_tall" if tall else ""
        curves[f"{dtype}/stream_bw{suffix}"] = tuple(bw)
        curves[f"{dtype}/stream_fixed{suffix}"] = tuple(fixed)
    return curves


def _measure_recurrent(run: _Run) -> None:
    """Fused recurrent layers (torch CPUs): points from which
    :func:`chipfit.analysis.calibration.recurrent_step_floor` derives a step's floor."""
    if not hasattr(run.probes, "recurrent"):
        return
    for hidden, steps in RECURRENT_SHAPES:
        thunk, flops = run.probes.recurrent(hidden, steps)
        run.time("recurrent", "float32", f"{hidden}h{steps}", thunk, flops)


def _measure_stream(run: _Run, quick: bool, overhead: float) -> Curve:
    sizes = STREAM_ELEMENTS_QUICK if quick else STREAM_ELEMENTS
    for n in sizes:
        thunk, nbytes = run.probes.stream(n, "float32")
        run.time("stream", "float32", str(n), thunk, nbytes)
    return fit_curve([p for p in run.points if p.probe == "stream"], overhead)


def _measure_copies(session: Any, run: _Run) -> tuple[float | None, float | None]:
    """Host<->device bandwidth of a 64 MiB buffer (None where memory is shared)."""
    if not session.copies:
        return None, None
    import numpy as np

    host = np.random.default_rng(0).random(COPY_BYTES // 4, dtype=np.float32)
    if run.probes.backend == "torch":
        host = run.probes.torch.from_numpy(host)
    device = session.to_device(host)
    h2d = run.time("h2d", "float32", str(COPY_BYTES), lambda: session.to_device(host), COPY_BYTES)
    d2h = run.time("d2h", "float32", str(COPY_BYTES), lambda: session.to_host(device), COPY_BYTES)
    return COPY_BYTES / h2d, COPY_BYTES / d2h


def _checks(run: _Run, cal: Calibration) -> tuple[tuple[str, float, float], ...]:
    """Predict and measure held-out points (sizes not on any ladder)."""
    from chipfit.analysis.roofline import predict
    from chipfit.cost.records import OpCost, WorkloadCosts

    roofs = roofs_from_calibration(cal)
    out = []
    for probe, n in CHECKS:
        if probe == "matmul":
            thunk, work = run.probes.matmul(n, "float32")
            op = OpCost("mm", "matmul", "float32", work, 3.0 * n * n * 4)
        else:
            thunk, work = run.probes.stream(n, "float32")
            op = OpCost("add", "elementwise", "float32", float(n), work)
        costs = WorkloadCosts("check", str(n), "float32", "inference", run.probes.backend,
                              "calibration", (op,), program_calls=int(getattr(run.probes, "compiled", False)))
        run.time(f"check-{probe}", "float32", str(n), thunk, work)
        measured = run.points[-1].median_s  # scored like chipfit validate: against the median
        out.append((f"{probe} {n}", predict(costs, roofs).seconds, measured))
    return tuple(out)


#: Attempts at a calibration that is refused (its checks miss, or it was measured while the
#: machine was shared: see the module docstring), and the pause before the next: long enough
#: for a neighbour's burst to pass.
CALIBRATION_ATTEMPTS = 2
CALIBRATION_BACKOFF_S = 2.0


def calibrate(device: str | DeviceRef = "torch:cpu", *, dtypes: Sequence[str] = ("float32",),
              quick: bool = True, timing: TimingConfig | None = None, discovery: Any = None,
              progress: Callable[[str], None] | None = None) -> Calibration:
    """Measure ``device`` and return its :class:`Calibration` (not yet saved).

    A fit that is refused (it misses its own held-out checks, or the machine was shared while
    it was measured) is measured again after a back-off; the best of the attempts is returned
    (a quiet one before a contended one, then the better checks): :func:`save_calibration`
    refuses one that is still refused.
    """
    import time

    from chipfit.timing.contention import watch

    say = progress or (lambda s: None)
    best: Calibration | None = None
    for attempt in range(CALIBRATION_ATTEMPTS):
        if attempt:
            say(f"attempt {attempt} refused ({_short(best)}): measuring again in "  # type: ignore[arg-type]
                f"{CALIBRATION_BACKOFF_S:g} s")
            time.sleep(CALIBRATION_BACKOFF_S)
        cal, evidence = watch(lambda: _calibrate_once(device, dtypes, quick, timing, discovery,
                                                      progress))
        cal = replace(cal, contended=evidence.contended, contention=evidence.numbers,
                      contention_note=evidence.note)
        if best is None or _rank(cal) < _rank(best):
            best = cal
        if refusal(best) is None:
            break
    return best  # type: ignore[return-value]


def _short(cal: Calibration) -> str:
    contended, why = contention_of(cal)
    if contended:
        return f"the machine was shared: {why}" if why else "the machine was shared"
    return f"its held-out checks miss by {cal.check_mape or 0.0:.0%}"


def _rank(cal: Calibration) -> tuple[bool, float]:
    """Attempts in order of preference: quiet before contended, then the better checks."""
    return bool(contention_of(cal)[0]), cal.check_mape or 0.0


def reusable(cal: Calibration | None) -> Calibration | None:
    """``cal`` if predict and validate may use it; raises UnreliableError if they may not: it
    misses its own checks, or it was measured while the machine was shared (a file stored
    before chipfit refused such fits, or written by hand)."""
    from chipfit.errors import UnreliableError

    why = refusal(cal) if cal is not None else None
    if why:
        raise UnreliableError(f"the stored {why.removeprefix('the ')}")
    return cal


def _calibrate_once(device: str | DeviceRef, dtypes: Sequence[str], quick: bool,
                    timing: TimingConfig | None, discovery: Any,
                    progress: Callable[[str], None] | None) -> Calibration:
    """Measure ``device`` once."""
    from chipfit.backends import get_backend
    from chipfit.discovery import discover, resolve_devices

    ref = device if isinstance(device, DeviceRef) else DeviceRef.parse(str(device))
    discovery = discovery or discover([ref.backend])
    ref = resolve_devices([str(ref)], discovery)[0]
    info = discovery.get(str(ref.base))
    dtypes = [parse_dtype(d) for d in dtypes]
    timing = timing or _calibration_timing(quick)
    share = replace(timing, budget_s=timing.budget_s / CALIBRATION_PASSES,
                    min_samples=max(2, math.ceil(timing.min_samples / CALIBRATION_PASSES)))
    say = progress or (lambda s: None)
    backend = get_backend(ref.backend)
    with backend.session(ref, discovery) as session:
        probes = _probes(session, ref.backend)
        earlier: dict[tuple[str, str, str], list[float]] = {}
        for visit in range(1, CALIBRATION_PASSES + 1):
            run = _Run(probes, session.wait, share,
                       lambda s, v=visit: say(f"pass {v}/{CALIBRATION_PASSES}: {s}"),
                       earlier=earlier, whole=timing if visit == CALIBRATION_PASSES else None)
            cal = _measure_all(run, ref, info, dtypes, quick, session)
            earlier = {k: earlier.get(k, []) + v for k, v in run.samples.items()}
    return cal


def _measure_all(run: _Run, ref: DeviceRef, info: Any, dtypes: Sequence[str], quick: bool,
                 session: Any) -> Calibration:
    """One pass over every probe, and the calibration its points (pooled with the earlier
    passes' blocks) give."""
    overheads = _measure_overheads(run)
    per_op = overheads.get("host_per_op_s", 0.0) + overheads.get("host_per_call_s", 0.0)
    skipped: list[str] = []
    matmul, conv = _measure_compute(run, dtypes, quick, per_op, skipped)
    if "float32" not in matmul:
        raise UnsupportedError(f"{ref}: float32 matmul failed: {'; '.join(skipped)}")
    if ref.is_cpu:
        _measure_conv1x1(run, dtypes, quick, per_op, conv)
    bandwidth = _measure_stream(run, quick, per_op)
    kinds, pool = _measure_kinds(run, per_op) if ref.is_cpu else ({}, ())
    if ref.is_cpu:
        _measure_recurrent(run)
    caches = _caches() if ref.is_cpu else (None, None)
    streamed: dict[str, Curve] = {}
    if ref.is_cpu and run.whole is not None:
        # weights streamed from memory: seconds a probe, the same in every pass but for its
        # own interference, so timed once, in the last pass, with the whole budget
        run.timing, share = run.whole, run.timing
        streamed = _measure_streamed(run, [d for d in dtypes if d in matmul], per_op, caches)
        run.timing = share
    h2d, d2h = _measure_copies(session, run)
    cal = Calibration(
        device=str(ref), name=info.name if info else str(ref),
        kind=info.kind if info else "cpu",
        backend=ref.backend, created_at=utc_now(), chipfit_version=_version(),
        machine=_machine(), points=(), matmul=tuple(matmul.items()), conv=tuple(conv.items()),
        bandwidth=bandwidth, h2d_bw=h2d, d2h_bw=d2h, asynchronous=not ref.is_cpu,
        memory_bytes=float(info.memory_bytes) if info and info.memory_bytes else None,
        class_bandwidth=tuple(kinds.items()), pool=pool, streamed=tuple(streamed.items()),
        private_cache_bytes=_float(caches[0]), llc_bytes=_float(caches[1]), **overheads)
    checks = _checks(run, cal)
    return replace(cal, points=tuple(run.points), checks=checks)


def _caches() -> tuple[int | None, int | None]:
    from chipfit.hardware.cpu import cache_bytes

    return cache_bytes()


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)


def _calibration_timing(quick: bool) -> TimingConfig:
    if quick:
        return TimingConfig(warmup_s=0.02, min_block_s=0.004, min_samples=5, target_rel_ci=0.05,
                            budget_s=0.3)
    return TimingConfig(warmup_s=0.05, min_block_s=0.005, min_samples=7, target_rel_ci=0.03,
                        budget_s=1.0)


def _version() -> str:
    from chipfit._version import __version__

    return __version__


def _machine() -> tuple[tuple[str, str], ...]:
    from chipfit.hardware.cpu import machine_fingerprint

    return machine_fingerprint()


# -------------------------------------------------------------------------- storing

def calibration_path(device: str | DeviceRef) -> Path:
    """Where the calibration of ``device`` is kept (one JSON file per device)."""
    from chipfit.paths import data_dir

    safe = str(device).replace(":", "_").replace("@", "-")
    return data_dir() / "calibration" / f"{safe}.json"


def _to_dict(cal: Calibration) -> dict[str, Any]:
    data = asdict(cal)
    data["matmul"] = {d: [list(p) for p in c] for d, c in cal.matmul}
    data["conv"] = {d: [list(p) for p in c] for d, c in cal.conv}
    data["bandwidth"] = [list(p) for p in cal.bandwidth]
    data["class_bandwidth"] = {k: [list(p) for p in c] for k, c in cal.class_bandwidth}
    data["pool"] = [list(p) for p in cal.pool]
    data["streamed"] = {k: [list(p) for p in c] for k, c in cal.streamed}
    data["contention"] = dict(cal.contention)
    data["machine"] = dict(cal.machine)
    data["points"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in asdict(p).items()} for p in cal.points]
    return {"format": FORMAT, "schema_version": CALIBRATION_SCHEMA_VERSION, **data}


#: A CPU calibration's FP32 rates above this many times the CPU's theoretical peak (cores x
#: highest clock x FLOPs per cycle, :func:`chipfit.hardware.cpu.local_theoretical_peak`) were
#: not measured on it. The peak may be low by the clock a VM hides (~1.5x) or a wider core than
#: the two vector pipes assumed (2x): four times is past both.
IMPOSSIBLE_PEAK_FACTOR = 4.0
_REDO = "delete it or run chipfit calibrate again"
_CONTROL = frozenset(chr(c) for c in (*range(32), *range(127, 160)))


class _Reader:
    """Checks every field of a stored calibration as it is read: the right type, finite, in
    range; one message per field (a crafted or damaged file is a one-line error)."""

    def __init__(self, data: dict[str, Any], origin: str) -> None:
        self.data, self.origin = data, origin

    def fail(self, field: str, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{self.origin}: {field} {problem}; {_REDO}")

    def number(self, value: Any, field: str, low: float = 0.0, high: float = math.inf,
               strict: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"must be a number, not {type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:  # a 400-digit integer
            raise self.fail(field, "is too large to be a measured value") from None
        if not math.isfinite(value):
            raise self.fail(field, f"must be a finite number, not {value}")
        if value < low or (strict and value == low) or value > high:
            bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f"above {low:g}"
            raise self.fail(field, f"is {value:g}, not a measured value (must be {bound})")
        return value

    def optional(self, key: str, high: float) -> float | None:
        value = self.data.get(key)
        return None if value is None else self.number(value, key, high=high)

    def text(self, key: str, required: bool = True) -> str | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "is missing")
            return None
        value = self.data[key]
        if not isinstance(value, str) or len(value) > 500 or _CONTROL & set(value):
            raise self.fail(key, "must be a short line of text")
        return value

    def mapping(self, key: str, required: bool = False) -> dict[str, Any]:
        value = self.data.get(key, None if required else {})
        if not isinstance(value, dict):
            raise self.fail(key, "is missing" if value is None else "must be an object")
        return value

    def curve(self, value: Any, field: str, high: float) -> Curve:
        """(work, rate) pairs: positive work, a positive rate no device reaches past ``high``."""
        if not isinstance(value, list):
            raise self.fail(field, "must be a list of [work, rate] pairs")
        out = []
        for pair in value:
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(field, "must be a list of [work, rate] pairs")
            out.append((self.number(pair[0], f"{field} work", high=1e21),
                        self.number(pair[1], f"{field} rate", high=high)))
        return tuple(out)

    def curves(self, key: str, high: Any, required: bool = False) -> tuple[tuple[str, Curve], ...]:
        """A named set of curves; ``high(name)`` is the highest rate name's curve may hold."""
        out = []
        for name, c in self.mapping(key, required).items():
            if not isinstance(name, str) or _CONTROL & set(name) or len(name) > 100:
                raise self.fail(key, "must be keyed by short names")
            out.append((name, self.curve(c, f"{key} {name!r}", high(name))))
        return tuple(out)


def _streamed_high(name: str) -> float:
    return MAX_OVERHEAD_S if "stream_fixed" in name else MAX_BYTES_PER_S


def _read_points(read: _Reader) -> tuple[CalPoint, ...]:
    raw = read.data.get("points", [])
    if not isinstance(raw, list):
        raise read.fail("points", "must be a list")
    fields = {"probe", "dtype", "size", "work", "seconds", "median_s", "rel_ci", "source"}
    points = []
    for p in raw:
        if not isinstance(p, dict) or not set(p) <= fields or not {"probe", "dtype", "size", "work",
                                                                     "seconds"} <= set(p):
            raise read.fail("points", f"must be objects with the fields {sorted(fields)}")
        if not all(isinstance(p.get(k, ""), str) for k in ("probe", "dtype", "size", "source")):
            raise read.fail("points", "probe, dtype, size and source must be text")
        values = {k: (math.nan if p.get(k) is None else read.number(
            p[k], f"points {k}", high=1e21 if k == "work" else 1e6, strict=False))
            for k in ("work", "seconds", "median_s", "rel_ci") if k in p}
        points.append(CalPoint(**{**p, **values}))
    return tuple(points)


def _read_checks(read: _Reader) -> tuple[tuple[str, float, float], ...]:
    raw = read.data.get("checks", [])
    if not isinstance(raw, list) or not all(isinstance(c, list) and len(c) == 3
                                            and isinstance(c[0], str) for c in raw):
        raise read.fail("checks", "must be a list of [case, predicted_s, measured_s]")
    return tuple((c, read.number(p, "checks predicted_s", high=1e6),
                  read.number(m, "checks measured_s", high=1e6)) for c, p, m in raw)


def _read_contention(read: _Reader) -> tuple[bool | None, tuple[tuple[str, float], ...], str]:
    contended = read.data.get("contended")
    if contended is not None and not isinstance(contended, bool):
        raise read.fail("contended", "must be true, false or null")
    evidence = read.mapping("contention")
    # finite numbers; a window's differences may be negative (a thread that exited took its
    # run-queue wait with it)
    numbers = tuple((str(k), read.number(v, f"contention {k!r}", low=-1e12, high=1e12,
                                         strict=False)) for k, v in evidence.items())
    return contended, numbers, read.text("contention_note", required=False) or ""


def _from_dict(data: dict[str, Any], origin: str, device: str | None = None) -> Calibration:
    """A stored calibration, every field checked (see :class:`_Reader`); ``device``: the
    device the file must belong to."""
    data = check_versioned(data, FORMAT, CALIBRATION_SCHEMA_VERSION, origin, "calibration",
                           _UPGRADE)
    read = _Reader(data, origin)
    names = {k: read.text(k) for k in ("device", "name", "kind", "backend", "created_at",
                                       "chipfit_version")}
    if device is not None and names["device"] != device:
        raise read.fail("device", f"is {names['device']!r}: this file is {device}'s place")
    overheads = {k: read.number(data.get(k, 0.0), k, high=MAX_OVERHEAD_S, strict=False)
                 for k in ("host_per_op_s", "host_per_view_s", "host_per_module_s",
                           "host_per_call_s")}
    if not isinstance(data.get("asynchronous", False), bool):
        raise read.fail("asynchronous", "must be true or false")
    machine = read.mapping("machine")
    if not all(isinstance(v, str) for v in machine.values()):
        raise read.fail("machine", "must map names to text")
    contended, evidence, note = _read_contention(read)
    flops, bytes_ = (lambda _: MAX_FLOPS_PER_S), (lambda _: MAX_BYTES_PER_S)
    matmul = read.curves("matmul", flops, required=True)
    if not dict(matmul).get("float32"):
        raise read.fail("matmul", "holds no float32 curve")
    cal = Calibration(
        **names, machine=tuple(sorted(machine.items())), points=_read_points(read), matmul=matmul,
        conv=read.curves("conv", flops),
        bandwidth=_nonempty(read, "bandwidth", read.curve(data.get("bandwidth"), "bandwidth",
                                                          MAX_BYTES_PER_S)), **overheads,
        h2d_bw=read.optional("h2d_bw", MAX_BYTES_PER_S),
        d2h_bw=read.optional("d2h_bw", MAX_BYTES_PER_S),
        asynchronous=data.get("asynchronous", False), checks=_read_checks(read),
        memory_bytes=read.optional("memory_bytes", 2.0**60),
        class_bandwidth=read.curves("class_bandwidth", bytes_),
        pool=read.curve(data.get("pool", []), "pool", MAX_BYTES_PER_S),
        streamed=read.curves("streamed", _streamed_high),
        private_cache_bytes=read.optional("private_cache_bytes", 2.0**50),
        llc_bytes=read.optional("llc_bytes", 2.0**50), contended=contended,
        contention=evidence, contention_note=note)
    if cal.kind == "cpu":
        _possible_here(cal, read)
    return cal


def _nonempty(read: _Reader, field: str, curve: Curve) -> Curve:
    if not curve:
        raise read.fail(field, "holds no point")
    return curve


def _possible_here(cal: Calibration, read: _Reader) -> None:
    """Refuse FP32 rates this CPU cannot reach (IMPOSSIBLE_PEAK_FACTOR x its theoretical
    peak over every logical CPU: a generous bound, never a false refusal of a real fit)."""
    from chipfit.hardware.cpu import local_theoretical_peak

    peak = local_theoretical_peak(os.cpu_count() or 1)
    if peak is None:
        return
    for key, name, curves in (("matmul", "matmul", cal.matmul), ("conv", "conv", cal.conv)):
        for dtype, curve in curves:
            top = max((r for _, r in curve), default=0.0)
            if dtype.split("/")[0] in ("float32", "float64") and (
                    top > IMPOSSIBLE_PEAK_FACTOR * peak.flops):
                raise read.fail(f"{key} {dtype!r}", (
                    f"reaches {top / 1e9:,.0f} GFLOP/s, over {IMPOSSIBLE_PEAK_FACTOR:g}x this "
                    f"CPU's theoretical peak of {peak.flops / 1e9:,.0f} GFLOP/s ({peak.basis}): "
                    f"not a measurement of this {name}"))


def save_calibration(cal: Calibration, path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``cal`` atomically (a crash mid-write leaves the previous file whole); refuse
    (UnreliableError, the previous file kept) a fit that misses its own held-out checks or
    was measured while the machine was shared."""
    from chipfit.errors import UnreliableError

    why = refusal(cal)
    if why:
        raise UnreliableError(f"not stored: {why}")
    return write_json_atomic(path if path is not None else calibration_path(cal.device),
                             _to_dict(cal))


def load_calibration(device: str | DeviceRef | None = None,
                     path: str | os.PathLike[str] | None = None) -> Calibration | None:
    """The stored calibration of ``device`` (or the file at ``path``); None if there is none."""
    path = Path(path) if path is not None else calibration_path(device or "torch:cpu")
    if not path.exists():
        return None
    data = read_versioned_json(path, FORMAT, CALIBRATION_SCHEMA_VERSION, "calibration", _UPGRADE)
    return _from_dict(data, str(path), None if device is None else str(device))
