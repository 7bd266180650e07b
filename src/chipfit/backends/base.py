"""The backend seam: discovery, sessions on one device, fencing, copies and memory.

A backend is a template: the public methods check and wrap, subclasses fill in the ``_hooks``.
Discovery never raises for a missing framework or device; it returns the reason as a
:class:`~chipfit.results.Problem`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import Any

from chipfit.errors import BackendUnavailableError, UnknownNameError
from chipfit.results import DeviceInfo, Discovery, Problem
from chipfit.spec import DeviceRef
from chipfit.timing.timer import DeviceTimer

__all__ = ["Backend", "Session"]


class Session(abc.ABC):
    """One device opened for measurement. Created by :meth:`Backend.session`."""

    #: False when device memory is host memory (CPU): copies are zero and reported as such.
    copies: bool = True

    def __init__(self, ref: DeviceRef, handle: Any) -> None:
        self.ref = ref
        self.handle = handle

    @abc.abstractmethod
    def wait(self, out: Any) -> None:
        """Return once the work that produced ``out`` (and all before it) has finished."""

    def to_device(self, value: Any) -> Any:
        """Copy a host value (a tensor, array, or tuple of them) to this device."""
        return value

    def to_host(self, value: Any) -> Any:
        """Copy a device value back to host memory."""
        return value

    def memory_reset(self) -> None:  # noqa: B027 - optional hook: no window to reset by default
        """Start a new peak-memory window."""

    def memory_peak(self) -> tuple[int | None, str]:
        """Peak bytes used since :meth:`memory_reset`, and how they were measured."""
        return None, "unavailable"

    def device_timer(self) -> DeviceTimer | None:
        """Device-side event clock, where the device has one."""
        return None

    def energy_meter(self) -> Any:
        """A cumulative energy counter for this device (or a MeterUnavailable saying why)."""
        from chipfit.hardware.energy import MeterUnavailable

        return MeterUnavailable(f"no energy counter for {self.ref}")

    def is_oom(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this framework's out-of-memory error."""
        return isinstance(exc, MemoryError)

    def close(self) -> None:  # noqa: B027 - optional hook: most sessions change nothing
        """Undo whatever :meth:`Backend.session` changed (thread counts ...)."""


class Backend(abc.ABC):
    """A framework that can run workloads: torch, jax."""

    name: str = ""
    #: Lower runs first when devices of several backends are listed.
    priority: int = 100

    def discover(self) -> Discovery:
        """Devices this backend can use here; never raises for an absent framework."""
        try:
            devices, problems = self._discover()
        except ImportError as exc:
            return Discovery((), (Problem(self.name, f"not installed ({exc}); {self.install_hint}"),))
        return Discovery(tuple(devices), tuple(problems))

    @contextlib.contextmanager
    def session(self, ref: DeviceRef, discovery: Discovery | None = None) -> Iterator[Session]:
        """Open ``ref`` for measurement (validating it against what is present)."""
        discovery = discovery or self.discover()
        if discovery.get(str(ref.base)) is None:
            if not discovery.devices:
                reasons = "; ".join(p.reason for p in discovery.problems) or "no devices"
                raise BackendUnavailableError(f"{self.name} is not usable here: {reasons}")
            raise UnknownNameError("device", str(ref), [d.ref for d in discovery.devices])
        sess = self._open(ref)
        try:
            yield sess
        finally:
            sess.close()

    @property
    def install_hint(self) -> str:
        return f"install it with: pip install 'chipfit[{self.name}]'"

    @abc.abstractmethod
    def _discover(self) -> tuple[list[DeviceInfo], list[Problem]]:
        """Return present devices and reasons for absent ones; may raise ImportError."""

    @abc.abstractmethod
    def _open(self, ref: DeviceRef) -> Session:
        """Open a session on a device already known to be present."""
