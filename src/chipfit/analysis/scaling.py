"""Scaling results: measured step times over 1, 2, 4 ... N devices, and their efficiency.

Shared by both scaling pipelines (:mod:`chipfit.pipelines.scale_jax`,
:mod:`chipfit.pipelines.scale_torch`). ``efficiency = (T1 * B_N / B_1) / (N * T_N)``: the
throughput on N devices over N times the throughput on one; 1.0 is perfect weak or strong
scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chipfit.results import Measurement

__all__ = ["FORMAT", "SCALINGS", "SCHEMA_VERSION", "ScalingPoint", "ScalingResult",
           "device_counts"]

SCALINGS = ("weak", "strong")
#: JSON written by ``ScalingResult.to_dict`` (``chipfit scale --json``). History:
#: 1. chipfit 0.1: scaling settings and, per device count, batch, efficiency and measurement.
SCHEMA_VERSION = 1
FORMAT = "chipfit-scaling"


@dataclass(frozen=True)
class ScalingPoint:
    """One measured device count: the global batch it ran and the step's timing."""

    devices: int
    global_batch: int
    measurement: Measurement

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.devices

    @property
    def throughput(self) -> float:
        """Samples per second over all devices (measured)."""
        return self.measurement.throughput


@dataclass(frozen=True)
class ScalingResult:
    """A scaling sweep; ``points[0]`` is the one-device baseline. All figures are measured."""

    workload: str
    mode: str
    dtype: str
    platform: str
    scaling: str  # weak | strong
    points: tuple[ScalingPoint, ...]
    simulated: bool = False
    source: str = "measured"

    @property
    def baseline(self) -> ScalingPoint:
        return self.points[0]

    def speedup(self, point: ScalingPoint) -> float:
        """Throughput on ``point.devices`` devices over throughput on one."""
        return point.throughput / self.baseline.throughput

    def efficiency(self, point: ScalingPoint) -> float:
        """(T1 * B_N / B_1) / (N * T_N): 1.0 is perfect weak or strong scaling."""
        return self.speedup(point) / point.devices

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None), with format and schema version."""
        points = [{"devices": p.devices, "global_batch": p.global_batch,
                   "per_device_batch": p.per_device_batch, "median_s": p.measurement.median_s,
                   "throughput": p.throughput, "speedup": self.speedup(p),
                   "efficiency": self.efficiency(p), "measurement": p.measurement.to_dict()}
                  for p in self.points]
        return _finite({"format": FORMAT, "schema_version": SCHEMA_VERSION,
                        "workload": self.workload, "mode": self.mode, "dtype": self.dtype,
                        "platform": self.platform, "scaling": self.scaling,
                        "simulated": self.simulated, "source": self.source, "points": points})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def device_counts(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n`` (``n`` itself always included)."""
    counts, c = [], 1
    while c < n:
        counts.append(c)
        c *= 2
    return counts + [n]
