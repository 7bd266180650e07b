"""Calibrations as values: a device's measured rates and overheads, the curves fitted to
them, and the predictor's roofs that follow. Pure: :mod:`chipfit.pipelines.calibrate`
measures the points and stores the files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from chipfit.analysis.roofline import Curve, Roofs, cpu_recurrent_seconds
from chipfit.cost.records import OpCost
from chipfit.timing import stats
from chipfit.timing.contention import judge

__all__ = ["MAX_BYTES_PER_S", "MAX_FLOPS_PER_S", "MAX_OVERHEAD_S", "CalPoint", "Calibration",
           "contention_of", "fit_curve", "net_rate", "recurrent_step_floor", "refusal",
           "roofs_from_calibration"]

#: Rates no single device reaches: a calibration file claiming more was not measured (the
#: largest accelerators of 2025 reach about 1e16 dense low-precision FLOP/s and 8e12 B/s of
#: HBM; a CPU's L1 summed over 192 cores about 4e13 B/s). One decade of headroom on each.
MAX_FLOPS_PER_S = 1e17
MAX_BYTES_PER_S = 1e15
#: A host overhead per operator, view, module or program call (and a streamed matrix's fixed
#: time) is microseconds; a second is no measurement of either.
MAX_OVERHEAD_S = 1.0

# Below this share of the measured time, a point is dominated by dispatch: its net time is
# floored here so the derived rate stays finite (the point still predicts its own time).
_MIN_NET_SHARE = 0.2


@dataclass(frozen=True)
class CalPoint:
    """One calibration measurement: median seconds per call of ``probe`` at ``size``."""

    probe: str  # matmul | conv | stream | dispatch | view | module | call | h2d | d2h
    dtype: str
    size: str
    work: float  # FLOPs (matmul, conv) or bytes (stream, copies) per call
    seconds: float  # the fast quantile (FAST_QUANTILE) of the per-call times
    median_s: float = math.nan
    rel_ci: float = math.nan
    source: str = "measured"


@dataclass(frozen=True)
class Calibration:
    """A device's achievable rates and overheads, measured here (``source="measured"``)."""

    device: str
    name: str
    kind: str
    backend: str
    created_at: str
    chipfit_version: str
    machine: tuple[tuple[str, str], ...]
    points: tuple[CalPoint, ...]
    matmul: tuple[tuple[str, Curve], ...]
    conv: tuple[tuple[str, Curve], ...]
    bandwidth: Curve
    host_per_op_s: float = 0.0
    host_per_view_s: float = 0.0
    host_per_module_s: float = 0.0
    host_per_call_s: float = 0.0
    h2d_bw: float | None = None
    d2h_bw: float | None = None
    asynchronous: bool = False
    checks: tuple[tuple[str, float, float], ...] = ()  # (case, predicted_s, measured_s)
    memory_bytes: float | None = None
    class_bandwidth: tuple[tuple[str, Curve], ...] = ()  # kind -> bytes/s over bytes
    pool: Curve = ()  # max-pool output elements/s over output elements
    # few-row linear layers whose weights stream from beyond the private caches (a decode
    # step's weights), over rows (pipelines.calibrate.STREAM_ROWS): "<dtype>/stream_bw"
    # (weight bytes/s) and "<dtype>/stream_fixed" (seconds per matrix)
    streamed: tuple[tuple[str, Curve], ...] = ()
    private_cache_bytes: float | None = None  # L2 over the cores we may use
    llc_bytes: float | None = None  # last-level cache
    source: str = "measured"
    contended: bool | None = None  # was the machine shared while it was measured (None: unknown)
    contention: tuple[tuple[str, float], ...] = ()
    contention_note: str = ""

    @property
    def check_mape(self) -> float | None:
        """Median absolute percentage error of the held-out checks (0.08 = 8%)."""
        errors = sorted(abs(p - m) / m for _, p, m in self.checks if m > 0)
        if not errors:
            return None
        mid = len(errors) // 2
        return errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2


def contention_of(cal: Calibration) -> tuple[bool | None, str]:
    """Was ``cal`` measured while the machine was shared, and why: its own verdict, or its
    stored evidence judged again (a file cannot call busy evidence quiet)."""
    again = judge(dict(cal.contention)) if cal.contention else None
    if again is not None and again.contended:
        return True, cal.contention_note or again.note
    return cal.contended, cal.contention_note


def refusal(cal: Calibration) -> str | None:
    """Why ``cal`` must be neither stored nor used (None: it may): see
    :func:`chipfit.analysis.trust.calibration_refusal`."""
    from chipfit.analysis.trust import calibration_refusal

    return calibration_refusal(cal.device, cal.check_mape, *contention_of(cal))


def net_rate(work: float, seconds: float, overhead: float) -> float:
    """Work per second net of the per-call ``overhead`` (floored: see _MIN_NET_SHARE)."""
    net = max(seconds - overhead, seconds * _MIN_NET_SHARE)
    return work / net


def fit_curve(points: Iterable[CalPoint], overhead: float) -> Curve:
    """Curve of (work, rate) sorted by work, net of the overhead; equal works are merged
    (geometric mean of their rates)."""
    by_work: dict[float, list[float]] = {}
    for p in points:
        by_work.setdefault(p.work, []).append(math.log(net_rate(p.work, p.seconds, overhead)))
    return tuple((w, math.exp(sum(r) / len(r))) for w, r in sorted(by_work.items()))


def recurrent_step_floor(cal: Calibration, roofs: Roofs) -> float:
    """Seconds a fused recurrent layer's time step costs beyond streaming its weights or
    computing (:func:`chipfit.analysis.roofline.cpu_recurrent_seconds` with no floor),
    from the calibration's one-layer LSTM points: the median over them of
    ``(measured - modelled) / steps``, at least 0. 0 where none was measured."""
    floors = []
    for p in cal.points:
        if p.probe != "recurrent" or p.dtype != "float32":
            continue
        try:
            hidden, steps = (int(v) for v in p.size.split("h"))
        except ValueError:
            continue
        op = OpCost("mkldnn_rnn_layer", "recurrent", "float32", p.work, 0.0,
                    shapes=((steps, 1, hidden), (4 * hidden, hidden), (4 * hidden, hidden)))
        modelled = cpu_recurrent_seconds(op, replace(roofs, rnn_step_s=0.0))
        if modelled is not None and steps > 0:
            floors.append(max(0.0, (p.seconds - sum(modelled)) / steps))
    return stats.median(floors) if floors else 0.0


def roofs_from_calibration(cal: Calibration, band: float | None = None,
                           band_basis: str = "") -> Roofs:
    """The predictor's view of a calibration. The band defaults to the held-out check error."""
    if band is None:
        check = cal.check_mape
        band = check if check is not None else 0.25
        band_basis = (f"calibration held-out checks (median error {check:.0%})"
                      if check is not None else "default 25% (no checks stored)")
    rows = tuple((f"matmul {d} best GFLOP/s", max(r for _, r in c) / 1e9, "measured")
                 for d, c in cal.matmul if c)
    rows += (("bandwidth best GB/s", max(r for _, r in cal.bandwidth) / 1e9, "measured"),)
    roofs = Roofs(
        key=cal.device, name=cal.name, kind=cal.kind, basis="calibrated", matmul=cal.matmul,
        conv=tuple((d, c) for d, c in cal.conv if c), bandwidth=cal.bandwidth,
        vector_flops=None, host_per_op_s=cal.host_per_op_s, host_per_view_s=cal.host_per_view_s,
        host_per_module_s=cal.host_per_module_s, host_per_call_s=cal.host_per_call_s,
        kernel_floor_s=0.0, asynchronous=cal.asynchronous, h2d_bw=cal.h2d_bw, d2h_bw=cal.d2h_bw,
        band=band, band_basis=band_basis, efficiency=rows,
        notes=(f"calibrated {cal.created_at} (chipfit {cal.chipfit_version})",) + (
            (f"calibrated while the machine was shared ({cal.contention_note}); its held-out "
             "checks passed",) if cal.contended else ()),
        memory_bytes=cal.memory_bytes, class_bandwidth=cal.class_bandwidth, pool=cal.pool,
        llc_bytes=cal.llc_bytes if cal.kind == "cpu" else None,
    )
    floor = recurrent_step_floor(cal, roofs) if cal.kind == "cpu" else 0.0
    if floor:
        roofs = replace(roofs, rnn_step_s=floor, efficiency=rows + (
            ("recurrent step floor us", floor * 1e6, "measured"),))
    return roofs
