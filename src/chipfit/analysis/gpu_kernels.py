"""Per-operator-class GPU kernel latency models: pure functions of shapes and device figures.

Every model here predicts the *device* time of one kernel from the operator's shapes and the
GPU's own architectural figures (:class:`GpuFigures`: SM count, FP32 lanes per SM, boost
clock, memory bandwidth, L2 size, board power), with a handful of parameters
(:class:`GpuParams`) fitted across GPUs (:mod:`chipfit.analysis.gpu_fit`). Nothing is keyed
by GPU name, so a GPU without kernel data is predicted from its datasheet alone.

The models (why each shape):

- **GEMM / batched GEMM** (``gemm_seconds``): cuBLAS splits the output into tiles (one
  thread block each); an SM works through its share of tiles in turn, so time goes in steps
  of ``ceil(tiles / SMs)`` (wave quantisation, partial last wave). Small tiles reuse less of
  what they load, so they run below the SM's peak: efficiency ``e_max / (1 + a (1/tm + 1/tn))``.
  A short K leaves the fixed prologue/epilogue of a tile exposed (``k0`` extra columns of K).
  Skinny outputs with a long K are split along K (split-K), paying a reduction. The
  library's heuristic is approximated by the fastest of these candidates, bounded below by
  the memory roofline (Williams et al., CACM 2009).
- **Sustained clock** (``sustained_fraction``): low-power boards (T4, P4, L4 at 70-75 W)
  cannot hold the boost clock under dense FP32 math: ``min(1, (TDP / P) ** b)``, fitted.
- **SM issue slots** (``_simt_e_max``): where one warp scheduler feeds 32 FP32 lanes with
  one dispatch per clock (GA10x, Ada, Hopper, Blackwell), an SGEMM's loads and address
  arithmetic take FMA issue slots; the factor is calibrated on published SGEMM figures of
  an RTX A6000 and an RTX 4070 Ti (no such GPU is in the kernel data).
- **Kernel benchmark vs model run**: the fit divides out the kernel sweep's slowdown of long
  dense kernels (``gpu_fit.sweep_slowdown``: back-to-back repetitions hold the board at its
  power limit); the models here give the time inside a model run.
- **Elementwise** (``elementwise_seconds``): bytes / (bandwidth x efficiency), faster when
  the operands fit in L2 (repeated calls hit L2), or compute-bound at ``c_op`` FLOPs per
  element for transcendental ops (``pow``, ``gelu``, ``tanh``), plus a device latency.
- **Row-wise reductions** (softmax, layer norm; ``rowwise_seconds``): one block per row, so
  with fewer rows than ``r x SMs`` only part of the GPU streams memory.
- **Convolution** (``conv_seconds``): implicit GEMM (M = N·Ho·Wo, N = C_out, K = C_in·k·k)
  on the GEMM model, 3x3 stride-1 ones Winograd-eligible (fewer multiplies, fitted factor).
- **Embedding / gather, copies and everything else**: bandwidth curve with a latency floor.
- **Fused attention** (``attention_seconds``): QK^T and AV as batched GEMMs without the
  score matrix round trip (flash / memory-efficient kernels).
- **Recurrent layers** (``rnn_seconds``): cuDNN runs the input projection for all steps as
  one GEMM and the recurrence as one small GEMM per step with a per-step sync floor.

Tensor-core precisions use the GEMM model with the device's tensor peak at the catalog's
sourced matmul efficiency instead of the fitted FP32 ``e_max`` (there is no tensor-core kernel
data to fit): see :mod:`chipfit.analysis.gpu_precision`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from chipfit.hardware.gpu_arch import GpuFigures

__all__ = ["SINGLE_ISSUE_EVIDENCE", "SINGLE_ISSUE_SOURCE", "GpuFigures", "GpuParams", "TILES",
           "attention_seconds", "conv_seconds", "elementwise_seconds", "gemm_seconds", "memory_seconds",
           "rnn_seconds", "rowwise_seconds", "sgemm_efficiency", "single_issue_for",
           "single_issue_from_evidence", "single_issue_spread", "sustained_fraction"]

#: Output tiles (rows x columns) the GEMM model chooses among: the SGEMM tile shapes cuBLAS
#: kernels are named after in the kernel data (``*_sgemm_128x128_nn``, ``..._32x128_tn``, ...).
TILES = ((128, 128), (128, 64), (64, 128), (64, 64), (32, 128), (128, 32), (32, 32))
SPLIT_K = (1, 2, 4, 8, 16)
_TILE_M = np.array([float(tm) for tm, _ in TILES])
_TILE_N = np.array([float(tn) for _, tn in TILES])
_SPLITS = np.array([float(s) for s in SPLIT_K])
BATCHED_MIN_TILE = 64 * 64
#: NVIDIA GPUs launched before Volta (compute capability < 7.0) run cuBLAS's Maxwell-era
#: SGEMM kernels (``maxwell_sgemm_*`` on P100 and P4 in the kernel data), which reach a lower
#: share of peak than the ``volta_sgemm_*``/``ampere_sgemm_*`` kernels of later GPUs.
PRE_VOLTA_YEAR = 2017
ELEMENTWISE_OPS = ("add", "addu", "mul", "mulu", "div", "divu", "pow", "powu", "relu", "gelu",
                   "tanh")


@dataclass(frozen=True)
class GpuParams:
    """Fitted parameters of the kernel models (names and meaning in :data:`DEFAULTS`)."""

    values: tuple[tuple[str, float], ...]

    def __getitem__(self, name: str) -> float:
        value = self._lookup.get(name)
        return DEFAULTS[name] if value is None else value

    @cached_property
    def _lookup(self) -> dict[str, float]:
        """``values`` as a dict, built once: a fit reads parameters tens of thousands of
        times (not a field: equality, hashing and the repr stay the values')."""
        return dict(self.values)

    def with_values(self, **kw: float) -> GpuParams:
        merged = dict(self.values)
        merged.update(kw)
        return GpuParams(tuple(sorted(merged.items())))

    @classmethod
    def of(cls, mapping: Mapping[str, float]) -> GpuParams:
        return cls(tuple(sorted((k, float(v)) for k, v in mapping.items())))


#: Starting values (and the values used for anything a fit leaves out).
DEFAULTS: dict[str, float] = {
    "gemm_e_max": 0.92,       # best FP32 tile efficiency relative to the sustained peak
    "gemm_a": 6.0,            # tile-size penalty: e = e_max / (1 + a (1/tm + 1/tn))
    "gemm_k0": 24.0,          # fixed per-tile work in K columns (prologue/epilogue)
    "gemm_gran": 16.0,        # rows/columns of a partial tile are computed in groups of this
    # SGEMM efficiency factor on SMs where an FP32 FMA stream takes every issue slot
    # (``GpuFigures.ffma_issue_share`` 1: GA10x, Ada, Hopper, Blackwell: 128 FP32 lanes per
    # SM, so also half the registers per lane), so the loads and address arithmetic of the
    # SGEMM loop take FMA slots. No such GPU is in the kernel data (the P4's 128-lane GP104
    # SM dual-issues): calibrated after each fit on two published microbenchmarks
    # (:data:`SINGLE_ISSUE_EVIDENCE`).
    "gemm_single_issue": 0.65,
    "gemm_latency_us": 4.0,   # device-side latency of a GEMM kernel
    "gemm_prevolta": 0.8,     # efficiency factor of pre-Volta SGEMM kernels
    "splitk_us": 3.0,         # extra latency of a split-K reduction
    "power_ref_w": 150.0,     # board power above which the boost clock holds
    "power_beta": 1.0,        # how fast the sustained clock falls from boost towards base
    "mem_eff": 0.80,          # streaming efficiency of elementwise kernels
    "l2_gain": 0.8,           # bandwidth gain when operands fit in L2
    "ew_latency_us": 3.0,
    "c_pow": 8.0, "c_gelu": 12.0, "c_tanh": 8.0, "c_div": 2.0, "c_other": 1.0,
    "softmax_eff": 0.6, "softmax_rows": 2.0,
    "ln_eff": 0.5, "ln_rows": 2.0,
    "conv_scale": 1.0,        # implicit GEMM relative to a plain GEMM of that size (a 1x1
                              # convolution is one); not fitted: the data has 3x3 ones only
    "winograd_gain": 1.6,     # speed-up of Winograd-eligible (3x3, stride 1) convolutions
    "conv_latency_us": 6.0,
    "attn_scale": 1.3,        # fused attention relative to its two GEMMs
    "rnn_step_us": 6.0,       # per-step floor of a cuDNN recurrent kernel
    # slowdown of long dense kernels in the kernel benchmark's back-to-back repetitions
    # (``gpu_fit.sweep_slowdown``; describes the measurement, not used for model runs)
    "sweep_tau_ms": 1000.0, "sweep_gamma": 1.0,
}


def sustained_fraction(dev: GpuFigures, p: GpuParams) -> float:
    """Share of the boost clock a board holds under dense math: ``min(1, (TDP / P) ** b)``.

    Low-power boards (70-75 W: T4, P4, L4) cannot hold their boost clock under sustained
    FP32 math; boards above ``P`` watts can. ``P`` and ``b`` are fitted. (A floor at the
    datasheet base clock was tried and rejected: docs/GPU_MODELS.md, "Device features".)
    """
    if not dev.tdp_w or not math.isfinite(dev.tdp_w):
        return 1.0
    return float(min(1.0, (dev.tdp_w / p["power_ref_w"]) ** p["power_beta"]))


#: The published microbenchmarks the single-issue factor is calibrated on: cuBLAS FP32 SGEMM
#: on two GPUs with single-issue SMs (none is in the kernel data).
#: - RTX A6000 (GA102: 84 SMs of 128 FP32 lanes, 1800 MHz boost, 768 GB/s, 6 MB L2, 300 W;
#:   NVIDIA GA102 whitepaper / RTX A6000 datasheet), 4096^3 at 23,270 GFLOP/s (abhik.ai
#:   "CUDA matrix multiplication optimization", CUDA 12.x, retrieved 2026-12-07; the same
#:   figure, 23,250, in S. Boehm "How to Optimize a CUDA Matmul Kernel", siboehm.com 2022):
#:   60% of its boost-clock peak.
#: - RTX 4070 Ti (AD104: 60 SMs of 128 lanes, 2610 MHz boost, 504 GB/s, 48 MB L2, 285 W;
#:   NVIDIA Ada whitepaper and RTX 4070 Ti specifications), 5120 x 4096 x 4096 at 29.17
#:   TFLOP/s (github.com/Yinghan-Li/YHs_Sample issue 4, 2023-11-28; the same table has the
#:   A100 80GB PCIe at 18.88 of 19.49 TFLOP/s): 73% of its boost-clock peak.
SINGLE_ISSUE_EVIDENCE = (
    {"gpu": GpuFigures(key="rtx-a6000", name="NVIDIA RTX A6000", sms=84, lanes_per_sm=128,
                       boost_mhz=1800.0, mem_bw_gbs=768.0, l2_mb=6.0, tdp_w=300.0,
                       year=2020.0, shared_int32=True, architecture="ampere", tensor_gen=3),
     "m": 4096, "n": 4096, "k": 4096, "tflops": 23.27,
     "source": "cuBLAS SGEMM 4096^3 on an RTX A6000, 23.27 TFLOP/s (abhik.ai; siboehm.com "
               "2022: 23.25)"},
    {"gpu": GpuFigures(key="rtx-4070-ti", name="NVIDIA GeForce RTX 4070 Ti", sms=60,
                       lanes_per_sm=128, boost_mhz=2610.0, mem_bw_gbs=504.0, l2_mb=48.0,
                       tdp_w=285.0, year=2023.0, shared_int32=True, architecture="ada",
                       tensor_gen=4),
     "m": 5120, "n": 4096, "k": 4096, "tflops": 29.17,
     "source": "cuBLAS SGEMM 5120x4096x4096 on an RTX 4070 Ti, 29.17 TFLOP/s "
               "(github.com/Yinghan-Li/YHs_Sample issue 4)"},
)
SINGLE_ISSUE_SOURCE = ("the geometric mean of two published cuBLAS SGEMM figures on single-issue "
                       "SMs: " + "; ".join(e["source"] for e in SINGLE_ISSUE_EVIDENCE))


def single_issue_for(p: GpuParams, evidence: Mapping[str, Any]) -> float:
    """``gemm_single_issue`` that makes the GEMM model reproduce one published figure under
    parameters ``p`` (compute-bound there, so its time scales as 1 / factor)."""
    q = p.with_values(gemm_single_issue=1.0)
    latency = q["gemm_latency_us"] * 1e-6
    m, n, k = evidence["m"], evidence["n"], evidence["k"]
    t1 = float(gemm_seconds(evidence["gpu"], q, 1, m, n, k)) - latency
    measured = 2.0 * m * n * k / (evidence["tflops"] * 1e12) - latency
    return float(min(1.0, max(t1 / measured, 0.05)))


def single_issue_from_evidence(p: GpuParams) -> float:
    """The geometric mean over :data:`SINGLE_ISSUE_EVIDENCE` of :func:`single_issue_for`."""
    factors = [single_issue_for(p, e) for e in SINGLE_ISSUE_EVIDENCE]
    return float(math.exp(sum(math.log(f) for f in factors) / len(factors)))


def single_issue_spread(p: GpuParams) -> float:
    """How far the published figures' own factors lie from their geometric mean, as a
    multiplicative band (the largest ``max(f / mean, mean / f) - 1``): the calibration's
    uncertainty, which the bands of single-issue FP32 predictions add."""
    mean = single_issue_from_evidence(p)
    return float(max(max(f / mean, mean / f) for f in
                     (single_issue_for(p, e) for e in SINGLE_ISSUE_EVIDENCE)) - 1.0)


def sgemm_efficiency(dev: GpuFigures, p: GpuParams) -> float:
    """Best-tile FP32 SIMT GEMM efficiency relative to the boost-clock peak, with every
    device factor (sustained clock, issue slots, pre-Volta kernels)."""
    return _simt_e_max(dev, p) * sustained_fraction(dev, p)


def _simt_e_max(dev: GpuFigures, p: GpuParams) -> float:
    e_max = p["gemm_e_max"]
    if dev.ffma_issue_share > 0.75:
        e_max *= p["gemm_single_issue"]
    if dev.vendor == "NVIDIA" and dev.year < PRE_VOLTA_YEAR:
        e_max *= p["gemm_prevolta"]
    return e_max


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def gemm_seconds(dev: GpuFigures, p: GpuParams, b: Any, m: Any, n: Any, k: Any, *,
                 peak: float | None = None, efficiency: float | None = None,
                 elem_bytes: float = 4.0) -> np.ndarray:
    """Device seconds of ``b`` GEMMs of (m x k)·(k x n) (arrays broadcast).

    ``peak``/``efficiency`` override the FP32 SIMT rate (tensor-core precisions); a board
    under its power cap holds the same share of its boost clock for either
    (:func:`sustained_fraction`: a 70 W T4 runs a 4096^3 FP16 cuBLAS GEMM at about 24 of its
    65 TFLOP/s, NVIDIA developer forum thread 264462, "About GPU peak performance", where
    NVIDIA's reply puts it down to power capping; this model: 26). A tile
    larger than the matrix only does the work of the rows and columns it covers, rounded up
    to ``gemm_gran`` (threads past the edge are predicated off in groups). Batched GEMMs
    (``b > 1``) run one large tile shape and no split-K, as cuBLAS's batched kernels do in
    the kernel data.
    """
    b, m, n, k = (np.maximum(_arr(x), 1.0) for x in (b, m, n, k))
    if peak is None:
        peak = dev.fp32_flops * sustained_fraction(dev, p)
        e_max = _simt_e_max(dev, p)
    else:
        # tensor-core efficiencies are measured on boards above the power knee (MAMF: A100,
        # H100, GH200), so the cap applies on top of them as it does to the FP32 lanes
        peak = peak * sustained_fraction(dev, p)
        e_max = efficiency if efficiency is not None else p["gemm_e_max"]
    per_sm = peak / dev.sms
    bw = dev.bandwidth * p["mem_eff"]
    # Every (tile, split-K) candidate at once, on two leading axes (tile, split): the same
    # arithmetic, element by element, as one candidate at a time, without 35 rounds of numpy
    # calls on small arrays (a fit evaluates this thousands of times).
    shape = np.broadcast(b, m, n, k).shape
    lead = (1,) * len(shape)
    tm = _TILE_M.reshape((-1, 1) + lead)
    tn = _TILE_N.reshape((-1, 1) + lead)
    s = _SPLITS.reshape((1, -1) + lead)
    gran = p["gemm_gran"]
    batched = b > 1
    eff = e_max / (1.0 + p["gemm_a"] * (1.0 / tm + 1.0 / tn))
    tiles = b * np.ceil(m / tm) * np.ceil(n / tn)
    work_m = np.minimum(tm, np.ceil(m / gran) * gran)
    work_n = np.minimum(tn, np.ceil(n / gran) * gran)
    allowed = ~batched | (tm * tn >= BATCHED_MIN_TILE)
    ks = np.ceil(k / s)
    waves = np.ceil(tiles * s / dev.sms)
    t = waves * 2.0 * work_m * work_n * (ks + p["gemm_k0"]) / (per_sm * eff)
    t = np.where(np.where(s == 1, allowed, allowed & ~batched), t, np.inf)
    split = t[:, 1:] + (s[:, 1:] * b * m * n * elem_bytes * 2.0) / bw + p["splitk_us"] * 1e-6
    t[:, 1:] = np.where(ks[:, 1:] >= 128, split, np.inf)
    best = np.minimum(np.full(shape, np.inf), t.min(axis=(0, 1)))
    memory = elem_bytes * b * (m * k + k * n + m * n) / bw
    return np.maximum(best, memory) + p["gemm_latency_us"] * 1e-6


def _l2_bandwidth(dev: GpuFigures, p: GpuParams, nbytes: np.ndarray, eff: float) -> np.ndarray:
    gain = 1.0 + p["l2_gain"] * dev.l2_bytes / (dev.l2_bytes + nbytes)
    return dev.bandwidth * eff * gain


def elementwise_seconds(dev: GpuFigures, p: GpuParams, op: str, elements: Any,
                        nbytes: Any) -> np.ndarray:
    """Device seconds of an elementwise kernel over ``elements`` moving ``nbytes``."""
    elements, nbytes = _arr(elements), _arr(nbytes)
    base = op.rstrip("u") if op.endswith("u") and op[:-1] in ELEMENTWISE_OPS else op
    c = p[f"c_{base}"] if f"c_{base}" in DEFAULTS else p["c_other"]
    memory = nbytes / _l2_bandwidth(dev, p, nbytes, p["mem_eff"])
    compute = elements * c / (dev.fp32_flops * sustained_fraction(dev, p))
    return np.maximum(memory, compute) + p["ew_latency_us"] * 1e-6


def memory_seconds(dev: GpuFigures, p: GpuParams, nbytes: Any) -> np.ndarray:
    """A plain data-movement kernel (copy, gather, concatenation)."""
    nbytes = _arr(nbytes)
    return nbytes / _l2_bandwidth(dev, p, nbytes, p["mem_eff"]) + p["ew_latency_us"] * 1e-6


def rowwise_seconds(dev: GpuFigures, p: GpuParams, kind: str, rows: Any, cols: Any,
                    elem_bytes: float = 4.0) -> np.ndarray:
    """Softmax (``kind="softmax"``) or layer norm (``"ln"``) over ``rows`` rows of ``cols``."""
    rows, cols = _arr(rows), _arr(cols)
    nbytes = 2.0 * rows * cols * elem_bytes
    util = np.minimum(1.0, rows / (p[f"{kind}_rows"] * dev.sms))
    bw = _l2_bandwidth(dev, p, nbytes, p[f"{kind}_eff"]) * util
    return nbytes / bw + p["ew_latency_us"] * 1e-6


def conv_out(size: Any, kernel: Any, stride: Any, padding: Any) -> np.ndarray:
    return np.floor((_arr(size) + 2 * _arr(padding) - _arr(kernel)) / _arr(stride)) + 1


def conv_seconds(dev: GpuFigures, p: GpuParams, batch: Any, c_in: Any, c_out: Any,
                 kernel: Any, out_h: Any, out_w: Any, stride: Any, *, groups: Any = 1,
                 peak: float | None = None, efficiency: float | None = None,
                 elem_bytes: float = 4.0) -> np.ndarray:
    """Device seconds of a 2-D convolution as an implicit GEMM."""
    batch, c_in, c_out, kernel = _arr(batch), _arr(c_in), _arr(c_out), _arr(kernel)
    groups = np.maximum(_arr(groups), 1.0)
    m = batch * _arr(out_h) * _arr(out_w)
    gemm = gemm_seconds(dev, p, groups, m, c_out / groups, c_in / groups * kernel * kernel,
                        peak=peak, efficiency=efficiency, elem_bytes=elem_bytes)
    gemm = gemm - p["gemm_latency_us"] * 1e-6
    winograd = (kernel == 3) & (_arr(stride) == 1) & (groups == 1)
    scale = np.where(winograd, p["conv_scale"] / p["winograd_gain"], p["conv_scale"])
    return gemm * scale + p["conv_latency_us"] * 1e-6


def attention_seconds(dev: GpuFigures, p: GpuParams, batch_heads: Any, q_len: Any,
                      kv_len: Any, head_dim: Any, **gemm: Any) -> np.ndarray:
    """A fused attention kernel: QK^T and AV as batched GEMMs, scores kept on chip."""
    qk = gemm_seconds(dev, p, batch_heads, q_len, kv_len, head_dim, **gemm)
    av = gemm_seconds(dev, p, batch_heads, q_len, head_dim, kv_len, **gemm)
    return (qk + av) * p["attn_scale"]


def rnn_seconds(dev: GpuFigures, p: GpuParams, steps: int, batch: int, inputs: int,
                hidden: int, gates: int, layers: int = 1, directions: int = 1,
                **gemm: Any) -> float:
    """A cuDNN recurrent layer stack: one input GEMM per layer, one small GEMM per step."""
    total = 0.0
    for layer in range(layers):
        width = inputs if layer == 0 else hidden * directions
        x = gemm_seconds(dev, p, 1, steps * batch, gates * hidden, width, **gemm)
        h = gemm_seconds(dev, p, 1, batch, gates * hidden, hidden, **gemm)
        step = np.maximum(h, p["rnn_step_us"] * 1e-6)
        total += directions * float(x + steps * step)
    return total
