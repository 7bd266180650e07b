"""The shipped hardware catalog: every figure sourced (or honestly not), units sane."""

from __future__ import annotations

import copy

import pytest

from chipfit.errors import InvalidInputError, SchemaError, UnknownNameError
from chipfit.hardware.catalog import (
    FIGURES,
    catalog_problems,
    load_catalog,
    parse_catalog,
    read_catalog_data,
)

REQUIRED = ("h100-sxm", "h100-pcie", "h200", "a100-sxm-80gb", "l4", "t4", "rtx-4090", "mi300x",
            "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "apple-m3-max-gpu", "xeon-8480plus",
            "epyc-9654", "ryzen-7700x", "epyc-genoa-2vcpu")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture
def raw():
    return copy.deepcopy(read_catalog_data())


def test_required_devices_are_present(catalog):
    missing = [k for k in REQUIRED if k not in catalog]
    assert not missing
    kinds = {s.kind for s in catalog.values()}
    assert {"cpu", "gpu", "tpu"} <= kinds


def test_shipped_data_has_no_problems(raw):
    assert catalog_problems(raw) == []


def test_every_figure_has_a_source_or_says_why_not(catalog):
    for spec in catalog.values():
        assert spec.source == "catalog"
        assert {f.name for f in spec.figures} == set(FIGURES)
        for fig in spec.figures:
            assert fig.source == "catalog"
            if fig.value is None:
                assert fig.status in ("unsourced", "n/a"), (spec.key, fig.name)
            else:
                assert fig.status in ("sourced", "derived"), (spec.key, fig.name)
                assert fig.sources and all(len(s) > 10 for s in fig.sources), (spec.key, fig.name)
            if fig.status == "derived":
                assert fig.derivation, (spec.key, fig.name)


def test_efficiencies_are_fractions_with_sources(catalog):
    for spec in catalog.values():
        names = {e.name for e in spec.efficiencies}
        assert {"matmul", "memory", "host_copy", "host_per_op_us", "kernel_floor_us"} <= names
        for eff in spec.efficiencies:
            assert eff.sources and eff.derivation, (spec.key, eff.name)
            if not eff.name.endswith("_us"):
                assert 0 < eff.value <= 1, (spec.key, eff.name)


def _in(value, low, high):
    return value is None or low <= value <= high


def test_units_are_sane(catalog):
    for spec in catalog.values():
        k = spec.key
        assert _in(spec.memory_bw, 50e9, 20e12), k
        assert _in(spec.memory_bytes, 1e9, 1e12), k
        assert _in(spec.tdp_w, 10, 2000), k
        assert _in(spec.price_usd_hr, 0.01, 200), k
        assert _in(spec.host_link_bw, 1e9, 200e9), k
        for precision in ("fp32", "bf16", "fp16", "int8"):
            assert _in(spec.peak(precision), 1e10, 1e16), (k, precision)
        tensor = spec.peak("bf16") or spec.peak("fp16")
        if spec.kind == "gpu" and tensor and spec.peak("fp32"):
            assert tensor >= spec.peak("fp32"), k  # matrix units are never slower than vector
        if spec.peak("int8") and spec.peak("bf16") and "cut" not in spec.figure("int8_tops").note:
            assert spec.peak("int8") >= spec.peak("bf16"), k  # unless a datasheet says INT8 was cut


def test_dense_not_sparse_figures(catalog):
    # NVIDIA's headline H100 SXM BF16 figure (1979) assumes 2:4 sparsity; dense is half.
    assert catalog["h100-sxm"].peak("bf16") == pytest.approx(989e12)
    assert catalog["a100-sxm-80gb"].peak("bf16") == pytest.approx(312e12)
    assert catalog["tpu-v5e"].peak("bf16") == pytest.approx(197e12)
    assert catalog["h100-sxm"].memory_bw == pytest.approx(3.35e12)


def test_unsourced_stays_unsourced(catalog):
    # No source gives a TPU FP32 figure or an MI355X price: the catalog must not invent them.
    assert catalog["tpu-v5e"].figure("fp32_tflops").status == "unsourced"
    assert catalog["mi355x"].figure("price_usd_hr").status == "unsourced"
    assert catalog["t4"].figure("bf16_tflops").status == "n/a"
    local = catalog["epyc-genoa-2vcpu"]
    assert local.figure("memory_bw_gbs").status == "unsourced"
    assert "x 32 FP32 FLOP/cycle" in local.figure("fp32_tflops").derivation


def test_local_cpu_figures_follow_the_derivation(catalog):
    local = catalog["epyc-genoa-2vcpu"]
    assert local.peak("fp32") == pytest.approx(2 * 2.596e9 * 32, rel=0.01)
    assert local.peak("bf16") == pytest.approx(2 * local.peak("fp32"), rel=0.01)


def test_value_without_source_is_a_problem(raw):
    raw["devices"]["t4"]["fp32_tflops"] = {"value": 8.1}
    assert any("needs a source" in p for p in catalog_problems(raw))
    with pytest.raises(InvalidInputError, match="needs a source"):
        parse_catalog(raw)


def test_unknown_source_key_and_missing_figure_are_problems(raw):
    raw["devices"]["t4"]["fp32_tflops"]["src"] = ["nowhere"]
    del raw["devices"]["l4"]["tdp_w"]
    problems = catalog_problems(raw)
    assert any("unknown source key 'nowhere'" in p for p in problems)
    assert any("devices.l4: missing figure tdp_w" in p for p in problems)


def test_ambiguous_or_negative_figures_are_problems(raw):
    raw["devices"]["t4"]["fp32_tflops"] = {"value": 8.1, "unsourced": True, "src": ["epoch"]}
    raw["devices"]["l4"]["tdp_w"] = {"value": -72, "src": ["epoch"]}
    problems = catalog_problems(raw)
    assert any("exactly one of" in p for p in problems)
    assert any("positive finite number" in p for p in problems)


def test_newer_schema_is_refused(raw):
    raw["schema_version"] = 99
    with pytest.raises(SchemaError, match="newer"):
        parse_catalog(raw)


def test_unknown_key_suggests(catalog):
    with pytest.raises(UnknownNameError, match="did you mean 'h100-sxm' or 'h100-pcie'"):
        catalog["h100"]
    with pytest.raises(UnknownNameError, match="did you mean 'tpu-v6e'"):
        catalog["tpu-v6"]


@pytest.mark.parametrize("name, cores, key", [
    ("NVIDIA H100 80GB HBM3", None, "h100-sxm"),
    ("Tesla T4", None, "t4"),
    ("NVIDIA A100-SXM4-80GB", None, "a100-sxm-80gb"),
    ("TPU v5 lite", None, "tpu-v5e"),
    ("AMD EPYC", 2, "epyc-genoa-2vcpu"),
    ("AMD EPYC 9654 96-Core Processor", 96, "epyc-9654"),
])
def test_match_local_device_names(catalog, name, cores, key):
    assert catalog.match(name, cores).key == key


def test_no_match_for_unknown_devices(catalog):
    assert catalog.match("Some Future Accelerator") is None
    assert catalog.match("AMD EPYC", cores=7) is None


def test_every_price_names_its_provider_date_and_unit(catalog):
    import re

    for spec in catalog.values():
        for p in spec.prices:
            assert re.fullmatch(r"[a-z0-9-]+", p.provider), spec.key
            assert re.fullmatch(r"20[0-9]{2}-[0-9]{2}(-[0-9]{2})?", p.date), spec.key
            assert p.sources, (spec.key, p.provider)
            if p.vm_usd_hr is not None:  # a whole VM divided per device, the VM named
                assert p.vm and p.usd_hr == pytest.approx(p.vm_usd_hr / p.devices_per_vm,
                                                          rel=0.01), spec.key
        fig = spec.figure("price_usd_hr")
        if fig.value is None:
            assert spec.not_rented or not spec.prices, spec.key
        else:
            assert fig.status in ("sourced", "derived") and fig.sources, spec.key
    # the anomalies: L4 was the GPU alone (no VM) next to whole VMs; H100 > H200
    assert all(p.vm or p.note for p in catalog["l4"].prices)
    assert not any(p.provider == "gcp" for p in catalog["l4"].prices)
    aws = {k: [p for p in catalog[k].prices if p.provider == "aws"][0].usd_hr
           for k in ("h100-sxm", "h200")}
    assert aws["h100-sxm"] < aws["h200"]
