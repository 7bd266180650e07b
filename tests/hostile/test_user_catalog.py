"""Hostile user catalogs (``--catalog FILE``, or catalog.toml in the data directory): garbage,
wrong types, absurd numbers, markup in names, thousands of devices. Each is one line on
stderr and exit 2, never a traceback; the shipped catalog is never changed by one."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.hostile._support import assert_refused

from chipfit.errors import InvalidInputError

GOOD_DEVICE = ('[devices.x1]\nname = "X1"\nvendor = "V"\nkind = "gpu"\n'
               'bf16_tflops = { value = 100.0 }\nmemory_gb = { value = 16.0 }\n'
               'memory_bw_gbs = { value = 500.0 }\n')

CASES = {
    "garbage bytes": b"\x00\xff\xfe garbage \x80\x81",
    "not toml": b"this is = = not toml [[[",
    "no schema": GOOD_DEVICE.encode(),
    "newer schema": b"schema_version = 99\n",
    "schema as text": b'schema_version = "two"\n',
    "price as text": (b'schema_version = 2\n[devices.h100-sxm]\n'
                      b'prices = [ { provider = "a", usd_hr = "cheap", date = "2026-01" } ]\n'),
    "huge price": (b'schema_version = 2\n[devices.h100-sxm]\n'
                   b'prices = [ { provider = "a", usd_hr = 1e300, date = "2026-01" } ]\n'),
    "huge int figure": (b'schema_version = 2\n' + GOOD_DEVICE.replace(
        "100.0", "1" + "0" * 40).encode()),
    "negative figure": b'schema_version = 2\n' + GOOD_DEVICE.replace("16.0", "-16.0").encode(),
    "nan figure": b'schema_version = 2\n' + GOOD_DEVICE.replace("500.0", "nan").encode(),
    "inf price": (b'schema_version = 2\n[devices.h100-sxm]\n'
                  b'prices = [ { provider = "a", usd_hr = inf, date = "2026-01" } ]\n'),
    "markup name": b'schema_version = 2\n' + GOOD_DEVICE.replace(
        '"X1"', '"[bold red]X1[/] <script>alert(1)</script>"').encode(),
    "escape in vendor": b'schema_version = 2\n' + GOOD_DEVICE.replace(
        '"V"', '"\\u001b[2J"').encode(),
    "bad key": b'schema_version = 2\n[devices."../../etc"]\nname = "x"\n',
    "devices not a table": b'schema_version = 2\ndevices = 3\n',
    "wrong top level": b'schema_version = 2\n[efficiency]\nmatmul = 1\n',
    "bool figure": b'schema_version = 2\n' + GOOD_DEVICE.replace("16.0", "true").encode(),
    "future-less date": (b'schema_version = 2\n[devices.h100-sxm]\n'
                         b'prices = [ { provider = "a", usd_hr = 1.0, date = "1999-01" } ]\n'),
    "amortisation out of range": (b'schema_version = 2\n[amortisation]\n'
                                  b'utilisation = { value = 5.0 }\n'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_user_catalog_is_one_line_exit_2(cli, tmp_path, name):
    path = tmp_path / "mine.toml"
    path.write_bytes(CASES[name])
    proc = cli("catalog", "--catalog", str(path))
    assert_refused(proc, 2)
    assert "<script>" not in proc.stderr and "\x1b" not in proc.stderr


def test_thousands_of_devices_are_refused_in_one_line(cli, tmp_path):
    path = tmp_path / "many.toml"
    path.write_text("schema_version = 2\n" + "".join(
        GOOD_DEVICE.replace("x1]", f"d{i}]") for i in range(1200)))
    assert_refused(cli("catalog", "--catalog", str(path)), 2, "more than 1000")


def test_not_a_regular_file_and_missing_file(cli, tmp_path):
    assert_refused(cli("catalog", "--catalog", str(tmp_path)), 2)
    assert_refused(cli("catalog", "--catalog", str(tmp_path / "absent.toml")), 2)
    if os.path.exists("/dev/zero"):
        assert_refused(cli("catalog", "--catalog", "/dev/zero"), 2)


def test_bad_flags_are_one_line(cli):
    assert_refused(cli("catalog", "--price-basis", "<b>free</b>"), 2, "price basis")
    assert_refused(cli("catalog", "--check", "--stale-days", "0"), 2, "stale-days")
    assert_refused(cli("catalog", "--stale-days", "30"), 2, "goes with --check")
    assert_refused(cli("advise", "resnet50", "--no-measure", "--price-basis", "x" * 500), 2)


def test_a_broken_catalog_in_the_data_dir_is_one_line(cli, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.toml").write_text("schema_version = 2\n[devices.h100-sxm]\nprices = 3\n")
    proc = cli("catalog", env={"CHIPFIT_HOME": str(home)})
    assert_refused(proc, 2, "catalog.toml")


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=TEXT, provider=TEXT, value=st.one_of(st.floats(allow_nan=True), st.integers(-10, 10**20)))
def test_any_names_and_numbers_load_or_refuse_cleanly(tmp_path, name, provider, value):
    from chipfit.hardware.catalog import load_catalog

    def toml_str(s: str) -> str:
        return '"' + s.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'

    number = repr(value) if not isinstance(value, float) or value == value else "nan"
    number = {"inf": "inf", "-inf": "-inf"}.get(number, number)
    path = tmp_path / "p.toml"
    path.write_text(f"schema_version = 2\n[devices.x1]\nname = {toml_str(name)}\nvendor = \"V\"\n"
                    f"kind = \"gpu\"\nbf16_tflops = {{ value = {number} }}\n"
                    f"prices = [ {{ provider = {toml_str(provider)}, usd_hr = 1.0, "
                    f"date = \"2026-01\" }} ]\n")
    try:
        cat = load_catalog(user=path)
    except InvalidInputError as exc:
        assert "\n" not in str(exc)
        return
    spec = cat["x1"]  # accepted: what was accepted is plain, bounded and finite
    assert spec.name == name and len(name) <= 120
    assert spec.peak("bf16") is not None and 0 < spec.peak("bf16") < float("inf")
