"""JAX backend: CPU, GPU and TPU devices through XLA (chipfit's TPU path).

Fencing is ``jax.block_until_ready`` on the output (JAX dispatches asynchronously, so a call
returns before the device is done); copies are ``jax.device_put`` (fenced the same way) and
``jax.device_get``. The first call of a jitted program includes tracing and XLA compilation;
the timer records it apart from steady state (``Measurement.first_call_s``).

TPU facts come from what JAX exposes per device: ``device_kind`` (the generation, "TPU v4",
"TPU v5 lite"), ``num_cores`` (TensorCores behind the device), ``coords``/``core_on_chip``
and ``memory_stats()["bytes_limit"]``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from chipfit.backends.base import Backend, Session
from chipfit.errors import InvalidInputError
from chipfit.hardware.cpu import maxrss_bytes, probe_cpu, rss_growth
from chipfit.results import DeviceInfo, Problem
from chipfit.spec import DeviceRef

__all__ = ["JaxBackend"]

_PLATFORMS = ("cpu", "gpu", "tpu")
_HINTS = {
    "gpu": "for NVIDIA GPUs: pip install 'jax[cuda12]'",
    "tpu": "on a Cloud TPU VM: pip install 'jax[tpu]'",
}
_TOPOLOGY = ("coords", "core_on_chip", "slice_index", "compute_capability")


class _JaxSession(Session):
    def __init__(self, ref: DeviceRef) -> None:
        import jax

        if ref.threads is not None:
            raise InvalidInputError(
                f"{ref}: JAX fixes its CPU thread pool at start-up; pin threads with "
                "XLA_FLAGS before starting chipfit instead of @Nt"
            )
        super().__init__(ref, jax.devices(ref.platform)[ref.index or 0])
        self._jax = jax
        self.copies = ref.platform != "cpu"
        self._base_peak = self._base_rss = self._base_maxrss = 0

    def wait(self, out: Any) -> None:
        if out is not None:
            self._jax.block_until_ready(out)

    def to_device(self, value: Any) -> Any:
        return self._jax.device_put(value, self.handle)

    def to_host(self, value: Any) -> Any:
        return self._jax.device_get(value)

    def memory_reset(self) -> None:
        import psutil

        self._base_peak = int(self._stats().get("peak_bytes_in_use", 0))
        self._base_rss = psutil.Process().memory_info().rss
        self._base_maxrss = maxrss_bytes()

    def memory_peak(self) -> tuple[int | None, str]:
        stats = self._stats()
        if "peak_bytes_in_use" in stats:
            peak = int(stats["peak_bytes_in_use"])
            # XLA cannot reset its peak counter: if this run did not raise it, all we know is
            # the process-lifetime high-water mark (an upper bound for this run).
            return peak, ("allocator-peak" if peak > self._base_peak else "allocator-peak-lifetime")
        if self.ref.platform == "cpu":  # XLA's CPU client keeps no stats: host RSS growth
            return rss_growth(self._base_rss, self._base_maxrss), "rss-growth"
        return None, "unavailable"

    def _stats(self) -> dict[str, int]:
        with contextlib.suppress(Exception):
            return dict(self.handle.memory_stats() or {})
        return {}

    def is_oom(self, exc: BaseException) -> bool:
        text = str(exc)
        return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or (
            "out of memory" in text.lower())


class JaxBackend(Backend):
    name = "jax"
    priority = 20

    def _discover(self) -> tuple[list[DeviceInfo], list[Problem]]:
        import jax

        versions = (("jax", jax.__version__), ("jaxlib", _jaxlib_version()))
        devices: list[DeviceInfo] = []
        problems: list[Problem] = []
        for platform in _PLATFORMS:
            try:
                found = jax.devices(platform)
            except Exception as exc:  # "Unknown backend", "failed to initialize", a plugin's crash
                hint = f" ({_HINTS[platform]})" if platform in _HINTS else ""
                problems.append(Problem(f"jax:{platform}", str(exc).splitlines()[0] + hint))
                continue
            devices += [_info(d, platform, i, len(found), versions) for i, d in enumerate(found)]
        return devices, problems

    def _open(self, ref: DeviceRef) -> Session:
        return _JaxSession(ref)


def _jaxlib_version() -> str:
    with contextlib.suppress(Exception):
        import jaxlib

        return str(jaxlib.__version__)
    return "unknown"


def _info(device: Any, platform: str, index: int, count: int,
          versions: tuple[tuple[str, str], ...]) -> DeviceInfo:
    ref = f"jax:{platform}:{index}"
    if platform == "cpu":
        facts = probe_cpu()
        details = [("jax_device", str(device))]
        if count > 1:  # --xla_force_host_platform_device_count / jax_num_cpu_devices
            details.append(("host_devices", f"{count} simulated XLA CPU devices sharing "
                                            f"the same {facts.cores} cores"))
        return DeviceInfo(ref, "jax", platform, "cpu", facts.name, facts.memory_bytes,
                          facts.cores, facts.threads, None, facts.isa, versions, tuple(details))
    kind = str(getattr(device, "device_kind", "") or platform)
    memory = None
    with contextlib.suppress(Exception):
        memory = int((device.memory_stats() or {}).get("bytes_limit")) or None
    # TPU: TensorCores behind this device (2 on a v4/v5p megacore chip); GPU: SMs.
    units = getattr(device, "num_cores", None) or getattr(device, "core_count", None)
    details = [("device_kind", kind), ("runtime", _runtime(device))]
    details += [(a, str(getattr(device, a))) for a in _TOPOLOGY if hasattr(device, a)]
    return DeviceInfo(ref, "jax", platform, platform, kind, memory, None, None,
                      int(units) if units else None, (), versions, tuple(details))


def _runtime(device: Any) -> str:
    with contextlib.suppress(Exception):
        return str(device.client.platform_version).splitlines()[0]
    return "unknown"
