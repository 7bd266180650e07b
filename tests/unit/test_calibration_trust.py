"""A calibration that misses its own held-out checks is re-measured, then neither stored nor
reused; contention during a calibration is recorded and said (pure: fitted values are built
here, the measuring step is replaced)."""

from __future__ import annotations

import json

import pytest

from chipfit.analysis.calibration import Calibration, roofs_from_calibration
from chipfit.pipelines import calibrate as cal_module
from chipfit.pipelines.calibrate import calibrate, load_calibration, reusable, save_calibration
from chipfit.analysis.trust import MAX_CHECK_ERROR
from chipfit.errors import UnreliableError


def _cal(check_error: float, **extra) -> Calibration:
    checks = tuple((f"case {i}", 1e-3 * (1 + check_error), 1e-3) for i in range(4))
    return Calibration(device="torch:cpu", name="Test CPU", kind="cpu", backend="torch",
                       created_at="2026-01-01T00:00:00+00:00", chipfit_version="0", machine=(),
                       points=(), matmul=(("float32", ((1e6, 1e10), (1e9, 5e10))),), conv=(),
                       bandwidth=((1e3, 1e10), (1e8, 2e10)), checks=checks, **extra)


def test_a_fit_that_misses_its_checks_is_not_stored_and_the_old_file_stays(tmp_path) -> None:
    path = tmp_path / "cal.json"
    good = _cal(0.08)
    save_calibration(good, path)
    bad = _cal(0.937)  # the bug report: its own check error 93.7%
    assert bad.check_mape == pytest.approx(0.937)
    with pytest.raises(UnreliableError, match=r"not stored: .*93\.7% \(limit 40%\).*quiet"):
        save_calibration(bad, path)
    assert load_calibration(path=path).check_mape == pytest.approx(0.08)
    assert save_calibration(_cal(MAX_CHECK_ERROR - 0.01), path).exists()


def test_a_stored_fit_that_misses_its_checks_is_never_reused_silently(tmp_path) -> None:
    path = tmp_path / "old.json"
    data = cal_module._to_dict(_cal(0.937))  # written before chipfit refused such fits
    data["schema_version"] = 1
    for key in ("contended", "contention", "contention_note"):
        data.pop(key)
    path.write_text(json.dumps(data))
    stored = load_calibration(path=path)
    assert stored.contended is None and stored.contention == ()
    with pytest.raises(UnreliableError, match="stored the calibration of torch:cpu misses"):
        reusable(stored)
    assert reusable(None) is None
    assert reusable(_cal(0.1)).check_mape == pytest.approx(0.1)


def test_a_failing_fit_is_measured_again_after_a_back_off(monkeypatch) -> None:
    fits = [_cal(0.9), _cal(0.12)]
    pauses: list[float] = []
    monkeypatch.setattr(cal_module, "_calibrate_once", lambda *a: fits.pop(0))
    monkeypatch.setattr("time.sleep", pauses.append)
    cal = calibrate("torch:cpu")
    assert cal.check_mape == pytest.approx(0.12) and fits == []
    assert pauses == [cal_module.CALIBRATION_BACKOFF_S]
    assert cal.contended in (True, False) and dict(cal.contention)["cores"] >= 1
    # still failing after the last attempt: the better one comes back, and is refused
    fits[:] = [_cal(0.9), _cal(0.7)]
    worst = calibrate("torch:cpu")
    assert worst.check_mape == pytest.approx(0.7) and len(pauses) == 2
    with pytest.raises(UnreliableError):
        save_calibration(worst)


def test_a_contended_fit_that_passes_says_so_and_round_trips(tmp_path) -> None:
    cal = _cal(0.1, contended=True, contention=(("load1", 4.8), ("wait_share", 0.4)),
               contention_note="threads waited for a core 40% of the time")
    path = save_calibration(cal, tmp_path / "c.json")
    back = load_calibration(path=path)
    assert back.contended is True and back.contention == cal.contention
    assert json.loads(path.read_text())["schema_version"] == 2
    notes = roofs_from_calibration(back).notes
    assert any("calibrated while the machine was shared" in n for n in notes)
    assert not any("shared" in n for n in roofs_from_calibration(_cal(0.1)).notes)
