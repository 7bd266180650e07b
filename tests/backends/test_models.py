"""The transformers model workloads on real torch and the real CPU: every model in every mode,
FLOP counts against published figures, transfer learning, dtypes, and out-of-memory paths."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import subprocess
import sys
import textwrap

import pytest

from chipfit.backends import get_backend
from chipfit.errors import UnsupportedError
from chipfit.execute.job import run_job
from chipfit.pipelines.bench import new_run, plan, run_jobs
from chipfit.spec import MODES, DeviceRef, Job, TimingConfig
from chipfit.workloads import get_workload
from chipfit.workloads.models import HFModel, workloads

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

CPU = DeviceRef("torch", "cpu")
# Three timed calls at most: these tests check what is reported, not how fast it is.
TINY = TimingConfig(warmup_s=0.001, warmup_min_calls=1, min_samples=3, max_samples=3,
                    budget_s=0.001, target_rel_ci=0.5)
MODELS = ["resnet50", "bert-base", "gpt2-small", "t5-small", "vit-base"]
# Parameter counts of the reference architectures (torchvision / Hugging Face model cards;
# BERT with its 2-class head, ResNet-50 and ViT-B/16 with 1000 classes).
PARAMS = {"resnet50": 25_557_032, "bert-base": 109_483_778, "gpt2-small": 124_439_808,
          "t5-small": 60_506_624, "vit-base": 86_567_656}
LOGITS = {"resnet50": (1, 1000), "bert-base": (1, 2), "gpt2-small": (1, 128, 50257),
          "t5-small": (1, 128, 32128), "vit-base": (1, 1000)}


def test_the_five_models_are_registered_with_batch_ladders():
    assert [w.name for w in workloads()] == MODELS
    for name in MODELS:
        model = get_workload(name)
        assert isinstance(model, HFModel) and model.axis == "batch" and model.modes == MODES
        assert model.quick_sizes == ("1",) and set(model.quick_sizes) <= set(model.default_sizes)
        assert "torch" in model.backends()


def _snapshot(model) -> dict[str, object]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _in_head(name: str, head: tuple[str, ...]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in head)


def _step(workload: HFModel, mode: str) -> tuple[object, object, dict[str, object]]:
    """One batch-1 call of the function that is timed; the output, the model, and its
    weights before the call."""
    from chipfit.workloads.models import _template

    model = copy.deepcopy(_template(workload.name))
    fn = workload.model_call(model, mode, "float32", torch.device("cpu"))
    before = _snapshot(model)
    return fn(*workload.make_inputs(1, mode)), model, before


# ResNet-50 last: chipfit keeps one model template per process (workloads.models._template),
# and the tests after these measure ResNet-50 on it instead of initialising it again.
@pytest.mark.parametrize("name", [*(m for m in MODELS if m != "resnet50"), "resnet50"])
def test_every_model_runs_a_step_in_every_mode_and_finetune_trains_only_the_head(name):
    workload = get_workload(name)
    with get_backend("torch").session(CPU) as session:
        for mode in MODES:
            details = dict(workload.build("torch", "1", "float32", mode, session).details)
            assert details["params"] == str(PARAMS[name])
            assert int(details["model_bytes"]) >= 4 * PARAMS[name]

    logits, _, _ = _step(workload, "inference")
    assert tuple(logits.shape) == LOGITS[name] and torch.isfinite(logits).all()

    loss, model, before = _step(workload, "train")
    assert loss.ndim == 0 and math.isfinite(float(loss))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > 0.9 * len(before)  # a full step moves (nearly) every weight

    loss, model, before = _step(workload, "finetune")
    assert math.isfinite(float(loss))
    params = dict(model.named_parameters())
    head = [n for n in params if _in_head(n, workload.head)]
    for n, p in params.items():
        assert p.requires_grad == (n in head)
        if n not in head:
            assert torch.equal(p, before[n]), f"backbone weight {n} changed"
    moved = [n for n in head if not torch.equal(params[n], before[n])]
    assert head and len(moved) == len(head), sorted(set(head) - set(moved))


# Published multiply-accumulate counts per sample at these input sizes; chipfit counts two
# FLOPs per multiply-accumulate. ResNet-50 and ViT-B/16: torchvision's model tables (4.09 and
# 17.56 "GFLOPS", which are GMACs); BERT, GPT-2 and T5 from their layer shapes (weights x
# tokens, plus attention's two token x token products per layer).
def _transformer_macs(layers: int, width: int, ff: int, tokens: int) -> float:
    return layers * (tokens * (4 * width * width + 2 * width * ff) + 2 * tokens**2 * width)


GMACS = {
    "resnet50": 4.09e9,
    "vit-base": 17.56e9,
    "bert-base": _transformer_macs(12, 768, 3072, 128) + 768 * 768 + 768 * 2,
    "gpt2-small": _transformer_macs(12, 768, 3072, 128) + 128 * 768 * 50257,
    "t5-small": (_transformer_macs(6, 512, 2048, 128)  # encoder
                 + 6 * 128 * 4 * 512 * 512 + 6 * 2 * 128**2 * 512  # decoder cross-attention
                 + _transformer_macs(6, 512, 2048, 128) + 128 * 512 * 32128),
}


@pytest.mark.parametrize("name", MODELS)
def test_flop_counts_match_published_figures(name):
    workload = get_workload(name)
    one = workload.cost("1", "float32", "inference")
    assert one.flops / 2 == pytest.approx(GMACS[name], rel=0.01)
    four = workload.cost("4", "float32", "inference")
    assert four.flops == pytest.approx(4 * one.flops, rel=1e-9)  # linear in the batch
    train = workload.cost("1", "float32", "train").flops
    assert 2.9 < train / one.flops < 3.1  # backward ~ 2x forward (no input grads)
    finetune = workload.cost("1", "float32", "finetune").flops
    assert one.flops <= finetune < train


def test_bytes_kernels_and_memory_follow_the_model():
    resnet = get_workload("resnet50")
    weights = PARAMS["resnet50"] * 4
    fp32 = resnet.cost("2", "float32", "inference")
    bf16 = resnet.cost("2", "bfloat16", "inference")
    assert fp32.bytes_moved > weights and bf16.bytes_moved < fp32.bytes_moved
    assert fp32.kernels > 50 and fp32.transfer_bytes == 2 * 3 * 224 * 224 * 4 + 2 * 1000 * 4
    infer = resnet.memory_estimate("2", "float32", "inference")
    train = resnet.memory_estimate("2", "float32", "train")
    big = resnet.memory_estimate("64", "float32", "train")
    assert weights < infer < train < big
    assert train > 3 * weights  # weights, gradients and momentum at least
    assert big > 20 * (train - 3 * weights)  # activations grow with the batch


def test_a_measurement_reports_everything_the_issue_lists():
    m = run_job(Job("resnet50", "2", CPU, "float32", "inference", TINY))
    assert m.ok and m.items_per_call == 2
    assert m.throughput == pytest.approx(2 / m.median_s)
    assert m.flops == get_workload("resnet50").cost("2", "float32", "inference").flops
    assert m.gflops > 0 and m.first_call_s > 0 and m.peak_memory_bytes is not None
    meta = m.meta
    assert meta["params"] == str(PARAMS["resnet50"]) and meta["trainable_params"] == "0"
    assert int(meta["model_bytes"]) >= PARAMS["resnet50"] * 4


def test_bfloat16_runs_under_autocast_on_the_cpu():
    # forward, backward and an optimizer step under autocast (finetune: the head trains, so
    # the backward stays cheap; on a CPU without native bfloat16, such as AVX2-only Zen 3,
    # a bfloat16 backward through the whole model takes minutes)
    m = run_job(Job("vit-base", "1", CPU, "bfloat16", "finetune", TINY))
    assert m.ok, m.note
    assert int(m.meta["trainable_params"]) > 0
    fp32 = get_workload("vit-base").cost("1", "float32", "finetune")
    assert m.flops == fp32.flops and m.bytes_moved != fp32.bytes_moved


def test_an_unsupported_dtype_is_recorded_not_raised():
    # oneDNN has no float16 LSTM on CPUs without AVX512-FP16/AMX-FP16 (this machine's Zen 4
    # among them); where the kernel exists the run is measured instead. Never an error.
    m = run_job(Job("lstm", "1", CPU, "float16", "inference", TINY))
    assert m.status in ("unsupported", "ok"), m.note
    capability = torch.backends.cpu.get_cpu_capability()
    flags = set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii",
                                            errors="replace") as info:
        flags = {f for line in info if line.startswith("flags") for f in line.split()}
    if capability in ("AVX2", "AVX512") and not flags & {"avx512_fp16", "amx_fp16"}:
        assert m.status == "unsupported" and "float16" in m.note


def test_autocast_refuses_what_it_cannot_do():
    from chipfit.workloads.training import autocast, torch_model_call

    with pytest.raises(UnsupportedError, match="float16 autocast is not supported on meta"):
        autocast(torch, "meta", "float16")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UnsupportedError):
        torch_model_call(model, "inference", "bfloat16", torch.device("meta"), loss=sum)


def test_a_missing_kernel_for_a_dtype_becomes_unsupported():
    from chipfit.workloads.training import _missing_kernels_unsupported

    def broken(*_):
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward")

    with pytest.raises(UnsupportedError, match="float16 is not supported here"):
        _missing_kernels_unsupported(broken, "float16", "cpu")()
    with pytest.raises(RuntimeError):  # float32 failures stay errors
        _missing_kernels_unsupported(broken, "float32", "cpu")()


def test_memory_guard_skips_what_does_not_fit_and_the_run_goes_on(monkeypatch):
    monkeypatch.setenv("CHIPFIT_MEMORY_LIMIT_BYTES", "200Mi")
    resnet = get_workload("resnet50")
    assert resnet.memory_estimate("1", "float32", "inference") < 200 * 2**20
    assert resnet.memory_estimate("1", "float32", "train") > 200 * 2**20
    from chipfit.discovery import discover

    found = discover(["torch"])
    jobs = plan(["resnet50"], [CPU], sizes=["1"], modes=["train", "inference"], timing=TINY)
    run = run_jobs(jobs, new_run("test", found, {}))
    train, infer = run.measurements
    assert train.status == "oom" and "does not fit in 0.2 GiB" in train.note
    assert "CHIPFIT_MEMORY_LIMIT_BYTES" in train.note and not train.block_times_s
    assert infer.ok


_REAL_OOM = textwrap.dedent("""
    import json, resource
    import torch
    from chipfit.discovery import discover
    from chipfit.pipelines.bench import new_run, plan, run_jobs
    from chipfit.spec import DeviceRef, TimingConfig

    tiny = TimingConfig(warmup_s=0.001, warmup_min_calls=1, min_samples=3, max_samples=3,
                        budget_s=0.001, target_rel_ci=0.5)
    cpu = DeviceRef("torch", "cpu")
    found = discover(["torch"])
    warm = plan(["cnn"], [cpu], sizes=["1"], timing=tiny)  # template, thread pool
    run_jobs(warm, new_run("warm", found, {}))
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    # 1 GiB more address space: at batch 16384 the first convolution alone writes 1.6 GiB
    # (its input, 100 MiB, fits), batch 1 needs a few MiB
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
    jobs = plan(["cnn"], [cpu], sizes=["16384", "1"], timing=tiny)
    run = run_jobs(jobs, new_run("oom", found, {}))
    print(json.dumps([[m.size, m.status, m.note] for m in run.measurements]))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS semantics: Linux")
def test_a_real_out_of_memory_error_is_recorded_and_the_run_goes_on():
    proc = subprocess.run([sys.executable, "-c", _REAL_OOM], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (big, big_status, note), (small, small_status, _) = json.loads(proc.stdout.splitlines()[-1])
    assert (big, big_status) == ("16384", "oom") and note.startswith("does not fit")
    assert "can't allocate memory" in note  # torch's own error, not the guard's estimate
    assert (small, small_status) == ("1", "ok")


def test_traffic_counts_bytes_kernels_and_the_live_peak_of_a_known_network():
    from chipfit.cost.profile import profile_torch
    from chipfit.workloads.training import torch_model_call

    def build():
        return torch.nn.Sequential(torch.nn.Linear(1000, 1000), torch.nn.ReLU())

    cpu = torch.device("cpu")
    found = profile_torch(("test-mlp", 100), build, lambda: (torch.randn(100, 1000),),
                          lambda m: torch_model_call(m, "inference", "float32", cpu, loss=sum),
                          batch=100)
    act, weights, bias = 100 * 1000 * 4, 1000 * 1000 * 4, 1000 * 4
    assert found.method == "fake" and found.kernels == 2  # addmm, relu (the transpose is a view)
    assert found.flops == 2 * 100 * 1000 * 1000
    assert found.bytes_moved == (bias + act + weights + act) + (act + act)
    assert found.peak_bytes == 2 * act  # the linear's output is freed only after the ReLU
    assert found.param_bytes == weights + bias and found.output_bytes == act
    assert found.memory_bytes("inference") == int((weights + bias + act + 2 * act) * 1.25)


def test_a_model_fake_tensors_cannot_run_is_counted_on_a_real_small_batch():
    from chipfit.cost.profile import profile_torch
    from chipfit.workloads.training import torch_model_call

    class Gated(torch.nn.Module):  # data-dependent control flow: fake tensors have no data
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            y = self.lin(x)
            return y * 2 if float(y.abs().sum()) >= 0 else y

    cpu = torch.device("cpu")
    found = profile_torch(("test-gated", 4), Gated, lambda: (torch.randn(4, 8),),
                          lambda m: torch_model_call(m, "inference", "float32", cpu, loss=sum),
                          batch=4)
    assert found.method == "real-batch1" and found.flops == 4 * 2 * 8 * 8
    assert found.peak_bytes is None and found.memory_bytes("inference") is None


def test_a_model_that_cannot_be_built_is_recorded_with_the_reason(monkeypatch):
    import chipfit.workloads as registry
    from chipfit.workloads.models import ResNet50

    class Missing(ResNet50):  # what a machine without transformers sees
        name = "resnet50-missing"

        def make_model(self):
            raise UnsupportedError("the model workloads need transformers; install it with: "
                                   "pip install 'chipfit[models]'")

    registry.all_workloads()
    monkeypatch.setitem(registry._REGISTRY, Missing.name, Missing())
    cost = get_workload(Missing.name).cost("1", "float32", "inference")
    assert cost.flops == 0 and get_workload(Missing.name).memory_estimate("1", "float32") is None
    m = run_job(Job(Missing.name, "1", CPU, "float32", "inference", TINY))
    assert m.status == "unsupported" and "pip install 'chipfit[models]'" in m.note
