"""Prices on one basis (median / cheapest / provider), bought devices amortised, the check,
user catalogs that add devices and override prices, and gaps that note a row instead of
stopping a command."""

from __future__ import annotations

import datetime as dt
import statistics

import pytest

from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.hardware.catalog import (
    MissingFigure,
    check_catalog,
    configure,
    load_catalog,
    price,
    require,
)

USER = """
schema_version = 2

[sources]
my-contract = "our 2026 reserved contract with ACME Cloud (internal)"

[devices.h100-sxm]
prices = [
  { provider = "acme", usd_hr = 1.25, date = "2026-11-01", src = ["my-contract"], note = "ours" },
]

[devices.my-npu]
name = "ACME NPU 1"
vendor = "ACME"
kind = "npu"
bf16_tflops = { value = 400.0, src = ["my-contract"] }
memory_gb = { value = 64.0 }
memory_bw_gbs = { value = 2000.0 }
prices = [ { provider = "acme", usd_hr = 0.9, date = "2026-11" } ]
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text(USER)
    return path


@pytest.fixture(autouse=True)
def _default_config():
    configure(None, None)
    yield
    configure(None, None)


def test_median_cheapest_and_provider_bases():
    cat = load_catalog()
    points = sorted(p.usd_hr for p in cat["h100-sxm"].prices)
    assert len(points) == 4  # aws, lambda, runpod, hyperstack: an even count, two middles
    assert price("h100-sxm").usd_hr == pytest.approx(statistics.median(points))
    cheap = price("h100-sxm", "cheapest")
    assert cheap.usd_hr == points[0] and cheap.provider == "hyperstack"
    aws = price("h100-sxm", "aws")
    assert aws.provider == "aws" and aws.date and "p5.48xlarge" in aws.note
    assert price("tpu-v5e", "aws") is None  # a provider that does not rent it: no price
    assert load_catalog(basis="cheapest")["h100-sxm"].price_usd_hr == cheap.usd_hr
    with pytest.raises(UnknownNameError, match="price basis"):
        price("h100-sxm", "nowhere-cloud")


SPOT_ONLY = """
schema_version = 2

[devices.b300]
prices = [ { provider = "spheron", usd_hr = 2.97, date = "2026-12", term = "spot" } ]
"""


def test_spot_is_used_only_without_on_demand_and_says_so(tmp_path):
    cat = load_catalog()
    # the B300 now has on-demand prices (hyperstack, akash): its spot price is not chosen
    assert cat.price("b300").provider == "median of hyperstack, akash"
    assert cat.price("b300").usd_hr == pytest.approx(statistics.median([7.4, 6.0]))
    assert cat.price("b300", "spheron").provider == "spheron (spot)"
    assert "spot" not in cat.price("mi300x").provider  # on-demand prices exist: spot unused
    assert cat.price("mi300x", "crusoe").provider == "crusoe (spot)"
    user = tmp_path / "spot.toml"  # a device with a spot price only uses it, labelled
    user.write_text(SPOT_ONLY)
    only = load_catalog(user=user).price("b300")
    assert only.provider == "spheron (spot)" and "interruptible" in only.note


def test_a_bought_device_is_amortised_under_stated_assumptions():
    spec = load_catalog()["rtx-3090-ti"]
    chosen = spec.price()
    years, use, kwh = 3.0, 0.5, 0.17
    expect = 1999 / (years * 8766 * use) + 450 / 1000 * kwh
    assert chosen.basis == "purchase" and chosen.usd_hr == pytest.approx(expect)
    assert "3 years" in chosen.note and "50%" in chosen.note
    assert spec.figure("price_usd_hr").status == "derived"


def test_renamed_key_still_answers_and_is_per_die():
    cat = load_catalog()
    assert cat["mi250x"].key == "mi250x-gcd" and "mi250x" in cat
    assert cat["mi250x"].memory_bytes == pytest.approx(64e9)  # one GCD, not the package
    assert cat["mi250"].key == "mi250-gcd"
    from chipfit.hardware.gpu_arch import gpu_figures

    assert {"mi250x-gcd", "mi250-gcd"} <= set(gpu_figures())  # kernel-model rows follow


def test_gaps_are_explicit_and_require_says_which():
    cat = load_catalog()
    assert cat["epyc-9654"].figure("interconnect_gbs").status == "n/a"
    assert cat["t4"].figure("fp4_tflops").status == "n/a"
    with pytest.raises(MissingFigure, match="tdp_w is not in the catalog"):
        require("tpu-v5e", "tdp_w")
    assert require("tpu-v7", "memory_bw_gbs") == pytest.approx(7.38e12)


def test_shipped_catalog_passes_its_check_and_lists_stale_prices():
    items = check_catalog(load_catalog(), today=dt.date(2026, 12, 7), arch_keys=set())
    assert [i for i in items if i.severity == "error"] == []
    stale = [i for i in items if "days ago" in i.what]
    assert stale and all(i.severity == "warning" for i in stale)
    assert any(i.key == "b200" and "roofline" in i.what for i in items)


def test_user_catalog_overrides_a_price_and_adds_a_device(user_file):
    cat = load_catalog(user=user_file)
    h100 = cat["h100-sxm"]
    assert [p.provider for p in h100.prices] == ["acme"]  # a user's prices replace
    assert h100.price_usd_hr == 1.25 and h100.prices[0].origin == str(user_file)
    npu = cat["my-npu"]
    assert npu.origin == str(user_file) and npu.peak("bf16") == 400e12
    assert npu.figure("memory_gb").sources == (f"user catalog {user_file}",)
    assert npu.figure("tdp_w").status == "unsourced"  # not given: a gap, said so
    assert load_catalog()["h100-sxm"].price_usd_hr != 1.25  # the shipped one is untouched


def test_a_user_device_without_a_core_figure_fails_the_check(tmp_path):
    path = tmp_path / "gap.toml"
    path.write_text('schema_version = 2\n[devices.half]\nname = "Half"\nvendor = "X"\n'
                    'kind = "gpu"\nmemory_gb = { value = 8.0 }\n')
    items = check_catalog(load_catalog(user=path))
    assert [i.key for i in items if i.severity == "error"] == ["half"] * 2
    assert load_catalog(user=path)["half"].missing() == [
        "fp32_tflops|bf16_tflops|fp16_tflops", "memory_bw_gbs"]


def test_configure_sets_what_every_layer_loads(user_file):
    configure(user_file, "cheapest")
    assert load_catalog()["h100-sxm"].price_usd_hr == 1.25
    assert load_catalog().basis == "cheapest"
    configure(None, None)
    assert "my-npu" not in load_catalog()


@pytest.mark.parametrize("bad, says", [
    ('[devices.h100-sxm]\nprices = [ { provider = "x", usd_hr = 1.0 } ]', "date must be"),
    ('[devices.h100-sxm]\nprices = [ { provider = "X Y", usd_hr = 1, date = "2026-01" } ]',
     "provider"),
    ('[devices.h100-sxm]\nprices = [ { provider = "x", usd_hr = 1, date = "2026-13" } ]',
     "date must be"),
    ('[devices.h100-sxm]\nprices = [ { provider = "x", usd_hr = 2.0, date = "2026-01", '
     'vm_usd_hr = 8.0, devices_per_vm = 8 } ]', "is not vm_usd_hr / devices_per_vm"),
    ('[devices.h100-sxm]\nkind = "cpu"', "cannot change"),
    ('[devices.new]\nname = "N"\nvendor = "V"\nkind = "fpga"', "kind must be"),
])
def test_user_catalog_mistakes_name_the_field(tmp_path, bad, says):
    path = tmp_path / "bad.toml"
    path.write_text("schema_version = 2\n" + bad + "\n")
    with pytest.raises(InvalidInputError, match=says):
        load_catalog(user=path)


def test_local_price_names_the_cpu_it_read_and_calls_a_stand_in_a_stand_in():
    from chipfit.hardware.local import local_price

    est = local_price(2, None, "Intel(R) Xeon(R) Processor")
    assert "Intel(R) Xeon(R) Processor" in est.basis and "stand-in" in est.basis
    assert "Graviton3" in est.basis  # what the rate really is
    assert local_price(2, 0.5, "anything").basis == "given (--local-price)"
    assert local_price(None, None, "x") is None
