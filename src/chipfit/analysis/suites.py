"""Named suites: what ``chipfit bench --suite NAME`` measures, and the seed articles' claims.

A :class:`Suite` is data: experiments (a workload at fixed sizes, mode and dtype, measured on
some kinds of device) and, for ``seeds``, the claims those experiments test, each quoted from
its seed article (``shared/seeds/``; French and Portuguese quotes translated). Checking a
claim is a pure function of the measurements (:func:`check_claims`), so it is tested without
hardware; turning a :class:`ClaimResult` into words is the report layer's job
(:mod:`chipfit.report.claims`).

Suites:

- ``seeds``: the seeds' own experiments: large and tiny matrix products (seed 003), ResNet-50
  and BERT inference at batch 1 (seed 001), a CNN and an LSTM training step (seeds 002, 003),
  and, where a TPU is present, a batch-1 CNN on the TPU against the CPU (seed 000).
- ``default``: a first look at every kind of workload on every device found, sized to finish
  in minutes on a 2-core CPU.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from chipfit.analysis.trust import source_of
from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.results import Discovery, Measurement, Run
from chipfit.spec import DeviceRef

__all__ = ["SUITES", "Claim", "ClaimResult", "Experiment", "Suite", "check_claims",
           "get_suite"]

SEED_000 = "seeds/000_67277af60e0d9b27.txt"
SEED_001 = "seeds/001_e56c6a2e2a6f92d7.txt"
SEED_002 = "seeds/002_9f7117047c8d75b5.txt"
SEED_003 = "seeds/003_0e3dc05376387a32.txt"

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable"


@dataclass(frozen=True)
class Experiment:
    """A workload at fixed sizes, measured on devices of the given kinds.

    ``requires`` names a device kind without which the experiment is skipped (its only
    purpose is a claim about that kind). ``stacks`` (empty: the backend's default) are the
    software stacks measured; stacks other than eager run on torch devices without a thread
    pin only.
    """

    key: str
    workload: str
    sizes: tuple[str, ...]
    mode: str = "inference"
    dtype: str = "float32"
    kinds: tuple[str, ...] = ("cpu", "gpu")
    backend: str = "torch"
    quick_sizes: tuple[str, ...] | None = None
    requires: str = ""
    stacks: tuple[str, ...] = ()

    def sizes_for(self, quick: bool) -> tuple[str, ...]:
        return self.quick_sizes if quick and self.quick_sizes is not None else self.sizes


@dataclass(frozen=True)
class Claim:
    """One checkable statement from a seed article.

    ``test`` says how it is checked against experiment ``experiment`` (median time per call):

    - ``latency``: on ``kind``, about ``value`` seconds (within a factor ``tolerance``);
    - ``speedup``: ``kind`` about ``value`` times faster than ``versus`` (within ``tolerance``);
    - ``faster``: ``kind`` faster than ``versus``;
    - ``speedup_at_most``: ``kind`` faster than ``versus``, by at most ``value`` times;
    - ``copies_dominate``: on ``kind``, host<->device copies take longer than the compute;
    - ``highest_rate``: on ``kind``, achieved FLOP/s above every experiment in ``others``.
    """

    key: str
    source: str
    quote: str
    test: str
    experiment: str
    kind: str = "cpu"
    versus: str = ""
    value: float = 0.0
    tolerance: float = 1.0
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    experiments: tuple[Experiment, ...]
    claims: tuple[Claim, ...] = ()
    #: "kinds": each experiment on the first device of each of its kinds (every GPU);
    #: "all": every device found plus the CPU pinned to one thread, as plain ``bench`` does.
    devices: str = "kinds"

    def experiment(self, key: str) -> Experiment:
        for exp in self.experiments:
            if exp.key == key:
                return exp
        raise UnknownNameError("experiment", key, [e.key for e in self.experiments])


@dataclass(frozen=True)
class ClaimResult:
    """A claim checked against this machine's measurements.

    ``status`` is ``holds``, ``does not hold`` or ``not testable``; ``reason`` a short code
    (``slower``, ``faster``, ``reversed``, ``too_high``, ``too_low``, ``no_gpu``,
    ``missing:lstm``, ``failed:oom`` ...); ``measured`` the figure compared (seconds, a ratio,
    or FLOP/s), ``factor`` how far it is from the claim (>= 1), ``devices`` the devices used.
    """

    claim: Claim
    status: str
    reason: str = ""
    measured: float | None = None
    factor: float | None = None
    devices: tuple[str, ...] = ()
    detail: tuple[tuple[str, str], ...] = field(default=())


# ---- the suites ---------------------------------------------------------------------------

_SEED_EXPERIMENTS = (
    Experiment("matmul-large", "matmul", ("7000x3000@3000x7000",)),
    Experiment("matmul-small", "matmul", ("70x30@30x70",)),
    Experiment("resnet50", "resnet50", ("1",)),
    Experiment("bert", "bert-base", ("1",)),
    # A digits CNN at a typical training batch, and the speech LSTM at a batch that keeps a
    # 2-core CPU step to a few seconds (300 frames x 3 layers is most of the work).
    Experiment("cnn-train", "cnn", ("64",), mode="train"),
    Experiment("lstm-train", "lstm", ("16",), mode="train"),
    Experiment("cnn-tpu", "cnn", ("1",), kinds=("cpu", "tpu"), backend="jax", requires="tpu"),
)

_SEED_CLAIMS = (
    Claim("resnet50-cpu", SEED_001, "ResNet-50 inference on a CPU: ~50 ms", "latency",
          "resnet50", kind="cpu", value=0.050, tolerance=1.5),
    Claim("resnet50-gpu", SEED_001, "ResNet-50 inference on a GPU: ~10 ms", "latency",
          "resnet50", kind="gpu", value=0.010, tolerance=1.5),
    Claim("resnet50-speedup", SEED_001, "ResNet-50: the GPU ~5x faster than the CPU "
          "(~10 ms vs ~50 ms)", "speedup", "resnet50", kind="gpu", versus="cpu", value=5.0,
          tolerance=1.5),
    Claim("bert-cpu", SEED_001, "BERT inference on a CPU: ~100 ms", "latency", "bert",
          kind="cpu", value=0.100, tolerance=1.5),
    Claim("bert-gpu", SEED_001, "BERT inference on a GPU: ~20 ms", "latency", "bert",
          kind="gpu", value=0.020, tolerance=1.5),
    Claim("bert-speedup", SEED_001, "BERT: the GPU ~5x faster than the CPU (~20 ms vs ~100 ms)",
          "speedup", "bert", kind="gpu", versus="cpu", value=5.0, tolerance=1.5),
    Claim("matmul-large", SEED_003, "Large matrices (7000x3000 @ 3000x7000): the GPU is faster "
          "than the CPU (33.0 s vs 53.2 s for 100)", "faster", "matmul-large", kind="gpu",
          versus="cpu"),
    Claim("matmul-small", SEED_003, "Tiny matrices (70x30 @ 30x70): the CPU is faster than the "
          "GPU (0.006 s vs 0.097 s for 100)", "faster", "matmul-small", kind="cpu",
          versus="gpu"),
    Claim("small-copies", SEED_003, "With little data, copying between CPU and GPU can take "
          "longer than the computation itself", "copies_dominate", "matmul-small", kind="gpu"),
    Claim("train-cnn", SEED_003, "A GPU can speed up neural-network training up to 10x "
          "(CNN, seed 002's image model)", "speedup_at_most", "cnn-train", kind="gpu",
          versus="cpu", value=10.0),
    Claim("train-lstm", SEED_003, "A GPU can speed up neural-network training up to 10x "
          "(LSTM, seed 002's speech model)", "speedup_at_most", "lstm-train", kind="gpu",
          versus="cpu", value=10.0),
    Claim("cpu-rnn", SEED_000, "CPU: maximum FLOPS utilisation for RNNs (the LSTM reaches the "
          "CPU's highest FLOP/s among the networks)", "highest_rate", "lstm-train", kind="cpu",
          others=("cnn-train", "resnet50", "bert")),
    Claim("tpu-latency", SEED_000, "TPU: high latency compared with the CPU (batch-1 CNN)",
          "faster", "cnn-tpu", kind="cpu", versus="tpu"),
)

_OTHER_STACKS = ("compile", "onnxruntime", "int8", "int8-torch", "int8-static")
_DEFAULT_EXPERIMENTS = (
    Experiment("matmul", "matmul", ("70x30@30x70", "256", "1024", "2048"),
               quick_sizes=("70x30@30x70", "1024")),
    Experiment("elementwise", "elementwise", (str(2**12), str(2**18), str(2**24)),
               quick_sizes=(str(2**12), str(2**24))),
    # Batches 1 and 2 only: at one thread a batch-4 ViT or GPT-2 call takes seconds, and the
    # suite must finish in minutes on two cores (``chipfit sweep`` goes further).
    *(Experiment(name, name, ("1", "2"), quick_sizes=("1",))
      for name in ("resnet50", "bert-base", "gpt2-small", "t5-small", "vit-base")),
    Experiment("resnet50-train", "resnet50", ("2",), mode="train"),
    Experiment("bert-finetune", "bert-base", ("2",), mode="finetune"),
    *(Experiment(f"{name}-train", name, (batch,), mode="train")
      for name, batch in (("mlp", "64"), ("cnn", "64"), ("lstm", "4"),
                          ("transformer-block", "8"))),
    # The software stacks (chipfit.workloads.stacks) at batch 1; eager at batch 1 is measured
    # above for the two models, so only the CNN repeats it here.
    Experiment("cnn-stacks", "cnn", ("1",), stacks=("eager",) + _OTHER_STACKS),
    *(Experiment(f"{name}-stacks", name, ("1",), stacks=_OTHER_STACKS)
      for name in ("resnet50", "bert-base")),
)

SUITES: dict[str, Suite] = {
    "seeds": Suite("seeds", "the seed articles' experiments, each result beside the claim it "
                   "tests", _SEED_EXPERIMENTS, _SEED_CLAIMS),
    "default": Suite("default", "every kind of workload once, on every device found",
                     _DEFAULT_EXPERIMENTS, devices="all"),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise UnknownNameError("suite", name, SUITES)
    return SUITES[name]


def _kind(discovery: Discovery, device: str) -> str:
    info = discovery.get(str(DeviceRef.parse(device).base))
    return info.kind if info is not None else "other"



# ---- checking claims (pure) -------------------------------------------------------------

def _find(run: Run, exp: Experiment, kind: str) -> tuple[Measurement | None, str]:
    """The measurement of ``exp`` on the first device of ``kind`` (threads unpinned first)."""
    found = [m for m in run.measurements
             if m.workload == exp.workload and m.mode == exp.mode and m.dtype == exp.dtype
             and m.size in exp.sizes and _kind(run.discovery, m.device) == kind
             and DeviceRef.parse(m.device).backend == exp.backend]
    found.sort(key=lambda m: DeviceRef.parse(m.device).threads is not None)
    if found:
        return found[0], ""
    if not any(d.kind == kind for d in run.discovery.devices):
        return None, f"no_{kind}"
    return None, f"not_measured:{kind}"


def _pair(run: Run, claim: Claim, suite: Suite,
          installed: Collection[str] | None = None) -> tuple[list[Measurement], str]:
    exp = suite.experiment(claim.experiment)
    kinds = [claim.kind] + ([claim.versus] if claim.versus else [])
    # A missing device kind outranks a missing workload: it is the more basic reason.
    for kind in kinds:
        if not any(d.kind == kind for d in run.discovery.devices):
            return [], f"no_{kind}"
    missing = installed is not None and exp.workload not in installed
    if missing and not _measured_anywhere(run, exp):
        return [], f"missing:{exp.workload}"
    picked = []
    for kind in kinds:
        m, why = _find(run, exp, kind)
        if m is None:
            return [], why
        if not m.ok:
            return [], f"failed:{m.status}:{kind}"
        picked.append(m)
    return picked, ""


def _measured_anywhere(run: Run, exp: Experiment) -> bool:
    return any(m.workload == exp.workload for m in run.measurements)


def _rate(m: Measurement) -> float:
    return m.flops / m.median_s if m.flops and m.median_s > 0 else math.nan


def _within(measured: float, claimed: float, tolerance: float) -> tuple[str, str, float]:
    """(status, reason, factor) of ``measured`` against ``claimed`` within ``tolerance``x."""
    factor = measured / claimed
    if factor > tolerance:
        return FAILS, "too_high", factor
    if factor < 1 / tolerance:
        return FAILS, "too_low", 1 / factor
    return HOLDS, "", max(factor, 1 / factor)


def _check_latency(claim: Claim, ms: list[Measurement]) -> ClaimResult:
    status, reason, factor = _within(ms[0].median_s, claim.value, claim.tolerance)
    reason = {"too_high": "slower", "too_low": "faster"}.get(reason, reason)
    return ClaimResult(claim, status, reason, ms[0].median_s, factor, (ms[0].device,))


def _check_speedup(claim: Claim, ms: list[Measurement]) -> ClaimResult:
    ratio = ms[1].median_s / ms[0].median_s
    if claim.test == "speedup":
        status, reason, factor = _within(ratio, claim.value, claim.tolerance)
    elif claim.test == "faster":
        status, reason, factor = (HOLDS, "", ratio) if ratio > 1 else (FAILS, "reversed", 1 / ratio)
    elif ratio <= 1:  # speedup_at_most: not faster at all
        status, reason, factor = FAILS, "reversed", 1 / ratio
    elif ratio > claim.value:
        status, reason, factor = FAILS, "too_high", ratio / claim.value
    else:
        status, reason, factor = HOLDS, "", ratio
    return ClaimResult(claim, status, reason, ratio, factor, (ms[0].device, ms[1].device))


def _check_copies(claim: Claim, ms: list[Measurement]) -> ClaimResult:
    m = ms[0]
    copies = m.transfer_h2d_s + m.transfer_d2h_s
    ratio = copies / m.median_s
    status, reason = (HOLDS, "") if ratio > 1 else (FAILS, "copies_small")
    return ClaimResult(claim, status, reason, ratio, max(ratio, 1 / ratio) if ratio else None,
                       (m.device,), (("copies_s", repr(copies)), ("compute_s", repr(m.median_s))))


def _check_rate(claim: Claim, ms: list[Measurement], run: Run, suite: Suite) -> ClaimResult:
    mine = _rate(ms[0])
    rivals = []
    for key in claim.others:
        m, _ = _find(run, suite.experiment(key), claim.kind)
        if m is not None and m.ok and math.isfinite(_rate(m)):
            rivals.append((m.workload, _rate(m)))
    if not rivals or not math.isfinite(mine):
        return ClaimResult(claim, UNTESTABLE, "no_rates", devices=(ms[0].device,))
    best_key, best = max(rivals, key=lambda kv: kv[1])
    detail = (("workload", ms[0].workload), ("best_other", best_key),
              ("best_other_flops_per_s", repr(best)))
    if mine >= best:
        return ClaimResult(claim, HOLDS, "", mine, mine / best, (ms[0].device,), detail)
    return ClaimResult(claim, FAILS, f"not_highest:{best_key}", mine, best / mine,
                       (ms[0].device,), detail)


def check_claim(claim: Claim, run: Run, suite: Suite,
                installed: Collection[str] | None = None) -> ClaimResult:
    """Whether ``claim`` holds on the measurements of ``run`` (pure; no hardware).

    ``installed``: the workload names this build has (the caller's: analysis imports no
    workload); a claim on one it lacks, measured nowhere, is untestable as ``missing``."""
    ms, why = _pair(run, claim, suite, installed)
    if why:
        return ClaimResult(claim, UNTESTABLE, why)
    result = _check(claim, ms, run, suite)
    source = source_of(ms)  # a verdict on contended points says so (chipfit.analysis.trust)
    return result if source == "measured" else replace(
        result, detail=result.detail + (("source", source),))


def _check(claim: Claim, ms: list[Measurement], run: Run, suite: Suite) -> ClaimResult:
    if claim.test == "latency":
        return _check_latency(claim, ms)
    if claim.test in ("speedup", "faster", "speedup_at_most"):
        return _check_speedup(claim, ms)
    if claim.test == "copies_dominate":
        return _check_copies(claim, ms)
    if claim.test == "highest_rate":
        return _check_rate(claim, ms, run, suite)
    raise InvalidInputError(f"claim {claim.key!r} has an unknown test {claim.test!r}")


def check_claims(run: Run, suite: Suite | str = "seeds",
                 installed: Collection[str] | None = None) -> list[ClaimResult]:
    """Every claim of ``suite`` checked against ``run`` (a run of that suite, or any run
    holding the same experiments); ``installed`` as for :func:`check_claim`."""
    suite = get_suite(suite) if isinstance(suite, str) else suite
    return [check_claim(c, run, suite, installed) for c in suite.claims]
