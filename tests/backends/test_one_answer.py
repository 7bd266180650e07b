"""One question, one answer: ``predict``, ``advise`` and the Python API price the same
(workload, device, stack, dtype, batch) through the one predictor (chipfit.predictors), so
they return the same seconds and the same band, on every route:

- ``t4``: a catalog GPU with architecture figures (the fitted GPU kernel models);
- ``apple-m3-max-gpu``: a catalog GPU without them (roofline only);
- ``tpu-v5e``: a TPU (roofline, torch_xla eager for a torch-only model);
- ``epyc-9654``: a catalog CPU (roofline, host and device on the same cores).

Every built-in model workload (sized by batch) is asked, at batch 1 in float32 eager.
Traces are memoised per question (workload, size, dtype, mode, framework, flavour) for the
test's speed: two paths that asked different questions still get different traces. For the
same reason t5-small-generate generates :data:`GEN_LEN` tokens here, not its 32: its trace is
a real run (fake tensors cannot follow a generation loop), 32 decoder steps cost most of this
file's time, and the question (do three paths give one number?) is the same for any length.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import chipfit  # noqa: E402
import chipfit.execute.costs as costs_module  # noqa: E402
import chipfit.pipelines.predict as predict_module  # noqa: E402
from _traces import costable_checks  # noqa: E402
from chipfit.pipelines.advise import advise  # noqa: E402
from chipfit.pipelines.predict import predict_workload  # noqa: E402
from chipfit.workloads import all_workloads, get_workload  # noqa: E402

DEVICES = ("t4", "apple-m3-max-gpu", "tpu-v5e", "epyc-9654")
ROUTES = {"t4": "gpu-kernel-model", "apple-m3-max-gpu": "roofline", "tpu-v5e": "roofline",
          "epyc-9654": "roofline"}
#: Tokens t5-small-generate generates in these tests (its own: 32); see the docstring.
GEN_LEN = 4
MODELS = sorted(w.name for w in all_workloads() if w.axis == "batch" and "torch" in w.backends()
                and "inference" in w.modes)


@pytest.fixture(scope="module", autouse=True)
def _one_trace_per_question() -> Any:
    original = costs_module.prediction_costs
    memo: dict[tuple[Any, ...], Any] = {}

    def memoised(workload: Any, size: str, dtype: str = "float32", mode: str = "inference",
                 backend: str = "torch", *, gpu: bool = False) -> Any:
        key = (getattr(workload, "name", workload), size, dtype, mode, backend, gpu)
        if key not in memo:
            memo[key] = original(workload, size, dtype, mode, backend, gpu=gpu)
        return memo[key]

    from chipfit.workloads.seq2seq import T5SmallGenerate

    patch = pytest.MonkeyPatch()
    patch.setattr(T5SmallGenerate, "gen_len", GEN_LEN)
    patch.setattr(costs_module, "prediction_costs", memoised)
    patch.setattr(predict_module, "prediction_costs", memoised)
    yield
    patch.undo()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_predict_advise_and_the_api_give_one_number(name: str) -> None:
    rows = {r.target.key: r.prediction for r in
            predict_workload(name, ["1"], DEVICES, measure=False)}
    api = {r.target.key: r.prediction for r in chipfit.predict(name, ["1"], DEVICES,
                                                               measure=False)}
    advice = advise(name, batch=1, batches=[1], hardware=DEVICES, measure=False)
    options = {o.device: o for o in advice.recommendation.ranked if o.stack == "eager"}
    assert set(rows) == set(DEVICES)
    for key in DEVICES:
        pred = rows[key]
        assert pred.route == ROUTES[key], key
        assert pred.stratum, key
        assert api[key].seconds == pred.seconds and api[key].band == pred.band, key
        assert key in options, f"advise dropped {key}"
        option = options[key]
        assert math.isclose(option.latency_s, pred.end_to_end_s, rel_tol=1e-12), (
            f"{name} on {key}: advise {option.latency_s} s, predict {pred.end_to_end_s} s")
        assert option.band == pred.band, key
    # the trace every route priced: counted work, every operator priced, FLOPs near the
    # workload's formula (test_costs.py leaves the model workloads' checks to this file)
    workload = get_workload(name)
    size = workload.sizes(True)[0] if workload.sizes(True) else workload.sizes(False)[0]
    assert size == "1" and workload.modes[0] == "inference", (name, size)
    costable_checks(workload, costs_module.prediction_costs(name, "1"), "1")


def test_a_batch_one_eager_model_pays_the_same_host_cost_on_every_accelerator() -> None:
    """The old roofline route gave TPUs and unmodelled GPUs no eager host cost, so a batch-1
    eager model went to a TPU (1.16 ms vs 3.40 ms on an H100 for a small ViT)."""
    rows = {r.target.key: r.prediction for r in
            predict_workload("vit-base", ["1"], ("h100-sxm", "apple-m3-max-gpu", "tpu-v5e"),
                             measure=False)}  # torch only: torch_xla eager on the TPU
    hosts = {k: p.host_s for k, p in rows.items()}
    assert len({round(h, 12) for h in hosts.values()}) == 1, hosts
    for key, pred in rows.items():
        assert pred.seconds >= pred.host_s > 0, key  # the host pipeline is never skipped


def test_advise_first_line_choice_and_first_row_name_one_device() -> None:
    advice = advise("cnn", batch=1, batches=[1], hardware=("l4", "tpu-v5e", "t4", "apple-m3-max-gpu"),
                    objective="cost", measure=False)
    rec = advice.recommendation
    assert rec.choice is advice.verdict.best is rec.ranked[0]


#: The GRU's sequence length (time steps).
STEPS = 20
GRU_FACTORY = '''
import torch


class GRUNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(40, 64, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.fc(y[:, -1])


def make():
    return GRUNet()
'''


def test_a_users_gru_gets_one_number_and_its_steps_on_every_route(tmp_path, monkeypatch):
    """predict gave RTX 5090 (then roofline-only) 0.03 ms for a GRU of 100 steps (its fused
    op priced by FLOPs alone, one launch) while advise said 33.1 ms on the same card (a CPU
    trace) and 1.27 ms on L4. Here STEPS steps: the floor below (0.24 ms) is still 8x what that bug gave."""
    from chipfit.pipelines.model_predict import predict_model

    (tmp_path / "one_answer_gru.py").write_text(GRU_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = ("apple-m3-max-gpu", "tpu-v5e", "l4")
    rows = {r.target.key: r.prediction for r in
            predict_model("one_answer_gru:make", keys, inputs=(f"1x{STEPS}x40",))}
    advice = advise("one_answer_gru:make", (f"1x{STEPS}x40:float32",), batch=1, batches=[1],
                    hardware=keys, measure=False)
    options = {o.device: o for o in advice.recommendation.ranked}
    for key in keys:
        assert math.isclose(options[key].latency_s, rows[key].end_to_end_s, rel_tol=1e-12), key
    # 2 layers x STEPS dependent steps, each at least the fitted step floor (6 us)
    for key in ("apple-m3-max-gpu", "tpu-v5e"):
        assert rows[key].seconds >= 2 * STEPS * 6e-6, (key, rows[key].seconds)


def test_advise_without_measuring_starts_one_framework(monkeypatch):
    """--no-measure needs only the host's facts: advise discovers through one framework, not
    every one the model runs on (TensorFlow's start-up alone is ~5 CPU-s)."""
    import chipfit.discovery as discovery

    asked = []
    real = discovery.discover
    monkeypatch.setattr(discovery, "discover", lambda backends=None: (
        asked.append(backends), real(backends))[1])
    advise("mlp", batch=1, batches=[1], hardware=["t4"], measure=False)
    assert asked == [["torch"]]
