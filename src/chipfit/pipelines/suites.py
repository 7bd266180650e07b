"""Running a named suite: plan its experiments on the devices found, measure, store.

The suites and their claims are data, and checking a claim is pure: both live in
:mod:`chipfit.analysis.suites`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from chipfit.analysis.suites import Experiment, Suite, get_suite
from chipfit.errors import InvalidInputError
from chipfit.results import Discovery, Run
from chipfit.spec import DeviceRef, Job, TimingConfig

if TYPE_CHECKING:
    from chipfit.execute.base import Executor
    from chipfit.pipelines.bench import OnResult
    from chipfit.store.sqlite import Store

__all__ = ["plan_suite", "run_suite"]


def _auto_devices(exp: Experiment, discovery: Discovery) -> list[DeviceRef]:
    """The first device of each kind (every GPU) of the experiment's backend."""
    refs: list[DeviceRef] = []
    for kind in exp.kinds:
        found = [DeviceRef.parse(d.ref) for d in discovery.devices
                 if d.kind == kind and d.backend == exp.backend]
        refs += found if kind == "gpu" else found[:1]
    return refs


def plan_suite(suite: Suite, discovery: Discovery, devices: Sequence[DeviceRef] | None = None,
               *, quick: bool = False, timing: TimingConfig | None = None) -> list[Job]:
    """Jobs for ``suite``: each experiment on its devices, or on those of ``devices`` that run
    its framework (a "kinds" suite's experiments each belong to one) and have a builder for
    it. Experiments whose workload is not installed, or whose required device kind is
    absent, are left out (their claims report why)."""
    from chipfit.pipelines.bench import default_devices
    from chipfit.workloads import all_workloads, get_workload

    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    present = {d.kind for d in discovery.devices}
    installed = {w.name for w in all_workloads()}
    jobs: list[Job] = []
    for exp in suite.experiments:
        if exp.workload not in installed or (exp.requires and exp.requires not in present):
            continue
        workload = get_workload(exp.workload)
        if devices is not None:
            refs = list(devices)
        elif suite.devices == "all":
            refs = default_devices(discovery)
        else:
            refs = _auto_devices(exp, discovery)
        if suite.devices == "kinds":  # each experiment belongs to one framework
            refs = [r for r in refs if r.backend == exp.backend]
        refs = [r for r in refs if r.backend in workload.backends()]
        for size in exp.sizes_for(quick):
            canonical = workload.parse_size(size)
            for stack in exp.stacks or ("",):
                jobs += [Job(exp.workload, canonical, ref, exp.dtype, exp.mode, timing,
                             stack=stack) for ref in _stack_devices(refs, stack)]
    return jobs


def _stack_devices(refs: Sequence[DeviceRef], stack: str) -> list[DeviceRef]:
    """The devices a suite measures ``stack`` on: all for the default, else torch devices
    without a thread pin (``torch:cpu``, GPUs)."""
    if not stack:
        return list(refs)
    return [r for r in refs if r.backend == "torch" and r.threads is None]


def run_suite(name: str, devices: Iterable[str] | None = None, *, quick: bool = False,
              timing: TimingConfig | None = None, on_result: OnResult | None = None,
              discovery: Discovery | None = None, executor: Executor | None = None,
              store: Store | None = None, resume: bool | str = False) -> Run:
    """Measure suite ``name`` (see :data:`SUITES`) like :func:`chipfit.pipelines.bench.bench` does a
    list of workloads: same executors, store and resume; the run's settings name the suite."""
    from chipfit.discovery import resolve_devices
    from chipfit.execute.inline import InlineExecutor
    from chipfit.hardware.cpu import machine_fingerprint
    from chipfit.pipelines.bench import new_run, resume_named, resume_run, run_jobs

    suite = get_suite(name)
    executor = executor or InlineExecutor()
    resumed = resume_named(resume, store, on_result, executor)
    if resumed is not None:
        return resumed
    discovery = discovery or executor.discover()
    refs = resolve_devices(devices, discovery) if devices else None
    jobs = plan_suite(suite, discovery, refs, quick=quick, timing=timing)
    timing = timing or (TimingConfig.quick() if quick else TimingConfig())
    settings = {"suite": name, "devices": ",".join(map(str, refs)) if refs else "suite",
                "quick": str(quick), "timing": repr(timing)}
    command = f"bench --suite {name}"
    if resume:
        found = store.find_resumable(  # type: ignore[union-attr]
            command, settings, dict(machine_fingerprint())["fingerprint"])
        if found is None:
            raise InvalidInputError(f"no unfinished {command} run with these settings to resume")
        run, todo = resume_run(store, found)
        return run_jobs(todo, run, on_result, executor=executor, store=store)
    run = new_run(command, discovery, {**settings, **executor.settings()})
    if store is not None:
        store.begin_run(run, jobs)
    return run_jobs(jobs, run, on_result, executor=executor, store=store)
