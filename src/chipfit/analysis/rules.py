"""The seeds' "when to use CPU / GPU / TPU" advice as explicit, testable rules.

Each rule reads :class:`~chipfit.analysis.evidence.Evidence` and returns a
:class:`~chipfit.analysis.evidence.Reason` when it applies, or None. Thresholds are named
constants with the reasoning next to them. Sources are the seed articles shipped with the
project (shared/seeds/): 000 "CPU vs GPU vs TPU: quand les utiliser", 001 "CPU vs GPU dans les
modèles AI locaux", 002 "GPU vs TPU", 003 "Importância da GPU no treinamento".
"""

from __future__ import annotations

from collections.abc import Callable

from chipfit.analysis.evidence import Evidence, Option, Reason

__all__ = ["RULES", "evaluate"]

# A TPU's matrix units only pay off on matrix work: 90% of FLOPs in matmul/conv is "matrix
# dominated"; 64 samples per step is the smallest batch Google's TPU guide calls large enough
# to fill a v5e core's 128x128 systolic arrays at all (multiples of 128 preferred).
MATRIX_SHARE = 0.9
LARGE_BATCH = 64
# "Weeks or months" of training (seed 000, 5.4): one week on the fastest single device.
LONG_TRAINING_S = 7 * 24 * 3600
# Small non-matmul ops: when over half the kernels are, launch overhead and irregular work
# dominate (seed 000, CPU: "small non-MatMul batches").
SMALL_OP_SHARE = 0.5

SEED_000 = "seeds/000 (CPU vs GPU vs TPU: when to use them)"
SEED_001 = "seeds/001 (CPU vs GPU performance in local AI models)"
SEED_002 = "seeds/002 (GPU vs TPU comparison)"
SEED_003 = "seeds/003 (GPU importance in neural-network training)"


def _best(options: tuple[Option, ...], kind: str) -> Option | None:
    found = [o for o in options if o.kind == kind and o.fits]
    return min(found, key=lambda o: o.latency_s) if found else None


def below_crossover(ev: Evidence) -> Reason | None:
    """Tiny work runs faster on the CPU: launches and copies dominate (seed 003; seed 002's 70x30)."""
    cpu = _best(ev.options, "cpu")
    if cpu is None:
        return None
    faster = [o for o in ev.options if o.kind != "cpu" and o.fits and o.latency_s < cpu.latency_s]
    known = [(a, x) for c, a, x in ev.crossover_batch if c == cpu.device and x is not None]
    above = [a for a, x in known if ev.batch >= x]
    if faster or above or not [o for o in ev.options if o.kind != "cpu"]:
        return None
    items = [("batch", str(ev.batch)), ("cpu", f"{cpu.device} {cpu.latency_s:.3g} s "
                                               f"({cpu.latency_source})")]
    items += [(f"crossover vs {a}", f"batch {x:.3g}") for a, x in known]
    never = [a for c, a, x in ev.crossover_batch if c == cpu.device and x is None]
    if never:
        items.append(("no crossover in the batches measured", ", ".join(never[:6])))
    return Reason("below-crossover", "cpu", tuple(items), cpu.latency_source,
                  f"{SEED_003}: small tasks lose to transfer and launch time on a GPU")


def launch_bound(ev: Evidence) -> Reason | None:
    """Accelerators whose predicted time is mostly launches or copies (seed 003)."""
    bound = [o for o in ev.options if o.kind != "cpu" and o.bound in ("launch", "transfer")]
    if not bound or len(bound) < len([o for o in ev.options if o.kind != "cpu"]) / 2:
        return None
    items = tuple(dict.fromkeys((o.device, f"{o.bound}-bound at batch {o.batch}")
                                for o in bound))[:4]
    return Reason("launch-bound", "cpu", items, "predicted",
                  f"{SEED_003}: with little data, the copy to and from the GPU outweighs compute")


def memory_host_only(ev: Evidence) -> Reason | None:
    """Fits host RAM but not accelerator memory: the CPU's large memory wins (seed 000)."""
    if ev.host_memory_bytes is None:
        return None
    accel = [o for o in ev.options if o.kind != "cpu" and o.memory_need_bytes is not None]
    misfit = [o for o in accel if not o.fits]
    need = accel[0].memory_need_bytes if accel else None
    if not misfit or need is None or need > ev.host_memory_bytes:
        return None
    items = (("needs", f"{need / 2**30:.1f} GiB"), ("host", f"{ev.host_memory_bytes / 2**30:.1f} GiB"),
             *((o.device, f"{(o.memory_have_bytes or 0) / 2**30:.0f} GiB") for o in misfit[:4]))
    return Reason("memory-host-only", "cpu", items, "catalog",
                  f"{SEED_000}: CPU supports the largest models thanks to its large memory")


def cpu_fallbacks(ev: Evidence) -> Reason | None:
    """Operators without an accelerator kernel fall back to the CPU (seed 000, GPU/TPU lists)."""
    hit = [o for o in ev.options if o.fallback_ops]
    if not hit:
        return None
    items = tuple((o.device, ", ".join(o.fallback_ops[:6])) for o in hit)
    return Reason("cpu-fallback-ops", "cpu", items, "measured",
                  f"{SEED_000}: models whose custom ops the accelerator must support")


def recurrent_or_irregular(ev: Evidence) -> Reason | None:
    """RNNs and small non-matmul work suit CPUs and GPUs, not TPUs (seed 000, CPU list)."""
    if not (ev.model.recurrent or ev.model.small_op_share > SMALL_OP_SHARE):
        return None
    items = (("recurrent layers", "yes" if ev.model.recurrent else "no"),
             ("small-op share of kernels", f"{ev.model.small_op_share:.0%}"))
    return Reason("recurrent-or-irregular", "cpu", items, "measured",
                  f"{SEED_000}: CPUs get the most FLOPs out of RNNs and irregular, small "
                  "non-MatMul work")


def matrix_large_batch(ev: Evidence) -> Reason | None:
    """Matrix-dominated work at large batch favours TPUs (seed 000, TPU list; seed 002)."""
    share = ev.model.share("matmul", "conv")
    if share < MATRIX_SHARE or ev.batch < LARGE_BATCH or ev.model.recurrent:
        return None
    items = (("matmul+conv share of FLOPs", f"{share:.0%}"), ("batch", str(ev.batch)))
    return Reason("matrix-large-batch", "tpu", items, "measured",
                  f"{SEED_000}: TPUs are optimised for matrix workloads with large batches; "
                  f"{SEED_002}")


def long_training(ev: Evidence) -> Reason | None:
    """Training that takes weeks favours TPU pods or many GPUs (seed 000, 5.4; seed 003)."""
    if ev.train_samples is None:
        return None
    times = [(o, o.train_time_s(ev.train_samples, ev.epochs)) for o in ev.options if o.fits]
    times = [(o, t) for o, t in times if t is not None]
    if not times:
        return None
    best, seconds = min(times, key=lambda pair: pair[1])
    if seconds < LONG_TRAINING_S:
        return None
    items = (("fastest single device", best.device), ("time to train", f"{seconds / 86400:.1f} days"),
             ("source", best.train_source))
    return Reason("long-training", "multi-device", items, best.train_source or "predicted",
                  f"{SEED_000}: models that train for weeks or months belong on TPUs; "
                  f"{SEED_003}: large-scale training")


def large_parallel_work(ev: Evidence) -> Reason | None:
    """Medium and large models at larger batches run fastest on GPUs (seed 000, 5.3; seed 001)."""
    cpu = _best(ev.options, "cpu")
    gpu = _best(ev.options, "gpu")
    if cpu is None or gpu is None or gpu.latency_s >= cpu.latency_s:
        return None
    items = (("speed-up over the CPU", f"{cpu.latency_s / gpu.latency_s:.1f}x"),
             ("gpu", f"{gpu.device} ({gpu.latency_source})"), ("cpu", f"{cpu.device} ({cpu.latency_source})"))
    return Reason("parallel-work", "gpu", items, gpu.latency_source,
                  f"{SEED_000}: medium and large models with larger batches; {SEED_001}")


# A stack whose outputs differ from eager's by more than this share of eager's largest output
# is not offered as "the same model, faster" (int8 on random weights lands near 1%).
STACK_AGREEMENT = 0.05


def _stack_reason(ev: Evidence, measured: bool) -> Reason | None:
    best = min((o for o in ev.options if o.fits and (o.speedup_vs_eager or 0) > 1
                and (o.latency_source == "measured") == measured
                and (o.max_rel_diff is None or o.max_rel_diff <= STACK_AGREEMENT)),
               key=lambda o: o.latency_s, default=None)
    if best is None:
        return None
    agreement = (f"outputs within {best.max_rel_diff * 100:.2g}% of eager's"
                 if best.max_rel_diff is not None else "output agreement not measured")
    items = (("stack", best.stack), ("device", best.device), ("precision", best.precision),
             ("speedup", f"{best.speedup_vs_eager:.2g}x"), ("batch", str(best.batch)),
             ("latency", f"{best.latency_s:.3g} s ({best.latency_source})"),
             ("eager latency", f"{best.eager_latency_s:.3g} s ({best.latency_source})"),
             ("agreement", agreement))
    cite = ("chipfit measurement: the same model on each stack, outputs compared with eager's"
            if measured else "the fused-engine model fitted on published MLPerf results "
            "(chipfit.analysis.stacks)")
    return Reason("faster-stack", best.kind, items, best.latency_source, cite)


def faster_local_stack(ev: Evidence) -> Reason | None:
    """A measured software stack beats eager on the same local device."""
    return _stack_reason(ev, measured=True)


def faster_engine(ev: Evidence) -> Reason | None:
    """A predicted fused engine beats eager on the same catalog device."""
    return _stack_reason(ev, measured=False)


RULES: tuple[Callable[[Evidence], Reason | None], ...] = (
    below_crossover, launch_bound, memory_host_only, cpu_fallbacks, recurrent_or_irregular,
    matrix_large_batch, long_training, large_parallel_work, faster_local_stack, faster_engine,
)


def evaluate(ev: Evidence) -> tuple[Reason, ...]:
    """Every rule that applies to ``ev``, in a fixed order. Options priced without their
    precision's peak (a stand-in, or no time at all) are left out: no reason rests on them,
    as no verdict does (:mod:`chipfit.analysis.ranking`)."""
    from dataclasses import replace

    priced = tuple(o for o in ev.options if not o.missing_peak)
    if len(priced) != len(ev.options):
        ev = replace(ev, options=priced)
    return tuple(r for r in (rule(ev) for rule in RULES) if r is not None)
