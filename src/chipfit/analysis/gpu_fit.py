"""Fitting the GPU kernel models on measured kernels: pure functions on arrays (numpy, scipy).

A measured kernel row (one eager PyTorch call timed with a synchronisation, as in the
NeuSight data) is modelled as ``floor(host, op) + device_seconds(row)``: ``floor`` is the
host's dispatch + launch + sync cost of that operator (one value per device and operator,
fitted beside the shared parameters; an unseen GPU gets the median over the GPUs fitted) and
``device_seconds`` is the kernel model of :mod:`chipfit.analysis.gpu_kernels` times the
benchmark's slowdown of long dense kernels (:func:`sweep_slowdown`), whose parameters are
shared by every GPU. Residuals are log ratios, so every size counts alike.

Leave-one-GPU-out (:func:`leave_one_out`) refits without a GPU and scores that GPU, using
only its datasheet figures and the median floors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipfit.analysis.gpu_kernels import (
    GpuFigures,
    GpuParams,
    conv_out,
    conv_seconds,
    elementwise_seconds,
    gemm_seconds,
    rowwise_seconds,
)

__all__ = ["GROUPS", "KernelRows", "FitResult", "device_seconds", "fit_group", "leave_one_out",
           "mape", "sweep_slowdown"]

#: Operator files of the kernel data per model group, and the parameters each group fits.
GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gemm": (("bmm", "linear"),
             ("gemm_e_max", "gemm_a", "gemm_k0", "power_ref_w", "power_beta",
              "splitk_us", "gemm_prevolta",
              "gemm_gran", "sweep_tau_ms", "sweep_gamma")),
    "elementwise": (("add", "addu", "mul", "mulu", "div", "divu", "pow", "powu", "relu",
                     "gelu", "tanh"),
                    ("mem_eff", "l2_gain", "c_pow", "c_gelu", "c_tanh", "c_div")),
    "rowwise": (("softmax", "ln"), ("softmax_eff", "softmax_rows", "ln_eff", "ln_rows")),
    "conv": (("conv",), ("winograd_gain",)),  # the data holds 3x3 stride-1 convs only
}
BINARY = ("add", "mul", "div", "pow")
#: Physical upper limits of fitted parameters: efficiencies are fractions of a peak. Without
#: them a fold that holds out the A100 drove ``gemm_e_max`` to 1.69 (above the peak).
PHYSICAL_MAX: dict[str, float] = {"gemm_e_max": 1.0, "gemm_prevolta": 1.0, "mem_eff": 1.0,
                                  "softmax_eff": 1.0, "ln_eff": 1.0}


@dataclass(frozen=True)
class KernelRows:
    """Measured kernels of one group: ``op`` and ``device`` per row, dims, seconds."""

    op: np.ndarray
    device: np.ndarray
    dims: Mapping[str, np.ndarray]
    seconds: np.ndarray

    def subset(self, mask: np.ndarray) -> KernelRows:
        return KernelRows(self.op[mask], self.device[mask],
                          {k: v[mask] for k, v in self.dims.items()}, self.seconds[mask])

    def __len__(self) -> int:
        return len(self.seconds)


@dataclass(frozen=True)
class FitResult:
    params: GpuParams
    floors: Mapping[tuple[str, str], float]  # (device key, op) -> seconds

    def floor(self, device: str, op: str) -> float:
        """A device's fitted floor for ``op``, else the median over the fitted devices."""
        if (device, op) in self.floors:
            return self.floors[device, op]
        values = [v for (d, o), v in self.floors.items() if o == op]
        return float(np.median(values)) if values else 20e-6


def device_seconds(rows: KernelRows, dev: GpuFigures, p: GpuParams) -> np.ndarray:
    """Device time of every row (all rows on ``dev``) as the kernel benchmark measured it:
    the kernel model times the sweep's slowdown of long matrix kernels (:func:`sweep_slowdown`)."""
    d = rows.dims
    out = np.zeros(len(rows))
    for op in np.unique(rows.op):
        mask = rows.op == op
        t = _op_seconds(str(op), {k: v[mask] for k, v in d.items()}, dev, p)
        out[mask] = t * sweep_slowdown(t, p) if str(op) in DENSE_OPS else t
    return out


#: Operators whose kernels keep every SM's FP32 lanes busy (full board power).
DENSE_OPS = ("bmm", "linear", "conv")


def sweep_slowdown(seconds: np.ndarray, p: GpuParams) -> np.ndarray:
    """Slowdown of a dense kernel in the kernel benchmark: ``1 + (t / tau) ** gamma``.

    The benchmark times each configuration in back-to-back repetitions, so a long dense
    kernel holds the board at full power for many seconds; its clock then falls to what
    power and cooling sustain (GPU Boost lowers the clock at the power or thermal limit).
    Model runs interleave those kernels with short memory-bound ones: the same GEMM shape
    measured inside a model run is faster (the op_labels: GPT-2 large's 4096x1280x50257
    LM head runs at 3.8 TFLOP/s on the P4 in the model run, 0.55 TFLOP/s in the kernel
    sweep). The factor describes the measurement, so only fits and kernel scores use it;
    whole-model predictions do not. ``tau``/``gamma`` are fitted, shared by every GPU.
    """
    return 1.0 + (np.asarray(seconds, float) / (p["sweep_tau_ms"] * 1e-3)) ** p["sweep_gamma"]


def _op_seconds(op: str, d: Mapping[str, np.ndarray], dev: GpuFigures,
                p: GpuParams) -> np.ndarray:
    if op == "bmm":
        return gemm_seconds(dev, p, d["B"], d["M"], d["N"], d["K"])
    if op == "linear":  # input B x M x K through a K -> N layer: one GEMM of (B M) x K x N
        return gemm_seconds(dev, p, 1, d["B"] * d["M"], d["N"], d["K"])
    if op in ("softmax", "ln"):
        return rowwise_seconds(dev, p, op, d["B"], d["H"])
    if op == "conv":
        size = conv_out(d["Input_Size"], d["Kernel_Szie"], d["Stride"], d["Padding"])
        return conv_seconds(dev, p, d["B"], d["Input_Channel"], d["Output_Channel"],
                            d["Kernel_Szie"], size, size, d["Stride"])
    elements = d["B"] * d["H"]
    tensors = 3.0 if op in BINARY else 2.0
    return elementwise_seconds(dev, p, op, elements, tensors * 4.0 * elements)


def _floor_keys(rows: KernelRows) -> list[tuple[str, str]]:
    return sorted({(str(d), str(o)) for d, o in zip(rows.device, rows.op, strict=True)})


def predict_rows(rows: KernelRows, devs: Mapping[str, GpuFigures],
                 fit: FitResult) -> np.ndarray:
    """Predicted measured seconds (floor + device time) of every row."""
    out = np.zeros(len(rows))
    for key in np.unique(rows.device):
        mask = rows.device == key
        sub = rows.subset(mask)
        floors = np.array([fit.floor(str(key), str(o)) for o in sub.op])
        out[mask] = floors + device_seconds(sub, devs[str(key)], fit.params)
    return out


def fit_group(group: str, rows: KernelRows, devs: Mapping[str, GpuFigures],
              start: GpuParams, names: Sequence[str] | None = None) -> FitResult:
    """Least-squares fit (log residuals) of a group's shared parameters and per-host floors."""
    from scipy.optimize import least_squares

    names = tuple(names if names is not None else GROUPS[group][1])
    keys = _floor_keys(rows)
    x0 = np.log([start[n] for n in names] + [20e-6] * len(keys))
    per_dev = {k: (rows.device == k) for k in np.unique(rows.device)}
    subs = {k: rows.subset(m) for k, m in per_dev.items()}
    floor_index = {k: i for i, k in enumerate(keys)}
    row_floor = {k: np.array([floor_index[(str(k), str(o))] for o in s.op])
                 for k, s in subs.items()}
    target = {k: np.log(s.seconds) for k, s in subs.items()}
    weight = {k: np.sqrt(row_weights(s.seconds)) for k, s in subs.items()}

    def residuals(x: np.ndarray) -> np.ndarray:
        params = start.with_values(**dict(zip(names, np.exp(x[:len(names)]), strict=True)))
        floors = np.exp(x[len(names):])
        parts = []
        for k, s in subs.items():
            pred = floors[row_floor[k]] + device_seconds(s, devs[str(k)], params)
            parts.append((np.log(pred) - target[k]) * weight[k])
        return np.concatenate(parts)

    # A floor cannot exceed the fastest call measured for that host and operator.
    ceiling = [float(np.log(np.min(rows.seconds[(rows.device == d) & (rows.op == o)])))
               for d, o in keys]
    # Parameters may move a factor of 1000 either way from their starting values; an
    # efficiency (a fraction of a datasheet peak) may not exceed 1.
    lower = list(x0[:len(names)] - 6.9) + [np.log(1e-6)] * len(keys)
    upper = [min(x + 6.9, np.log(PHYSICAL_MAX.get(n, np.inf))) for n, x in
             zip(names, x0[:len(names)], strict=True)] + ceiling
    x0 = np.minimum(np.maximum(x0, np.array(lower) + 1e-9), np.array(upper) - 1e-9)
    sol = least_squares(residuals, x0, loss="soft_l1", f_scale=0.3, max_nfev=60 * len(x0),
                        bounds=(lower, upper))
    params = start.with_values(**dict(zip(names, np.exp(sol.x[:len(names)]), strict=True)))
    floors = {k: float(np.exp(sol.x[len(names) + i])) for i, k in enumerate(keys)}
    return FitResult(params, floors)


def row_weights(seconds: np.ndarray) -> np.ndarray:
    """Weight of a row in the fit: ``log10(t / 20 us)`` clipped to [0.05, 3], squared.

    Rows near the host floor say little about the kernel model, and whole-model time is
    spent in long kernels, so kernels of milliseconds count most.
    """
    return np.clip(np.log10(np.maximum(seconds, 1e-9) / 20e-6), 0.05, 3.0) ** 2


def mape(pred: Any, actual: Any) -> float:
    """Mean absolute percentage error (as a fraction)."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    return float(np.mean(np.abs(pred - actual) / actual)) if len(actual) else float("nan")


def leave_one_out(group: str, rows: KernelRows, devs: Mapping[str, GpuFigures],
                  start: GpuParams) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
    """Held-out GPU -> (MAPE, predicted, measured) with that GPU left out of the fit."""
    out = {}
    for key in np.unique(rows.device):
        held = rows.device == key
        fit = fit_group(group, rows.subset(~held), devs, start)
        test = rows.subset(held)
        pred = predict_rows(test, devs, fit)
        out[str(key)] = (mape(pred, test.seconds), pred, test.seconds)
    return out
