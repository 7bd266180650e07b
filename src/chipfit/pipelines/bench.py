"""Plan and run a suite: workloads x sizes x dtypes x modes over devices.

Each finished measurement is committed to the store (when one is given) and handed to
``on_result`` at once (the CLI also rewrites the run's JSON file after every one), so a crash
or Ctrl-C keeps what was measured, and ``resume`` picks the run up again. Ctrl-C ends the
suite and returns the partial run marked ``interrupted``. Where jobs run is the executor's
business (:mod:`chipfit.execute.base`): inline, in subprocesses, or on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from chipfit._version import __version__
from chipfit.discovery import backends_named, resolve_devices
from chipfit.errors import InvalidInputError
from chipfit.execute.base import Executor, Placement
from chipfit.execute.inline import InlineExecutor
from chipfit.hardware.cpu import machine_fingerprint
from chipfit.paths import utc_now
from chipfit.results import Discovery, Measurement, Run, new_run_id
from chipfit.spec import MODES, DeviceRef, Job, TimingConfig, parse_dtype
from chipfit.workloads import get_workload

if TYPE_CHECKING:
    from chipfit.store.sqlite import Store

__all__ = ["bench", "default_devices", "place", "plan", "resume_run", "run_jobs"]

OnResult = Callable[[int, int, Job, Measurement, Run], None]


def default_devices(discovery: Discovery) -> list[DeviceRef]:
    """Every discovered device, plus torch's CPU pinned to one thread (serial vs parallel)
    when torch runs more than one: on a machine, container or ``taskset`` with one usable
    core, ``torch:cpu`` already is the one-thread run."""
    refs = [DeviceRef.parse(d.ref) for d in discovery.devices]
    cpu = discovery.get("torch:cpu")
    if cpu is None:
        return refs
    threads = dict(cpu.details).get("torch_threads", "")  # absent from older discoveries
    if (int(threads) if threads.isdigit() else cpu.cores or 0) > 1:
        refs.insert(1, DeviceRef("torch", "cpu", None, 1))
    return refs


def plan(workloads: Sequence[str], devices: Sequence[DeviceRef], *,
         sizes: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32",),
         modes: Sequence[str] | None = None, quick: bool = False,
         timing: TimingConfig | None = None, stacks: Sequence[str] = ("eager",)) -> list[Job]:
    """Jobs in run order: for each workload, size, dtype, mode and stack, every device that
    runs that stack (JAX devices run ``jit`` in place of ``eager``)."""
    from chipfit.workloads.stacks import device_stacks, parse_stacks

    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    pairs = device_stacks(devices, parse_stacks(stacks) or ["eager"])
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
                    jobs += [Job(name, size, ref, dtype, mode, timing, stack=stack)
                             for ref, stack in pairs]
    return jobs


def place(jobs: Sequence[Job], placements: Sequence[Placement]) -> list[Job]:
    """A fleet's plan: each job once per placement (node type, or node) that has its device.

    No placements (an executor that is not a fleet): the jobs as they are.
    """
    if not placements:
        return list(jobs)
    out = []
    for job in jobs:
        base = str(replace(job.device, threads=None))
        out += [replace(job, node_type=p.node_type, node_id=p.node_id) for p in placements
                if base in p.devices]
    return out


def new_run(command: str, discovery: Discovery, settings: dict[str, str]) -> Run:
    return Run(run_id=new_run_id(), command=command, started_at=utc_now(),
               machine=machine_fingerprint(), discovery=discovery, chipfit_version=__version__,
               settings=tuple(sorted(settings.items())))


def run_jobs(jobs: Sequence[Job], run: Run, on_result: OnResult | None = None,
             runner: Callable[[Job, Discovery], Measurement] | None = None, *,
             executor: Executor | None = None, store: Store | None = None,
             finish: bool = True) -> Run:
    """Run ``jobs``; returns ``run`` with the measurements (partial on Ctrl-C or SIGTERM,
    and then marked interrupted).

    Each measurement is committed to ``store`` the moment it arrives, before ``on_result``
    sees it, so a crash of the driver loses nothing already measured. ``finish=False`` is
    for callers that run a plan in several calls (a sweep, rung by rung): the run is marked
    finished only by the caller, once the whole plan is done, so a run killed between two
    calls stays unfinished and resumable.
    """
    from chipfit.execute.retry import remeasure_contended

    executor = executor or InlineExecutor(runner)
    done: list[Measurement] = list(run.measurements)
    stored, started = list(done), time.monotonic()  # what the store holds, in order
    try:
        with contextlib.closing(executor.run(jobs, run.discovery)) as outcomes:
            for i, (job, m) in enumerate(outcomes, 1):
                done.append(m)
                run = replace(run, measurements=tuple(done))
                if store is not None:
                    store.add_measurement(run.run_id, m, job.key)
                stored.append(m)
                if on_result is not None:
                    on_result(i, len(jobs), job, m, run)
        run, _ = remeasure_contended(
            jobs, done, run, executor, time.monotonic() - started,
            keep=None if store is None else lambda m: store.replace_measurement(run.run_id, m))
        if not finish:
            if store is not None and list(run.measurements) != stored:
                store.save_run(run)  # re-measured rows replace the contended ones; still open
            return run
        run = replace(run, finished_at=utc_now())
    except KeyboardInterrupt:
        run = replace(run, measurements=tuple(done), interrupted=True, finished_at=utc_now())
    if store is not None:  # a re-measurement or a stall mark replaced rows: rewrite them
        store.save_run(run) if list(run.measurements) != stored else store.finish_run(run)
    return run


def _settings(names: Sequence[str], refs: Sequence[DeviceRef], sizes: Sequence[str] | None,
              dtypes: Sequence[str], modes: Sequence[str] | None, quick: bool,
              timing: TimingConfig | None, stacks: Sequence[str] = ("eager",)) -> dict[str, str]:
    """Everything that shapes the plan: what ``--resume`` matches an old run on (the
    default stack is left out, so runs from before stacks existed still match)."""
    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    extra = {} if list(stacks) == ["eager"] else {"stacks": ",".join(stacks)}
    return {**extra, "workloads": ",".join(names), "devices": ",".join(map(str, refs)),
            "dtypes": ",".join(dtypes), "quick": str(quick),
            "sizes": ",".join(sizes) if sizes else "default",
            "modes": ",".join(modes) if modes else "default",
            "timing": ",".join(f"{k}={v}" for k, v in sorted(asdict(timing).items()))}


def resume_run(store: Store, ref: str) -> tuple[Run, list[Job]]:
    """Run ``ref`` from ``store`` and its planned jobs that have no measurement yet.

    Everything read back is checked before anything runs: the run (a damaged row refuses
    the resume: its job would be neither trusted nor measured again), and every planned job
    (a known workload, a valid size, dtype and stack). A driver that still looks alive
    refuses it too, unless the store was opened with ``takeover``."""
    run_id = store.resolve(ref)
    driver = store.live_driver(run_id)
    if driver is not None and not store.takeover:
        raise InvalidInputError(f"run {run_id} is still being measured by process {driver}; if "
                                "that process is not chipfit's (a PID reused after a crash), "
                                "--takeover continues the run here")
    run = store.load_run(run_id)
    done = store.done_keys(run_id)  # a fleet job whose node was lost is not done
    planned = store.planned_jobs(run_id)
    for i, job in enumerate(planned):
        _check_planned(job, f"planned job {i} of run {run_id}")
    todo = [job for job in planned if job.key not in done]
    if run.finished_at and not run.interrupted and not todo:
        raise InvalidInputError(f"run {run_id} is complete: nothing to resume")
    store.claim_run(run_id)
    return replace(run, finished_at="", interrupted=False), todo


def _check_planned(job: Job, where: str) -> None:
    """A planned job read back from a database names what this chipfit can run, as planned."""
    from chipfit.workloads.stacks import parse_stacks

    try:
        workload = get_workload(job.workload)
        workload.parse_size(job.size)
        parse_dtype(job.dtype)
        if job.mode not in workload.modes:
            raise InvalidInputError(f"{job.workload} has no mode {job.mode!r}")
        parse_stacks([job.stack])
    except InvalidInputError as exc:  # UnknownNameError too
        raise InvalidInputError(f"{where} cannot be resumed: {exc}") from None


def find_resumable_run(store: Store, command: str, settings: dict[str, str]) -> str:
    fingerprint = dict(machine_fingerprint())["fingerprint"]
    run_id = store.find_resumable(command, settings, fingerprint)
    if run_id is None:
        raise InvalidInputError(f"{store.path} holds no unfinished {command} run with these "
                                "settings on this machine; `chipfit runs` lists the runs, and "
                                "--resume RUN_ID picks one")
    return run_id


def resume_named(resume: bool | str, store: Store | None, on_result: OnResult | None,
                 executor: Executor) -> Run | None:
    """Continue run ``resume`` (an id) from ``store``; None when no run id was named.

    ``resume=True`` (continue the newest matching run) needs the caller's settings, so it
    returns None here after checking that a store exists.
    """
    if resume and store is None:
        raise InvalidInputError("resuming needs the results database (--db, and no --no-save)")
    if isinstance(resume, str) and resume:
        run, todo = resume_run(store, resume)  # type: ignore[arg-type]
        return run_jobs(todo, run, on_result, executor=executor, store=store)
    return None


def bench(workloads: Iterable[str] = ("matmul", "elementwise"),
          devices: Iterable[str] | None = None, *, sizes: Sequence[str] | None = None,
          dtypes: Sequence[str] = ("float32",), modes: Sequence[str] | None = None,
          quick: bool = False, stacks: Sequence[str] = ("eager",),
          timing: TimingConfig | None = None, on_result: OnResult | None = None,
          discovery: Discovery | None = None, command: str = "bench",
          executor: Executor | None = None, store: Store | None = None,
          resume: bool | str = False) -> Run:
    """Measure ``workloads`` on ``devices`` (default: every device found, plus CPU at 1 thread).

    ``executor`` says where jobs run (default: inline, in this process); ``store`` keeps every
    measurement as it arrives. ``resume=True`` continues the newest unfinished run in
    ``store`` with the same settings; ``resume="RUN_ID"`` continues that run, whatever the
    other arguments say. Either way only jobs without a stored measurement run again.
    ``stacks`` (``eager``, ``compile``, ``onnxruntime``, ``int8`` ...; see
    :mod:`chipfit.workloads.stacks`) is an axis like ``dtypes``.
    """
    executor = executor or InlineExecutor()
    resumed = resume_named(resume, store, on_result, executor)
    if resumed is not None:
        return resumed
    names, devices = list(workloads), list(devices) if devices else None
    # Names, sizes, dtypes and device ids are checked before discovery (which imports every
    # framework): a typo costs a fraction of a second, not a framework start-up.
    plan(names, (), sizes=sizes, dtypes=dtypes, modes=modes, quick=quick, timing=timing)
    for text in devices or ():
        DeviceRef.parse(text)
    from chipfit.workloads.stacks import parse_stacks

    stacks = parse_stacks(stacks) or ["eager"]
    discovery = discovery or executor.discover(backends_named(devices))
    refs = resolve_devices(devices, discovery) if devices else default_devices(discovery)
    jobs = place(plan(names, refs, sizes=sizes, dtypes=dtypes, modes=modes, quick=quick,
                      timing=timing, stacks=stacks), executor.placements())
    settings = _settings(names, refs, sizes, dtypes, modes, quick, timing, stacks)
    if resume:
        run, todo = resume_run(store, find_resumable_run(store, command, settings))  # type: ignore[arg-type]
        return run_jobs(todo, run, on_result, executor=executor, store=store)
    run = new_run(command, discovery, {**settings, **executor.settings()})
    if store is not None:
        store.begin_run(run, jobs)
    return run_jobs(jobs, run, on_result, executor=executor, store=store)
