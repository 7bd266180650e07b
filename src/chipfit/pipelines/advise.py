"""``chipfit advise``: gather evidence for one model, then rank processors and explain.

Evidence comes from three places, each kept apart and labelled:
- **measured**: the model timed on every local device over a short batch sweep;
- **predicted**: the model's per-operator costs run through the roofline predictor for each
  catalog device (peaks x documented efficiencies, plus launch and copy terms);
- **estimated**: dollars (catalog price x time) and joules (a power reading where the machine
  exposes one, otherwise TDP x busy fraction).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chipfit.analysis.evidence import Evidence, ModelFacts, Option, Recommendation
from chipfit.analysis.ranking import recommend
from chipfit.analysis.trust import source_of
from chipfit.analysis.verdict import Verdict, decide, settle
from chipfit.errors import InvalidInputError, UnsupportedError
from chipfit.results import Measurement, Run
from chipfit.spec import DeviceRef, Job, TimingConfig, parse_dtype
from chipfit.workloads import Workload, all_workloads, get_workload, register

__all__ = ["DEFAULT_HARDWARE", "Advice", "advise", "resolve_model"]

# A spread of what users rent or buy in late 2026: datacenter and inference GPUs, a consumer
# GPU, TPUs, a laptop GPU. Devices without the figures to predict a dtype drop out quietly.
DEFAULT_HARDWARE = ("h100-sxm", "h200", "a100-sxm-80gb", "l4", "l40s", "t4", "rtx-5090", "mi300x",
                    "tpu-v5e", "tpu-v6e", "apple-m4-max-gpu")
# A device draws power even while it waits on launches: below this busy fraction the
# estimate uses the floor (idle and static power are roughly a quarter to a third of TDP on
# datacenter GPUs; 0.3 is an assumption, and energy figures are labelled estimated).
BUSY_FLOOR = 0.3


@dataclass(frozen=True, repr=False)
class Advice:
    """A recommendation with the evidence behind it and the local measurements made.

    ``str(advice)`` is a short summary: the verdict first, then the top options.
    ``advice.best`` is the option to use; ``advice.verdict`` says whether to stay or move
    and how clear the difference is; ``advice.recommendation.ranked`` has every option.
    """

    recommendation: Recommendation
    evidence: Evidence
    run: Run
    workload: str
    dtype: str
    mode: str
    summary: str = ""  # the verdict and the top options in words (set by chipfit.advise)

    @property
    def verdict(self) -> Verdict:
        """Stay on the best device measured here, or switch to a catalog one (ties stay)."""
        return decide(self.recommendation, self.evidence)

    @property
    def best(self) -> Option | None:
        """The processor to use: the verdict's choice (None when nothing meets the limits)."""
        return self.verdict.best

    def __str__(self) -> str:
        # The words come from the report layer, which this layer may not import: the facade
        # (chipfit.advise) fills ``summary`` in; a bare Advice shows its short repr.
        return self.summary or repr(self)

    def __repr__(self) -> str:
        best = self.best.device if self.best is not None else None
        return (f"Advice(workload={self.workload!r}, batch={self.evidence.batch}, "
                f"objective={self.recommendation.objective!r}, best={best!r}, "
                f"options={len(self.recommendation.ranked)})")


def resolve_model(model: Any, example_inputs: Any = None, *, weights: str | None = None,
                  trust_pickle: bool = False, name: str | None = None) -> Workload:
    """A workload for ``model``: a built-in name, a file or factory spec, or an nn.Module."""
    from chipfit.workloads.user import (
        UserModel,
        UserWorkload,
        check_inputs,
        load_model,
        parse_input,
    )

    known = {w.name for w in all_workloads()}
    if isinstance(model, str) and model in known and not Path(model).exists():
        builtin = get_workload(model)
        builtin_batch(builtin, example_inputs)  # checks the inputs match the built-in's
        return builtin
    if isinstance(model, str):
        specs = tuple(example_inputs or ())
        if any(not isinstance(s, str) for s in specs):
            raise InvalidInputError("with a model file or factory, give inputs as strings "
                                    "such as '1x3x224x224:float32'")
        loaded = load_model(model, inputs=specs, weights=weights, trust_pickle=trust_pickle,
                            name=name)
    elif hasattr(model, "parameters"):
        if example_inputs is None:
            raise InvalidInputError("advise(module, example_inputs): give example inputs (tensors "
                                    "or '1x16:float32' strings) for an nn.Module")
        items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        specs = tuple(parse_input(i) if isinstance(i, str) else
                      parse_input("x".join(map(str, i.shape)) + ":" +
                                  str(i.dtype).removeprefix("torch.")) for i in items)
        loaded = UserModel(name or type(model).__name__.lower(), model, specs, "module")
    else:
        raise InvalidInputError(f"cannot advise on a {type(model).__name__}: give a built-in "
                                "workload name, a model file, module:function, or an nn.Module")
    if loaded.name in known:
        loaded = replace(loaded, name=f"{loaded.name}-user")
    from chipfit.execute.probe import host_memory_limit

    check_inputs(loaded, memory_limit=host_memory_limit())
    workload = UserWorkload(loaded)
    register(workload)
    return workload


def builtin_batch(workload: Workload, example_inputs: Any) -> int | None:
    """The batch that ``--input`` gives a built-in workload, after checking the shape.

    A built-in model builds its own inputs (``input_note``, e.g. "3x224x224 image"); an
    ``--input`` beside its name only says the batch, and must agree with the rest of the shape.
    """
    from chipfit.workloads.user import parse_input

    specs = [s for s in (example_inputs or ()) if isinstance(s, str)]
    if not specs:
        return None
    shape = parse_input(specs[0]).shape
    note = getattr(workload, "input_note", "")
    per_sample = re.match(r"[0-9]+(?:x[0-9]+)*", note)
    if per_sample:
        want = tuple(int(d) for d in per_sample.group(0).split("x"))
        if len(specs) > 1 or tuple(shape[1:]) != want:
            raise InvalidInputError(
                f"built-in {workload.name} takes BATCHx{per_sample.group(0)} inputs ({note}), not "
                f"{', '.join(specs)}; for another shape, pass your own model file or "
                "module:function")
    return shape[0]


def _local_devices(devices: Sequence[str] | None, found: Any) -> list[DeviceRef]:
    from chipfit.discovery import resolve_devices
    from chipfit.pipelines.bench import default_devices

    if devices:
        return resolve_devices(devices, found)
    return default_devices(found)  # every device found, and the CPU at one thread


def _measure_local(workload: Workload, refs: list[DeviceRef], sizes: list[str], dtype: str,
                   modes: list[str], timing: TimingConfig, on_result: Any, found: Any,
                   stacks: Sequence[str] = (), target: str = "", store: Any = None) -> Run:
    """Every size on every device (default stack), plus each other stack at ``target``."""
    from chipfit.pipelines.bench import new_run, run_jobs
    from chipfit.workloads.stacks import default_stack, stacks_for

    jobs = [Job(workload.name, s, r, dtype, m, timing) for m in modes for s in sizes for r in refs
            if _worth_measuring(r, s) and r.backend in workload.backends()]
    jobs += [Job(workload.name, target, r, dtype, modes[0], timing, stack=stack)
             for r in refs if r.backend in workload.backends()
             for stack in stacks_for(r.backend, stacks) if stack != default_stack(r.backend)]
    settings = {"workloads": workload.name, "devices": ",".join(map(str, refs)), "dtypes": dtype,
                "modes": ",".join(modes), "command": "advise", "axis": workload.axis}
    if [s for s in stacks if s != "eager"]:
        settings["stacks"] = ",".join(stacks)
    run = new_run("advise", found, settings)
    if store is not None:  # kept in the history (chipfit runs), like bench and sweep runs
        store.begin_run(run, jobs)
    run = run_jobs(jobs, run, on_result, store=store)
    if run.interrupted:
        raise KeyboardInterrupt
    return run


# One thread beats all cores on small work (the seeds' 70x30 matmul: 5.9 us at one thread,
# 12.6 us at two, measured here), so the pinned CPU is measured at small batches, where it
# may win, and skipped at larger ones, where threads pay off.
ONE_THREAD_MAX_BATCH = 8


def _worth_measuring(ref: DeviceRef, size: str) -> bool:
    return ref.threads is None or int(size) <= ONE_THREAD_MAX_BATCH


def _facts(workload: Workload, costs: Any, params: int) -> ModelFacts:
    items = max(costs.items, 1)
    return ModelFacts(workload.name, params, costs.flops / items, costs.op_mix(),
                      costs.kernels, costs.recurrent, costs.small_op_share())


def _crossing(sizes: list[int], cpu: list[float], acc: list[float]) -> float | None:
    """First batch where the accelerator becomes faster, interpolated in log space."""
    pairs = [(s, c, a) for s, c, a in zip(sizes, cpu, acc, strict=True)
             if math.isfinite(c) and math.isfinite(a)]
    for (s0, c0, a0), (s1, c1, a1) in zip(pairs, pairs[1:], strict=False):
        d0, d1 = math.log(a0 / c0), math.log(a1 / c1)
        if d0 > 0 >= d1:
            t = d0 / (d0 - d1)
            return math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))
    if pairs and pairs[0][2] < pairs[0][1]:
        return float(pairs[0][0])  # faster from the smallest batch on
    return None


# torch's MPS fallback warns "The operator 'aten::x' is not currently supported on the MPS
# backend and will fall back to run on the CPU"; torch_xla counts fallbacks as "aten::x"
# metrics. Either way the op runs on the host, with copies both ways.
_FALLBACK = re.compile(r"operator '([^']+)'[^.]*fall back", re.IGNORECASE)


def fallback_ops(messages: Sequence[str]) -> tuple[str, ...]:
    """Operator names that warnings say fell back to the CPU, in first-seen order."""
    found = [m.group(1) for text in messages for m in _FALLBACK.finditer(text)]
    return tuple(dict.fromkeys(found))


def detect_fallbacks(workload: Workload, ref: DeviceRef, size: str, dtype: str, mode: str,
                     discovery: Any) -> tuple[str, ...]:
    """Run one call on an accelerator and list the operators that fell back to the CPU."""
    import warnings

    from chipfit.backends import get_backend

    if ref.is_cpu:
        return ()
    with get_backend(ref.backend).session(ref, discovery) as session:
        prepared = workload.build(ref.backend, size, dtype, mode, session)
        args = session.to_device(prepared.host_args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session.wait(prepared.fn(*args))
        found = list(fallback_ops([str(w.message) for w in caught]))
        if ref.platform == "xla":
            found += _xla_fallbacks()
    return tuple(dict.fromkeys(found))


def _xla_fallbacks() -> list[str]:
    try:
        import torch_xla.debug.metrics as met
    except ImportError:
        return []
    return [name for name in met.counter_names() if name.startswith("aten::")]


def _local_option(m: Measurement, info: Any, spec: Any, batch: int, train: Measurement | None,
                  need: int | None, fallbacks: tuple[str, ...] = (),
                  local_price: float | None = None, catalog: Any = (),
                  eager: Measurement | None = None) -> Option:
    from chipfit.hardware.local import local_power
    from chipfit.hardware.local import local_price as price_here

    is_cpu = info is None or info.kind == "cpu"
    cores = DeviceRef.parse(m.device).threads or (info.cores if info else None)
    power = local_power(info.name, cores, catalog.values()) if is_cpu and info else None
    if m.energy_j is not None:
        joules, source = m.energy_j / batch, "measured"
    elif spec is not None and spec.tdp_w:
        joules, source = spec.tdp_w * m.median_s / batch, "estimated: TDP x busy time"
    elif power is not None:
        joules, source = power.value * m.median_s / batch, power.basis + " x busy time"
    else:
        joules, source = None, "unavailable: no power counter and no TDP in the catalog"
    if spec is not None and spec.price_usd_hr is not None:
        price, price_source = spec.price_usd_hr, f"catalog ({spec.key})"
    else:
        here = price_here(info.threads if info and is_cpu else None, local_price,
                          info.name if info else None)
        price, price_source = (here.value, here.basis) if here else (None, "")
    return Option(
        device=m.device, kind=info.kind if info else "cpu", name=info.name if info else m.device,
        present=True, batch=batch, latency_s=m.end_to_end_s, latency_source="measured",
        memory_need_bytes=need, memory_have_bytes=info.memory_bytes if info else None,
        price_usd_hr=price, price_source=price_source,
        power_w=spec.tdp_w if spec is not None else (power.value if power else None),
        joules_per_item=joules,
        energy_source=source, train_step_s=train.median_s if train is not None and train.ok else None,
        train_source="measured" if train is not None and train.ok else "",
        fallback_ops=fallbacks,
        notes=(f"catalog match: {spec.key}",) if spec is not None else (),
        stack=m.stack, precision=_stack_precision(m.stack, m.dtype),
        eager_latency_s=eager.end_to_end_s if eager is not None and eager.ok else None,
        max_rel_diff=m.max_rel_diff,
    )


def _stack_precision(stack: str, dtype: str) -> str:
    """What a local stack computes in: int8 stacks int8 (from ``dtype`` inputs), else dtype."""
    return "int8" if stack.startswith("int8") else dtype


def _engine_option(spec: Any, eager: Any, stack: str, batch: int, need: int | None,
                   costs: Any, precision: str = "int8", tokens: Any = None) -> Option:
    """A catalog device running a fused inference engine (predicted on top of eager, on the
    traced operators' work ``costs``; a token model at the real tokens of ``tokens``, the
    rule ``predict`` uses: :func:`chipfit.predictors.engine.token_window`). A device
    without the precision's peak is an unknown option, which the ranking sets aside."""
    from dataclasses import replace

    from chipfit.analysis.stacks import from_operators
    from chipfit.predictors.engine import predict_engine

    pred = predict_engine(from_operators(eager, costs.ops), spec, stack, precision,
                          tokens=tokens)
    if pred.unknown:
        return Option(device=spec.key, kind=spec.kind, name=spec.name, present=False,
                      batch=batch, latency_s=math.nan, latency_source="unknown",
                      bound="unknown", stack=stack, precision=precision,
                      eager_latency_s=eager.end_to_end_s, route=pred.route,
                      notes=tuple(pred.notes[:1]), missing_peak=pred.missing_peak)
    option = _catalog_option(spec, pred, None, batch, need)
    return replace(option, stack=stack, precision=precision,
                   eager_latency_s=eager.end_to_end_s,
                   notes=option.notes + ("engine efficiency fitted on published MLPerf results",))


def _catalog_option(spec: Any, pred: Any, train_pred: Any, batch: int, need: int | None) -> Option:
    latency = pred.end_to_end_s
    busy = (pred.compute_s + pred.memory_s) / pred.seconds if pred.seconds > 0 else 1.0
    joules = (spec.tdp_w * max(busy, BUSY_FLOOR) * latency / batch) if spec.tdp_w else None
    return Option(
        device=spec.key, kind=spec.kind, name=spec.name, present=False, batch=batch,
        latency_s=latency, latency_source="predicted", bound=pred.bound,
        memory_need_bytes=need, memory_have_bytes=int(spec.memory_bytes) if spec.memory_bytes else None,
        price_usd_hr=spec.price_usd_hr, power_w=spec.tdp_w, joules_per_item=joules,
        price_source=(f"catalog ({spec.key}): {spec.figure('price_usd_hr').note}"
                      if spec.price_usd_hr is not None else ""),
        energy_source="estimated: TDP x busy fraction" if joules is not None else
        "unavailable: TDP not in the catalog",
        train_step_s=train_pred.end_to_end_s if train_pred is not None else None,
        train_source="predicted" if train_pred is not None else "",
        route=pred.route,
        notes=(f"uncertainty x/÷{1 + pred.band:.2g} ({pred.band_basis})",
               *(f"precision: {line}" for line in pred.precision),
               *(() if pred.transfer_known else
                 ("copy time unknown (host link unsourced): latency leaves copies out",))),
        band=pred.band, missing_peak=pred.missing_peak,
    )


def advise(model: Any, example_inputs: Any = None, *, objective: str = "latency",
           batch: int | None = None, batches: Sequence[int] | None = None,
           mode: str = "inference", dtype: str = "float32",
           hardware: Sequence[str] = DEFAULT_HARDWARE, devices: Sequence[str] | None = None,
           max_latency: float | None = None, budget: float | None = None,
           train_samples: int | None = None, epochs: float = 1.0,
           weights: str | None = None, trust_pickle: bool = False,
           timing: TimingConfig | None = None, on_result: Any = None,
           local_price: float | None = None, store: Any = None,
           progress: Any = None, stacks: Sequence[str] = ("eager",),
           measure: bool = True, host_speed: float = 1.0) -> Advice:
    """Which processor should run ``model``, measured here and predicted elsewhere, and why.

    ``local_price`` (USD per hour) prices the local devices the catalog has no price for, so
    they take part in the cost objective and the budget. ``store`` (a results database)
    keeps the measurements in the history that ``chipfit runs`` lists. ``progress(text)`` is
    told each stage that is not a measurement (measurements go to ``on_result``).
    ``stacks`` adds software stacks: local ones (``compile``, ``onnxruntime``, ``int8`` ...)
    are measured on the local devices at the target batch; predicted ones (``tensorrt`` for
    catalog GPUs, ``engine`` for every catalog device) are fused int8 engines predicted on
    top of the eager prediction. ``measure=False`` (``--no-measure``) measures nothing here:
    only catalog hardware is ranked, every figure predicted. ``host_speed`` is the host CPU
    that queues eager PyTorch on a catalog accelerator, relative to the kernel data's median
    host (:func:`chipfit.predictors.check_host_speed`).
    """
    from chipfit.backends import all_backends
    from chipfit.discovery import backends_named, discover
    from chipfit.hardware.catalog import load_catalog
    from chipfit.predictors import check_host_speed
    from chipfit.predictors.engine import token_window

    say = progress or (lambda text: None)
    host_speed = check_host_speed(host_speed)
    dtype = parse_dtype(dtype)
    local_stacks, engine_stacks = split_stacks(stacks, mode)
    workload = resolve_model(model, example_inputs, weights=weights, trust_pickle=trust_pickle)
    if batch is None and isinstance(model, str) and model == workload.name:
        batch = builtin_batch(workload, example_inputs)
    if workload.axis != "batch":
        raise InvalidInputError(f"advise ranks processors for models, whose size is the batch; "
                                f"{workload.name} is sized by {workload.axis}: use chipfit sweep")
    sizes = sorted({int(workload.parse_size(str(b))) for b in (batches or _default_batches(workload, batch))})
    target = batch or (sizes[0] if objective == "latency" else sizes[-1])
    if target not in sizes:
        sizes = sorted({*sizes, target})
    catalog = load_catalog()
    specs = [catalog[key] for key in hardware]
    # Only the frameworks that can run this model (or that --devices names) are started: a
    # torch model need not wait for JAX's or TensorFlow's start-up.
    wanted = (backends_named(devices) or
              [b.name for b in all_backends() if b.name in workload.backends()])
    # measuring nothing (--no-measure) needs only the host's facts (its memory, the run's
    # record) from one framework: starting TensorFlow's runtime for them costs seconds
    found = discover((wanted[:1] if not measure else wanted) or None)
    refs = _local_devices(devices, found) if measure else []
    modes = [mode] + (["train"] if train_samples is not None and mode != "train" else [])
    run = _measure_local(workload, refs, [str(s) for s in sizes], dtype, modes,
                         timing or TimingConfig.quick(), on_result, found, local_stacks,
                         workload.parse_size(str(target)), store)
    say(f"counting {workload.name}'s operators at batch {', '.join(map(str, sizes))}")
    costs = {s: _shape_costs(workload, str(s), dtype, mode) for s in sizes}
    train_costs = _shape_costs(workload, str(target), dtype, "train") if train_samples else None
    gpu_costs: dict[Any, Any] = {}
    need = workload.memory_estimate(str(target), dtype, "train" if train_samples else mode)
    options, cross = [], []
    by_key = {(m.device, int(m.size), m.mode): m for m in run.measurements
              if m.stack in ("eager", "jit")}
    cpu_times = {r: [_time(by_key.get((str(r), s, mode))) for s in sizes] for r in refs}
    for ref in refs:
        m = by_key.get((str(ref), target, mode))
        if m is None or not m.ok:
            continue
        info = found.get(str(ref.base))
        spec = catalog.match(info.name, info.cores) if info is not None else None
        fallbacks = detect_fallbacks(workload, ref, str(target), dtype, mode, found) if (
            info is not None and info.kind != "cpu") else ()
        option = _local_option(m, info, spec, target, by_key.get((str(ref), target, "train")),
                               need, fallbacks, local_price, catalog)
        # its latency and the CPU crossover come from all of this device's points
        options.append(replace(option, latency_source=source_of(
            x for x in run.measurements if x.device == str(ref))))
        options += [_local_option(s, info, spec, target, None, need, (), local_price,
                                  catalog=catalog, eager=m)
                    for s in run.measurements if s.device == str(ref) and s.ok
                    and s.stack not in ("eager", "jit") and int(s.size) == target]
    say(f"predicting {len(specs)} catalog devices")
    for spec in specs:
        try:
            preds, train_pred = _catalog_preds(spec, workload, sizes, target, dtype, mode,
                                               train_samples, costs, train_costs, gpu_costs,
                                               host_speed)
        except UnsupportedError as exc:  # a catalog device without the figures it needs:
            say(f"not predicted: {exc} (chipfit catalog --check lists every gap)")
            continue  # set aside with the reason; the other devices are answered
        options.append(_catalog_option(spec, preds[target], train_pred, target, need))
        options += [_engine_option(spec, preds[target], stack, target, need, costs[target],
                                   tokens=token_window(workload))
                    for stack in engine_stacks if stack == "engine" or spec.kind == "gpu"]
        for ref in refs:
            if found.get(str(ref.base)) and found.get(str(ref.base)).kind == "cpu":
                acc = [preds[s].end_to_end_s for s in sizes]
                cross.append((str(ref), spec.key, _crossing(sizes, cpu_times[ref], acc)))
    params = _params(run)
    evidence = Evidence(_facts(workload, costs[target], params), target, mode, tuple(options),
                        _host_memory(found), tuple(cross), train_samples, epochs)
    rec, _ = settle(recommend(evidence, objective, max_latency=max_latency, budget=budget),
                    evidence)
    return Advice(rec, evidence, run, workload.name, dtype, mode)


def _shape_costs(workload: Workload, size: str, dtype: str, mode: str,
                 gpu: bool = False, backend: str = "torch") -> Any:
    """The one prediction trace (:func:`chipfit.execute.costs.prediction_costs`)."""
    from chipfit.execute.costs import prediction_costs

    return prediction_costs(workload, size, dtype, mode, backend, gpu=gpu)


def _catalog_preds(spec: Any, workload: Workload, sizes: Sequence[int], target: int,
                   dtype: str, mode: str, train_samples: int | None, cpu_costs: dict[int, Any],
                   cpu_train: Any, gpu_cache: dict[Any, Any], host_speed: float = 1.0
                   ) -> tuple[Any, Any]:
    """Predictions of catalog device ``spec`` from the one predictor, in the framework and
    on the trace its kind needs (torch on accelerators: GPU-flavoured; a TPU: JAX where the
    workload has a JAX builder), each trace made once per size and shared by every device."""
    from chipfit.predictors import framework_for, predict_catalog, trace_flavour

    framework = framework_for(spec.kind, workload.backends())
    flavour = trace_flavour(spec.kind, framework)
    if flavour == "torch":  # the CPU trace, already made for the local devices
        preds = {s: predict_catalog(cpu_costs[s], spec.key) for s in sizes}
        train = predict_catalog(cpu_train, spec.key) if cpu_train is not None else None
        return preds, train

    def costs(size: int, m: str) -> Any:
        if (flavour, size, m) not in gpu_cache:
            gpu_cache[flavour, size, m] = _shape_costs(workload, str(size), dtype, m,
                                                       gpu=flavour == "gpu", backend=framework)
        return gpu_cache[flavour, size, m]

    preds = {s: predict_catalog(costs(s, mode), spec.key, framework=framework,
                                host_speed=host_speed) for s in sizes}
    train = (predict_catalog(costs(target, "train"), spec.key, framework=framework,
                             host_speed=host_speed) if train_samples else None)
    return preds, train


def split_stacks(stacks: Sequence[str], mode: str) -> tuple[list[str], list[str]]:
    """(local stacks to measure, predicted engine stacks) from one ``--stacks`` list."""
    from chipfit.analysis.stacks import ENGINE_STACKS
    from chipfit.predictors.engine import resolve_stack
    from chipfit.workloads.stacks import parse_stacks

    texts = [s.strip().lower() for s in stacks if s.strip()]
    engines = [resolve_stack(s) for s in texts if s in ENGINE_STACKS or s in ("trt", "fused")]
    local = parse_stacks([s for s in texts if resolve_stack_or_none(s) is None]) or ["eager"]
    if mode != "inference" and (engines or local != ["eager"]):
        raise InvalidInputError("stacks other than eager are advised for inference only")
    return local, engines


def resolve_stack_or_none(text: str) -> str | None:
    from chipfit.analysis.stacks import ENGINE_STACKS

    return text if text in ENGINE_STACKS or text in ("trt", "fused") else None


def _default_batches(workload: Workload, batch: int | None) -> list[int]:
    base = [1, 8, 32]
    return sorted({*base, batch}) if batch else base


def _time(m: Measurement | None) -> float:
    return m.end_to_end_s if m is not None and m.ok else math.nan


def _params(run: Run) -> int:
    for m in run.measurements:
        if m.ok and "params" in m.meta:
            return int(m.meta["params"])
    return 0


def _host_memory(found: Any) -> int | None:
    cpu = next((d for d in found.devices if d.kind == "cpu"), None)
    return cpu.memory_bytes if cpu is not None else None
