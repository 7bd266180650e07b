"""JAX backend: CPU, GPU and TPU devices through XLA (chipfit's TPU path).

Fencing is ``jax.block_until_ready`` on the output; copies are ``jax.device_put`` and
``jax.device_get``. The first call includes tracing and XLA compilation, which the timer
records apart from steady state.
"""

from __future__ import annotations

import contextlib
from typing import Any

from chipfit.backends.base import Backend, Session
from chipfit.errors import InvalidInputError
from chipfit.hardware.cpu import probe_cpu
from chipfit.results import DeviceInfo, Problem
from chipfit.spec import DeviceRef

__all__ = ["JaxBackend"]

_PLATFORMS = ("cpu", "gpu", "tpu")


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

    def wait(self, out: Any) -> None:
        if out is not None:
            self._jax.block_until_ready(out)

    def to_device(self, value: Any) -> Any:
        return self._jax.device_put(value, self.handle)

    def to_host(self, value: Any) -> Any:
        return self._jax.device_get(value)

    def memory_reset(self) -> None:
        self._base = self._stats().get("bytes_in_use", 0)

    def memory_peak(self) -> tuple[int | None, str]:
        stats = self._stats()
        if "peak_bytes_in_use" not in stats:
            return None, "unavailable"
        # XLA cannot reset its peak counter: this is the process-lifetime high-water mark.
        return int(stats["peak_bytes_in_use"]), "allocator-peak-lifetime"

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
            except RuntimeError as exc:  # "Unknown backend", "failed to initialize", ...
                problems.append(Problem(f"jax:{platform}", str(exc).splitlines()[0]))
                continue
            devices += [_info(d, platform, i, versions) for i, d in enumerate(found)]
        return devices, problems

    def _open(self, ref: DeviceRef) -> Session:
        return _JaxSession(ref)


def _jaxlib_version() -> str:
    with contextlib.suppress(Exception):
        import jaxlib

        return str(jaxlib.__version__)
    return "unknown"


def _info(device: Any, platform: str, index: int,
          versions: tuple[tuple[str, str], ...]) -> DeviceInfo:
    ref = f"jax:{platform}:{index}"
    kind = platform if platform in ("gpu", "tpu") else "cpu"
    if platform == "cpu":
        facts = probe_cpu()
        return DeviceInfo(ref, "jax", platform, kind, facts.name, facts.memory_bytes, facts.cores,
                          facts.threads, None, facts.isa, versions,
                          (("jax_device", str(device)),))
    memory = None
    with contextlib.suppress(Exception):
        memory = int((device.memory_stats() or {}).get("bytes_limit")) or None
    units = getattr(device, "num_cores", None) or getattr(device, "core_count", None)
    details = [("device_kind", str(getattr(device, "device_kind", "")))]
    for attr in ("coords", "core_on_chip", "slice_index"):
        if hasattr(device, attr):
            details.append((attr, str(getattr(device, attr))))
    return DeviceInfo(ref, "jax", platform, kind, str(getattr(device, "device_kind", platform)),
                      memory, None, None, units, (), versions, tuple(details))
