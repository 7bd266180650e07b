"""Energy meters: RAPL arithmetic on a constructed powercap tree; reasons when unavailable."""

from chipfit.hardware.energy import MeterUnavailable, RaplMeter, open_meter


def _domain(root, name, energy, max_range):
    d = root / name
    d.mkdir()
    (d / "energy_uj").write_text(str(energy))
    (d / "max_energy_range_uj").write_text(str(max_range))
    return d


def test_rapl_sums_packages_and_survives_wraparound(tmp_path):
    a = _domain(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    _domain(tmp_path, "intel-rapl:1", 5_000_000, 1_000_000_000)
    _domain(tmp_path, "intel-rapl:0:0", 1, 10)  # a sub-domain (core): not added twice
    meter = open_meter("cpu", root=tmp_path)
    assert isinstance(meter, RaplMeter) and meter.name == "rapl:intel-rapl:0,intel-rapl:1"
    start = meter.read_j()
    (a / "energy_uj").write_text("2_000_000".replace("_", ""))  # wrapped past the range
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("6000000")
    assert meter.read_j() - start == (1_000_001 + 2_000_000 + 1_000_000) / 1e6


def test_missing_powercap_says_why(tmp_path):
    meter = open_meter("cpu", root=tmp_path / "none")
    assert isinstance(meter, MeterUnavailable) and "RAPL" in meter.reason


def test_gpu_meter_without_nvml_says_why():
    meter = open_meter("gpu")
    assert isinstance(meter, MeterUnavailable) and meter.reason


def test_unknown_kind():
    assert isinstance(open_meter("tpu"), MeterUnavailable)
