"""A local CPU's peak is never below what was measured on it: FLOPs per cycle read from
/proc/cpuinfo's flags (never assumed), the highest clock cpufreq or /proc/cpuinfo shows, and
the best measured rate where it is higher still (pure parts with other machines' readings)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.hardware import cpu
from chipfit.hardware.cpu import (
    Clock,
    Peak,
    best_peak,
    fp32_flops_per_cycle,
    max_clock,
    parse_cpuinfo,
    theoretical_peak,
)

# The chipfit development VM (the bug report's machine): Zen 4 with AVX-512, 2596 MHz TSC.
ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.134\nflags\t\t: fpu sse sse2 avx fma avx2 "
        "avx512f avx512_bf16\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
        "cpu MHz\t\t: 2596.134\nflags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512_bf16\n")
SKYLAKE_SP = ("vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 2100.000\n"
              "flags\t\t: sse sse2 avx fma avx2 avx512f\n")
HASWELL = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: sse sse2 avx fma avx2\n"
SANDY_BRIDGE = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: sse sse2 avx\n"
OLD_X86 = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: fpu sse sse2\n"
NEOVERSE = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32\n"
            "CPU implementer\t: 0x41\n")
ZEN5 = ("vendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: sse sse2 avx fma avx2 "
        "avx512f\n")


@pytest.mark.parametrize(("text", "arch", "flops", "words"), [
    (ZEN4, "x86_64", 32, "avx512f run as 2x256-bit on AMD family 0x19"),
    (ZEN5, "x86_64", 64, "16 FP32 lanes (avx512f)"),
    (SKYLAKE_SP, "x86_64", 64, "16 FP32 lanes (avx512f)"),
    (HASWELL, "x86_64", 32, "8 FP32 lanes (avx) x 2 (FMA)"),
    (SANDY_BRIDGE, "x86_64", 16, "x 1 (add or multiply)"),
    (OLD_X86, "x86_64", 8, "4 FP32 lanes (sse)"),
    (NEOVERSE, "aarch64", 16, "4 FP32 lanes (neon) x 2 (FMA)"),
])
def test_flops_per_cycle_come_from_the_flags_read(text, arch, flops, words) -> None:
    per_cycle, how = fp32_flops_per_cycle(parse_cpuinfo(text, arch))
    assert per_cycle == flops and words in how


def test_no_known_vector_unit_gives_no_theoretical_peak() -> None:
    info = parse_cpuinfo("processor\t: 0\nisa\t\t: rv64imafdc\n", "riscv64")
    assert fp32_flops_per_cycle(info) is None
    assert theoretical_peak(4, Clock(2e9, "2000 MHz"), info) is None
    assert theoretical_peak(0, Clock(2e9, "x"), parse_cpuinfo(HASWELL, "x86_64")) is None
    assert theoretical_peak(4, None, parse_cpuinfo(HASWELL, "x86_64")) is None


def test_cpuinfo_parsing_keeps_every_clock_reading_and_skips_garbage() -> None:
    info = parse_cpuinfo(ZEN4 + "cpu MHz\t\t: fast\ncpu MHz\t\t: nan\ncpu MHz\t\t: 3700.5\n",
                         "x86_64")
    assert info.vendor == "AuthenticAMD" and info.family == 25
    assert info.mhz == (2596.134, 2596.134, 3700.5) and "avx512f" in info.flags
    assert parse_cpuinfo("", "x86_64").mhz == () and parse_cpuinfo("cpu family: x\n").family is None


def _sysfs(root, cpu_id: int, **files: str) -> None:
    folder = root / f"cpu{cpu_id}" / "cpufreq"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_the_highest_clock_is_read_from_cpufreq_and_cpuinfo(tmp_path) -> None:
    zen4 = parse_cpuinfo(ZEN4, "x86_64")
    # a VM: no cpufreq, only the nominal clock /proc/cpuinfo reports
    clock = max_clock([0, 1], root=str(tmp_path), cpuinfo=zen4)
    assert clock.hz == pytest.approx(2596.134e6) and '"cpu MHz"' in clock.basis
    # bare metal: the boost clock cpufreq knows beats it; garbage and zero files are skipped
    _sysfs(tmp_path, 0, cpuinfo_max_freq="3700000\n", scaling_max_freq="3500000\n")
    _sysfs(tmp_path, 1, cpuinfo_max_freq="garbage\n", scaling_max_freq="0\n")
    clock = max_clock([0, 1], root=str(tmp_path), cpuinfo=zen4)
    assert clock.hz == 3.7e9 and clock.basis == "3700 MHz from cpufreq cpuinfo_max_freq"
    assert max_clock([5], root=str(tmp_path), cpuinfo=parse_cpuinfo(HASWELL)) is None


def test_the_bug_reports_peak_and_the_measured_rate_above_it() -> None:
    zen4 = parse_cpuinfo(ZEN4, "x86_64")
    stated = theoretical_peak(2, max_clock([], root="/nonexistent", cpuinfo=zen4), zen4)
    assert stated.flops == pytest.approx(166.15e9, rel=1e-3) and stated.source == "estimated"
    assert "2 cores x 2596 MHz" in stated.basis and "32 FP32 FLOP/cycle" in stated.basis
    # JAX measured 181 GFLOP/s there: the peak is the measured rate, and says why
    peak = best_peak([stated], 181e9)
    assert peak.flops == 181e9 and peak.source == "measured"
    assert "above the estimated peak of 166 GFLOP/s" in peak.basis
    assert "ran faster" in peak.basis
    # below the stated peak, the stated peak stands
    assert best_peak([stated], 120e9) == stated
    # the highest stated peak wins: the same cores at a 3.7 GHz boost clock
    boost = theoretical_peak(2, Clock(3.7e9, "3700 MHz from cpufreq"), zen4)
    catalog = Peak(166e9, "catalog", "epyc-genoa-2vcpu")
    assert best_peak([catalog, boost, None], 181e9) == boost
    assert best_peak([], None) is None
    assert best_peak([], 5e10).source == "measured"
    assert best_peak([catalog], math.nan) == catalog


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.floats(1e6, 1e16), max_size=3), st.one_of(st.none(), st.floats(1e6, 1e17)))
def test_measured_never_exceeds_the_peak(stated: list[float], measured: float | None) -> None:
    peak = best_peak([Peak(f, "catalog", "x") for f in stated], measured)
    if measured is not None:
        assert peak.flops >= measured
    if stated:
        assert peak.flops >= max(stated)


def test_the_report_roof_of_a_cpu_is_never_below_its_measured_rate(monkeypatch) -> None:
    from chipfit.report.html import catalog_ceilings
    from chipfit.results import DeviceInfo, Discovery, Measurement, Run

    device = DeviceInfo("jax:cpu:0", "jax", "cpu", "cpu", "AMD EPYC", cores=2, threads=2)
    # 2e9 FLOPs in 11 ms: 181 GFLOP/s, above the catalog's 166 (it assumes the 2596 MHz clock)
    fast = Measurement("matmul", "1000", "jax:cpu:0", block_times_s=(0.011,) * 5, flops=1.99e9)
    run = Run("r", "bench", "2026-01-01", machine=(("fingerprint", "elsewhere"),),
              discovery=Discovery((device,)), measurements=(fast,))
    roof = catalog_ceilings([run])["jax:cpu:0"]
    assert roof.flops == pytest.approx(fast.flops / fast.median_s) and roof.source == "measured"
    assert "catalog peak of 166 GFLOP/s" in roof.note
    from chipfit.hardware.catalog import load_catalog

    bandwidth = load_catalog()["epyc-genoa-2vcpu"].memory_bw  # the catalog's, as before
    assert roof.bandwidth == bandwidth
    assert roof.bandwidth_source == ("catalog" if bandwidth else "")
    # a run made on this machine: its theoretical peak at the highest clock joins in
    here = dict(cpu.machine_fingerprint())["fingerprint"]
    monkeypatch.setattr(cpu, "local_theoretical_peak",
                        lambda cores=None: Peak(236.8e9, "estimated", "theoretical: boost"))
    local = catalog_ceilings([Run("r", "bench", "2026-01-01", machine=(("fingerprint", here),),
                                  discovery=Discovery((device,)), measurements=(fast,))])
    assert local["jax:cpu:0"].flops == 236.8e9 and local["jax:cpu:0"].source == "estimated"
    # slower points: the catalog's peak stands, as before
    slow = Measurement("matmul", "1000", "jax:cpu:0", block_times_s=(0.02,) * 5, flops=1.99e9)
    plain = catalog_ceilings([Run("r", "bench", "2026-01-01", machine=(("fingerprint", "x"),),
                                  discovery=Discovery((device,)), measurements=(slow,))])
    assert plain["jax:cpu:0"].source == "catalog" and plain["jax:cpu:0"].flops == 166e9


def test_int8_products_saturate_only_on_x86_without_vnni_or_amx():
    from chipfit.hardware.cpu import INT8_DOT_FEATURES, int8_saturates

    assert int8_saturates("x86_64", ("avx2", "fma"))
    assert int8_saturates("AMD64", ())
    for feature in INT8_DOT_FEATURES:
        assert not int8_saturates("x86_64", ("avx2", feature))
    assert not int8_saturates("aarch64", ("neon",))
    assert not int8_saturates("arm64", ())
