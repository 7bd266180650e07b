"""Plan and run a suite: workloads x sizes x dtypes x modes over devices.

Each finished measurement is handed to ``on_result`` at once (the CLI saves the run file
after every one), so a crash or Ctrl-C keeps what was measured. Ctrl-C ends the suite and
returns the partial run marked ``interrupted``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from chipfit._version import __version__
from chipfit.discovery import discover, resolve_devices
from chipfit.results import Discovery, Measurement, Run
from chipfit.spec import MODES, DeviceRef, Job, TimingConfig, parse_dtype
from chipfit.workloads import get_workload

__all__ = ["bench", "default_devices", "machine_fingerprint", "plan", "run_jobs"]

OnResult = Callable[[int, int, Job, Measurement, Run], None]


def default_devices(discovery: Discovery) -> list[DeviceRef]:
    """Every discovered device, plus torch's CPU pinned to one thread (serial vs parallel)."""
    refs = [DeviceRef.parse(d.ref) for d in discovery.devices]
    cpu = discovery.get("torch:cpu")
    if cpu is not None and (cpu.cores or 0) > 1:
        refs.insert(1, DeviceRef("torch", "cpu", None, 1))
    return refs


def plan(workloads: Sequence[str], devices: Sequence[DeviceRef], *,
         sizes: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32",),
         modes: Sequence[str] | None = None, quick: bool = False,
         timing: TimingConfig | None = None) -> list[Job]:
    """Jobs in run order: for each workload, size, dtype and mode, every device."""
    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    dtypes = [parse_dtype(d) for d in dtypes]
    jobs = []
    for name in workloads:
        workload = get_workload(name)
        chosen = [workload.parse_size(s) for s in (sizes or workload.sizes(quick))]
        wanted = list(modes) if modes else [workload.modes[0]]
        for mode in wanted:
            if mode not in MODES:
                from chipfit.errors import UnknownNameError

                raise UnknownNameError("mode", mode, MODES)
        for size in chosen:
            for dtype in dtypes:
                for mode in (m for m in wanted if m in workload.modes):
                    jobs += [Job(name, size, ref, dtype, mode, timing) for ref in devices]
    return jobs


def machine_fingerprint() -> tuple[tuple[str, str], ...]:
    from chipfit.hardware.cpu import probe_cpu

    cpu = probe_cpu()
    facts = {"hostname": socket.gethostname(), "os": platform.platform(),
             "python": platform.python_version(), "cpu": cpu.name,
             "cores": str(cpu.cores), "memory_bytes": str(cpu.memory_bytes)}
    digest = hashlib.sha256("|".join(f"{k}={facts[k]}" for k in ("hostname", "os", "cpu", "cores",
                                                                  "memory_bytes")).encode())
    facts["fingerprint"] = digest.hexdigest()[:16]
    return tuple(sorted(facts.items()))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run(command: str, discovery: Discovery, settings: dict[str, str]) -> Run:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Run(run_id=f"{stamp}-{uuid.uuid4().hex[:6]}", command=command, started_at=_now(),
               machine=machine_fingerprint(), discovery=discovery, chipfit_version=__version__,
               settings=tuple(sorted(settings.items())))


def run_jobs(jobs: Sequence[Job], run: Run, on_result: OnResult | None = None,
             runner: Callable[[Job, Discovery], Measurement] | None = None) -> Run:
    """Run ``jobs`` one by one; returns ``run`` with the measurements (partial on Ctrl-C)."""
    if runner is None:
        from chipfit.execute.inline import run_job as runner
    done: list[Measurement] = list(run.measurements)
    try:
        for i, job in enumerate(jobs):
            done.append(runner(job, run.discovery))
            run = replace(run, measurements=tuple(done))
            if on_result is not None:
                on_result(i + 1, len(jobs), job, done[-1], run)
    except KeyboardInterrupt:
        return replace(run, measurements=tuple(done), interrupted=True, finished_at=_now())
    return replace(run, measurements=tuple(done), finished_at=_now())


def bench(workloads: Iterable[str] = ("matmul", "elementwise"), devices: Iterable[str] | None = None,
          *, sizes: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32",),
          modes: Sequence[str] | None = None, quick: bool = False,
          timing: TimingConfig | None = None, on_result: OnResult | None = None,
          discovery: Discovery | None = None, command: str = "bench") -> Run:
    """Measure ``workloads`` on ``devices`` (default: every device found, plus CPU at 1 thread)."""
    discovery = discovery or discover()
    refs = resolve_devices(devices, discovery) if devices else default_devices(discovery)
    names = list(workloads)
    jobs = plan(names, refs, sizes=sizes, dtypes=dtypes, modes=modes, quick=quick, timing=timing)
    settings = {"workloads": ",".join(names), "devices": ",".join(map(str, refs)),
                "dtypes": ",".join(dtypes), "quick": str(quick)}
    return run_jobs(jobs, new_run(command, discovery, settings), on_result)
