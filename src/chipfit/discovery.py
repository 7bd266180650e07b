"""Discovery across every backend: what can run here, and why the rest cannot."""

from __future__ import annotations

from collections.abc import Iterable

from chipfit.backends import all_backends, get_backend
from chipfit.errors import BackendUnavailableError, UnknownNameError
from chipfit.results import Discovery
from chipfit.spec import DeviceRef

__all__ = ["backends_named", "discover", "resolve_devices"]


def discover(backends: Iterable[str] | None = None) -> Discovery:
    """Every usable device of the installed frameworks, with reasons for what is missing."""
    chosen = [get_backend(b) for b in backends] if backends else all_backends()
    devices, problems = [], []
    for backend in chosen:
        found = backend.discover()
        devices += found.devices
        problems += found.problems
    return Discovery(tuple(devices), tuple(problems))


def backends_named(texts: Iterable[str] | None) -> list[str] | None:
    """The backends of the device names ``texts`` (None when none are named): discovering
    only those spares the start-up of every other installed framework (TensorFlow's alone
    takes seconds)."""
    names = [DeviceRef.parse(t).backend for t in texts or ()]
    return list(dict.fromkeys(names)) or None


def resolve_devices(texts: Iterable[str], discovery: Discovery) -> list[DeviceRef]:
    """Parse user device names and check each against what was discovered."""
    known = [d.ref for d in discovery.devices]
    refs = []
    for text in texts:
        ref = DeviceRef.parse(text)
        get_backend(ref.backend)  # unknown backend -> did-you-mean
        if ref.threads is not None and not ref.is_cpu:
            raise UnknownNameError("device", str(ref), known)
        if discovery.get(str(ref.base)) is None:
            why = [p.reason for p in discovery.problems
                   if p.scope in (ref.backend, f"{ref.backend}:{ref.platform}")]
            if why:
                raise BackendUnavailableError(f"{ref} is not available here: {why[0]}")
            raise UnknownNameError("device", str(ref), known)
        refs.append(ref)
    return refs
