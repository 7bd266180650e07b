"""Energy meters: RAPL through Linux powercap for CPUs, NVML for NVIDIA GPUs.

A meter reads a cumulative energy counter in joules. Both counters are device-wide (RAPL:
the whole CPU package, all processes; NVML: the whole GPU), so a reading over a timed run
attributes everything the device did in that window to the run. When no counter is readable,
:func:`open_meter` says why and callers fall back to an estimate (TDP x utilization) that
they must label ``estimated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["EnergyMeter", "MeterUnavailable", "open_meter"]

POWERCAP = Path("/sys/class/powercap")


class EnergyMeter(Protocol):
    name: str

    def read_j(self) -> float: ...


@dataclass(frozen=True)
class MeterUnavailable:
    reason: str


class RaplMeter:
    """Sum of the top-level RAPL package domains (``intel-rapl:N``; AMD exposes the same)."""

    def __init__(self, domains: list[Path]) -> None:
        self.name = "rapl:" + ",".join(d.name for d in domains)
        self._domains = domains
        self._ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self._last = [self._raw(d) for d in domains]
        self._total_uj = 0

    @staticmethod
    def _raw(domain: Path) -> int:
        return int((domain / "energy_uj").read_text())

    def read_j(self) -> float:
        # The counters wrap at max_energy_range_uj: accumulate deltas modulo the range.
        for i, domain in enumerate(self._domains):
            now = self._raw(domain)
            self._total_uj += (now - self._last[i]) % (self._ranges[i] + 1)
            self._last[i] = now
        return self._total_uj / 1e6


class NvmlMeter:
    """Total energy since driver load, in millijoules (Volta and newer)."""

    def __init__(self, index: int) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.name = f"nvml:{index}"
        self.read_j()  # raises NVMLError_NotSupported on older GPUs

    def read_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3


def _rapl_domains(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)


def open_meter(kind: str, index: int = 0, root: Path = POWERCAP) -> Any:
    """An energy meter for a ``cpu`` or ``gpu`` (NVIDIA), or :class:`MeterUnavailable`."""
    if kind == "cpu":
        domains = _rapl_domains(root)
        if not domains:
            return MeterUnavailable(f"no RAPL domains under {root} (no powercap, or a VM)")
        try:
            return RaplMeter(domains)
        except (OSError, ValueError) as exc:
            return MeterUnavailable(f"RAPL counters unreadable: {exc} (root may be needed)")
    if kind == "gpu":
        try:
            return NvmlMeter(index)
        except ImportError:
            return MeterUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
        except Exception as exc:  # NVMLError subclasses: no driver, not supported ...
            return MeterUnavailable(f"NVML energy counter unavailable: {exc}")
    return MeterUnavailable(f"no energy counter for {kind} devices")
