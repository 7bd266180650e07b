"""PyTorch backend: CPU, CUDA and ROCm GPUs, Apple MPS, Intel XPU, and XLA (TPU) devices.

Fencing uses the device's own synchronize, picked from the device object (``torch.accelerator``
first, then the device-type module, then XLA's ``wait_device_ops``), never by matching names.
"""

from __future__ import annotations

import contextlib
from typing import Any

from chipfit.backends.base import Backend, Session
from chipfit.hardware.cpu import maxrss_bytes, probe_cpu, rss_growth
from chipfit.results import DeviceInfo, Problem
from chipfit.spec import DeviceRef

__all__ = ["TorchBackend"]

_ACCELERATOR_TYPES = ("cuda", "mps", "xpu")  # torch device types discovered below


def _tree_map(fn: Any, value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_tree_map(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _tree_map(fn, v) for k, v in value.items()}
    return fn(value) if hasattr(value, "to") else value


class _CpuSession(Session):
    copies = False

    def __init__(self, ref: DeviceRef) -> None:
        import psutil
        import torch

        super().__init__(ref, torch.device("cpu"))
        self._torch = torch
        self._proc = psutil.Process()
        self._saved_threads = torch.get_num_threads()
        if ref.threads is not None:
            torch.set_num_threads(ref.threads)
        self._base_rss = self._base_maxrss = 0

    def wait(self, out: Any) -> None:
        """CPU kernels in eager torch return when done: nothing to wait for."""

    def memory_reset(self) -> None:
        self._base_rss = self._proc.memory_info().rss
        self._base_maxrss = maxrss_bytes()

    def memory_peak(self) -> tuple[int | None, str]:
        # Resident-set growth: the current RSS, or the process high-water mark if this run
        # raised it. Transient peaks below an earlier high-water mark are not visible.
        return rss_growth(self._base_rss, self._base_maxrss), "rss-growth"

    def energy_meter(self) -> Any:
        from chipfit.hardware.energy import open_meter

        return open_meter("cpu")

    def is_oom(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, MemoryError) or "can't allocate memory" in text or (
            "not enough memory" in text)

    def close(self) -> None:
        self._torch.set_num_threads(self._saved_threads)


class _EventTimer:
    """Device-side elapsed time from torch's device-agnostic events."""

    def __init__(self, torch: Any, device: Any) -> None:
        self._torch, self._device = torch, device

    def start(self) -> Any:
        start = self._torch.Event(device=self._device, enable_timing=True)
        start.record()
        return start

    def stop(self, token: Any) -> float:
        end = self._torch.Event(device=self._device, enable_timing=True)
        end.record()
        end.synchronize()
        return token.elapsed_time(end) / 1e3


def _synchronizer(torch: Any, device: Any) -> Any:
    if device.type == "xla":
        # XLA tensors are lazy: a call only records a graph. torch_xla.sync() cuts it and
        # launches it asynchronously (xm.mark_step before torch_xla 2.4); wait_device_ops()
        # then blocks until every local device has finished what was launched.
        import torch_xla
        import torch_xla.core.xla_model as xm

        launch = getattr(torch_xla, "sync", None) or xm.mark_step

        def xla_sync() -> None:
            launch()
            xm.wait_device_ops()

        return xla_sync
    acc = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if acc is not None and acc.type == device.type:
        return lambda: torch.accelerator.synchronize(device)
    module = getattr(torch, device.type, None)
    if module is None or not hasattr(module, "synchronize"):
        raise RuntimeError(f"torch has no synchronize for device type {device.type!r}")
    return module.synchronize


class _AcceleratorSession(Session):
    def __init__(self, ref: DeviceRef) -> None:
        import torch

        device = torch.device(ref.platform, ref.index or 0)
        super().__init__(ref, device)
        self._torch = torch
        self._sync = _synchronizer(torch, device)
        acc = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
        self._acc_stats = acc is not None and acc.type == device.type

    def wait(self, out: Any) -> None:
        self._sync()

    def to_device(self, value: Any) -> Any:
        return _tree_map(lambda t: t.to(self.handle), value)

    def to_host(self, value: Any) -> Any:
        return _tree_map(lambda t: t.to("cpu"), value)

    def memory_reset(self) -> None:
        if self._acc_stats:
            self._torch.accelerator.reset_peak_memory_stats(self.handle)

    def memory_peak(self) -> tuple[int | None, str]:
        if self._acc_stats:
            return int(self._torch.accelerator.max_memory_allocated(self.handle)), "allocator-peak"
        return None, "unavailable"

    def device_timer(self) -> _EventTimer | None:
        return _EventTimer(self._torch, self.handle) if self.handle.type != "xla" else None

    def energy_meter(self) -> Any:
        from chipfit.hardware.energy import MeterUnavailable, open_meter

        if self.handle.type != "cuda" or getattr(self._torch.version, "hip", None):
            return MeterUnavailable(f"no energy counter for {self.handle.type} devices")
        return open_meter("gpu", self.handle.index or 0)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, self._torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class TorchBackend(Backend):
    name = "torch"
    priority = 10

    def _discover(self) -> tuple[list[DeviceInfo], list[Problem]]:
        import torch

        versions = (("torch", torch.__version__),)
        devices = [self._cpu(torch, versions)]
        problems = list(self._cpu_problems)
        for platform in _ACCELERATOR_TYPES:
            found, why = _accelerators(torch, platform, versions)
            devices += found
            if why:
                problems.append(Problem(f"torch:{platform}", why))
        found, why = _xla_devices(versions)
        devices += found
        if why:
            problems.append(Problem("torch:xla", why))
        return devices, problems

    def _cpu(self, torch: Any, versions: tuple[tuple[str, str], ...]) -> DeviceInfo:
        facts = probe_cpu()
        self._cpu_problems = facts.problems
        details = (("arch", facts.arch), ("torch_threads", str(torch.get_num_threads())),
                   ("torch_cpu_capability", str(torch.backends.cpu.get_cpu_capability())))
        return DeviceInfo("torch:cpu", "torch", "cpu", "cpu", facts.name, facts.memory_bytes,
                          facts.cores, facts.threads, None, facts.isa, versions, details)

    def _open(self, ref: DeviceRef) -> Session:
        return _CpuSession(ref) if ref.is_cpu else _AcceleratorSession(ref)


def _accelerators(torch: Any, platform: str,
                  versions: tuple[tuple[str, str], ...]) -> tuple[list[DeviceInfo], str]:
    try:
        if platform == "cuda":
            return _cuda(torch, versions)
        if platform == "mps":
            return _mps(torch, versions)
        return _xpu(torch, versions)
    except Exception as exc:  # a broken driver must not break discovery; keep the reason
        return [], f"probe failed: {type(exc).__name__}: {exc}"


def _cuda(torch: Any, versions: tuple[tuple[str, str], ...]) -> tuple[list[DeviceInfo], str]:
    hip = getattr(torch.version, "hip", None)
    if torch.version.cuda is None and hip is None:
        return [], "this torch build has no CUDA or ROCm support (a CPU-only wheel)"
    if not torch.cuda.is_available():
        return [], "torch has CUDA/ROCm support but no GPU is visible (driver or CUDA_VISIBLE_DEVICES)"
    runtime = ("rocm", hip) if hip else ("cuda", torch.version.cuda)
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        details = (("runtime", f"{runtime[0]} {runtime[1]}"),
                   ("capability", f"{props.major}.{props.minor}"))
        out.append(DeviceInfo(f"torch:cuda:{i}", "torch", "cuda", "gpu", props.name,
                              int(props.total_memory), None, None,
                              int(props.multi_processor_count), (), versions + (runtime,),
                              details))
    return out, ""


def _mps(torch: Any, versions: tuple[tuple[str, str], ...]) -> tuple[list[DeviceInfo], str]:
    if not torch.backends.mps.is_built():
        return [], "this torch build has no MPS support (MPS needs macOS on Apple silicon)"
    if not torch.backends.mps.is_available():
        return [], "torch has MPS support but macOS reports no usable Metal device"
    memory = None
    with contextlib.suppress(Exception):
        memory = int(torch.mps.recommended_max_memory())
    return [DeviceInfo("torch:mps:0", "torch", "mps", "gpu", "Apple GPU (Metal)", memory,
                       versions=versions)], ""


def _xpu(torch: Any, versions: tuple[tuple[str, str], ...]) -> tuple[list[DeviceInfo], str]:
    if not hasattr(torch, "xpu") or not torch.xpu._is_compiled():
        return [], "this torch build has no XPU (Intel GPU) support"
    if not torch.xpu.is_available():
        return [], "torch has XPU support but no Intel GPU is visible"
    out = []
    for i in range(torch.xpu.device_count()):
        props = torch.xpu.get_device_properties(i)
        units = getattr(props, "gpu_subslice_count", None) or getattr(props, "max_compute_units", None)
        out.append(DeviceInfo(f"torch:xpu:{i}", "torch", "xpu", "gpu", props.name,
                              int(props.total_memory), None, None, units, (), versions))
    return out, ""


def _xla_devices(versions: tuple[tuple[str, str], ...]) -> tuple[list[DeviceInfo], str]:
    try:
        import torch_xla
        import torch_xla.core.xla_model as xm
        import torch_xla.runtime as xr
    except ImportError as exc:
        if exc.name == "torch_xla":
            return [], "torch_xla is not installed; it is optional (JAX is the TPU path)"
        return [], f"torch_xla is installed but does not import (built for another torch?): {exc}"
    try:
        devices = xm.get_xla_supported_devices() or []  # ["xla:0", ...]; starts the runtime
        pjrt = str(xr.device_type() or "").upper()  # PJRT_DEVICE: TPU, CUDA, CPU, NEURON ...
    except Exception as exc:  # runtime init failure: keep the reason
        return [], f"torch_xla is installed but its runtime failed: {exc}"
    if not devices:
        return [], f"torch_xla found no devices (PJRT_DEVICE={pjrt or 'unset'})"
    kinds = {"TPU": "tpu", "CUDA": "gpu", "GPU": "gpu", "ROCM": "gpu", "CPU": "cpu"}
    kind = kinds.get(pjrt, "other")
    xla_versions = versions + (("torch_xla", torch_xla.__version__),)

    def describe(dev: str) -> DeviceInfo:
        name, memory = f"XLA {pjrt}", None
        with contextlib.suppress(Exception):  # "TPU v4", "NVIDIA H100 80GB HBM3", ...
            name = str(xm.xla_device_kind(dev)) or name
        with contextlib.suppress(Exception):  # torch_xla >= 2.1 bytes_limit, older kb_total
            info = xm.get_memory_info(dev)
            memory = int(info.get("bytes_limit") or info["kb_total"] * 1024)
        return DeviceInfo(f"torch:xla:{dev.rsplit(':', 1)[1]}", "torch", "xla", kind, name, memory,
                          versions=xla_versions, details=(("pjrt_device", pjrt),
                                                          ("xla_device", dev)))

    return [describe(str(dev)) for dev in devices], ""
