"""The Python API, mirroring the CLI: each function is one subcommand."""

from __future__ import annotations

from chipfit.discovery import discover
from chipfit.errors import InvalidInputError
from chipfit.pipelines.bench import bench
from chipfit.results import Measurement
from chipfit.spec import DeviceRef, Job, TimingConfig, parse_dtype

__all__ = ["bench", "discover", "measure"]


def measure(workload: str, size: str | int, device: str | DeviceRef = "torch:cpu", *,
            dtype: str = "float32", mode: str | None = None,
            timing: TimingConfig | None = None) -> Measurement:
    """Measure one workload at one size on one device (``chipfit bench`` for a single point)."""
    from chipfit.discovery import resolve_devices
    from chipfit.execute._worker import run_here  # watched for contention
    from chipfit.workloads import get_workload

    wl = get_workload(workload)
    found = discover([DeviceRef.parse(str(device)).backend])
    ref = resolve_devices([str(device)], found)[0]
    mode = mode or wl.modes[0]
    if mode not in wl.modes:
        raise InvalidInputError(f"{workload} has no mode {mode!r} (modes: {', '.join(wl.modes)})")
    job = Job(workload, wl.parse_size(str(size)), ref, parse_dtype(dtype), mode,
              timing or TimingConfig())
    return run_here(job, found)
