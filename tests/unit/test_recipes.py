"""docs/ARCHITECTURE.md's "which files change" recipes, each done once."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("torch")


def test_a_new_gpu_needs_a_catalog_entry_and_an_architecture_row(monkeypatch):
    """Recipe "A new GPU with kernel models": catalog.toml + gpu_arch.toml, nothing else."""
    import chipfit.hardware.catalog as catalog_module
    import chipfit.hardware.gpu_arch as arch_module
    from chipfit.execute.costs import prediction_costs
    from chipfit.predictors import predict_catalog, route_for, stratum_for

    data = catalog_module.read_catalog_data()
    data["devices"]["test-gpu-x"] = copy.deepcopy(data["devices"]["h100-sxm"])
    data["devices"]["test-gpu-x"]["name"] = "Test GPU X"
    catalog = catalog_module.parse_catalog(data)
    monkeypatch.setattr(catalog_module, "load_catalog", lambda path=None: catalog)
    raw = copy.deepcopy(arch_module._data()["gpus"]["h100-sxm"])
    raw.update(name="Test GPU X", architecture="blackwell")
    figures = {**arch_module.gpu_figures(),
               "test-gpu-x": arch_module.GpuFigures.from_mapping("test-gpu-x", raw)}
    monkeypatch.setattr(arch_module, "gpu_figures", lambda: figures)

    assert route_for("test-gpu-x") == "gpu-kernel-model"
    assert stratum_for("test-gpu-x") == "gpu-newer-architecture"
    costs = prediction_costs("mlp", "8", gpu=True)
    new, h100 = predict_catalog(costs, "test-gpu-x"), predict_catalog(costs, "h100-sxm")
    assert new.route == "gpu-kernel-model" and new.seconds == pytest.approx(h100.seconds)


def test_a_catalog_only_device_is_priced_by_the_roofline_and_says_so(monkeypatch):
    """Recipe "A new hardware entry": catalog.toml alone -> the roofline route, labelled."""
    import chipfit.hardware.catalog as catalog_module
    from chipfit.execute.costs import prediction_costs
    from chipfit.predictors import ROOFLINE_LABEL, predict_catalog

    data = catalog_module.read_catalog_data()
    data["devices"]["test-gpu-y"] = copy.deepcopy(data["devices"]["h100-sxm"])
    catalog = catalog_module.parse_catalog(data)
    monkeypatch.setattr(catalog_module, "load_catalog", lambda path=None: catalog)
    pred = predict_catalog(prediction_costs("mlp", "8", gpu=True), "test-gpu-y")
    assert pred.route == "roofline" and pred.stratum == "roofline-only"
    assert any(ROOFLINE_LABEL in n for n in pred.notes)


@pytest.mark.parametrize("objective", ["latency", "throughput", "cost", "energy"])
def test_every_llm_objective_ranks_through_the_shared_ranking(objective):
    """Recipe "A new LLM metric": an objective ranks by the row's own figure."""
    from chipfit.pipelines.llm import _score, advise_report, llm_report

    report = llm_report("llama-3.1-8b", ["h100-sxm", "l4", "a100-sxm-80gb"], 512, 64, 4,
                        "bfloat16")
    advice = advise_report(report, objective)
    assert advice.choice == advice.verdict.best.device == advice.ranked[0][0].hardware
    for row, value in advice.ranked:
        assert value == _score(row, objective)
