"""A calibration that misses its own held-out checks is re-measured, then neither stored nor
reused; contention during a calibration is recorded and said (pure: fitted values are built
here, the measuring step is replaced)."""

from __future__ import annotations

import json

import pytest

from chipfit.analysis.calibration import Calibration, roofs_from_calibration
from chipfit.analysis.trust import MAX_CHECK_ERROR
from chipfit.errors import UnreliableError
from chipfit.pipelines import calibrate as cal_module
from chipfit.pipelines.calibrate import calibrate, load_calibration, reusable, save_calibration


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
    with pytest.raises(UnreliableError, match="the stored calibration of torch:cpu misses"):
        reusable(stored)
    assert reusable(None) is None
    assert reusable(_cal(0.1)).check_mape == pytest.approx(0.1)


def test_a_failing_fit_is_measured_again_after_a_back_off(monkeypatch) -> None:
    fits = [_cal(0.9), _cal(0.12)]
    pauses = _watched(monkeypatch, [False] * 4)  # a quiet machine: only the checks decide
    monkeypatch.setattr(cal_module, "_calibrate_once", lambda *a: fits.pop(0))
    cal = calibrate("torch:cpu")
    assert cal.check_mape == pytest.approx(0.12) and fits == []
    assert pauses == [cal_module.CALIBRATION_BACKOFF_S]
    assert cal.contended is False and dict(cal.contention)["cores"] >= 1
    # still failing after the last attempt: the better one comes back, and is refused
    fits[:] = [_cal(0.9), _cal(0.7)]
    worst = calibrate("torch:cpu")
    assert worst.check_mape == pytest.approx(0.7) and len(pauses) == 2
    with pytest.raises(UnreliableError):
        save_calibration(worst)


def test_a_calibration_is_watched_for_contention_on_the_real_machine(monkeypatch) -> None:
    monkeypatch.setattr(cal_module, "_calibrate_once", lambda *a: _cal(0.05))
    monkeypatch.setattr("time.sleep", lambda s: None)
    cal = calibrate("torch:cpu")  # the real watch: whatever the neighbours do, it is recorded
    assert cal.contended in (True, False) and dict(cal.contention)["cores"] >= 1


BUSY = (("cores", 2.0), ("cpus", 2.0), ("load1", 4.8), ("others_s", 0.9),
        ("others_share", 0.45), ("window_s", 1.0))
QUIET = (("cores", 2.0), ("cpus", 2.0), ("load1", 0.3), ("others_s", 0.01),
         ("others_share", 0.01), ("window_s", 1.0))


def test_a_contended_fit_is_not_stored_even_when_its_checks_pass(tmp_path) -> None:
    # the bug report: a calibration measured while contended passed its checks, was kept,
    # and put a 70x30 matmul at 281 us that measures 8.6 us on the quiet machine
    path = save_calibration(_cal(0.08, contended=False, contention=QUIET), tmp_path / "c.json")
    busy = _cal(0.1, contended=True, contention=BUSY,
                contention_note="other processes used 45% of our cores")
    with pytest.raises(UnreliableError, match=r"not stored: the calibration of torch:cpu was "
                       r"measured while the machine was shared \(other processes used 45%"):
        save_calibration(busy, path)
    kept = load_calibration(path=path)  # the previous, quiet one stays
    assert kept.contended is False and kept.contention == QUIET
    assert json.loads(path.read_text())["contention"]["load1"] == 0.3
    # the evidence travels with the record
    back = cal_module._from_dict(json.loads(json.dumps(cal_module._to_dict(busy))), "x")
    assert back.contended is True and back.contention == BUSY
    # an in-memory contended fit still says so where it is used
    notes = roofs_from_calibration(busy).notes
    assert any("calibrated while the machine was shared" in n for n in notes)
    assert not any("shared" in n for n in roofs_from_calibration(_cal(0.1)).notes)


def test_a_stored_contended_fit_is_refused_by_predict_and_reusable(tmp_path, monkeypatch) -> None:
    from chipfit.pipelines.predict import Target, roofs_for

    stored = cal_module._to_dict(_cal(0.05, contended=True, contention=BUSY,
                                      contention_note="other processes used 45% of our cores"))
    path = cal_module.calibration_path("torch:cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored))
    with pytest.raises(UnreliableError, match="the stored calibration of torch:cpu was measured "
                                              "while the machine was shared"):
        reusable(load_calibration("torch:cpu"))
    monkeypatch.setattr(cal_module, "calibrate", lambda *a, **k: pytest.fail("re-measured"))
    with pytest.raises(UnreliableError, match="when the machine is quiet"):
        roofs_for(Target("torch:cpu", True, "cpu", "Test CPU"), "torch")


def test_busy_evidence_cannot_be_called_quiet_by_the_file(tmp_path) -> None:
    # a record whose flag says quiet while its own evidence says others used 45% of our cores
    liar = _cal(0.05, contended=False, contention=BUSY)
    from chipfit.analysis.calibration import contention_of

    assert contention_of(liar) == (True, "other processes used 45% of our cores")
    with pytest.raises(UnreliableError, match="shared"):
        reusable(liar)
    # unknown (a version-1 file, or no readable source) is not evidence against a fit
    assert reusable(_cal(0.05, contended=None)).contended is None
    assert contention_of(_cal(0.05, contended=False, contention=QUIET)) == (False, "")


def _watched(monkeypatch, verdicts: list[bool]) -> list[float]:
    """calibrate() with its measuring replaced: each attempt's contention is the next verdict."""
    from chipfit.timing import contention

    def watch(work, *a, **k):
        busy = verdicts.pop(0)
        numbers = dict(BUSY if busy else QUIET)
        return work(), contention.judge(numbers)

    pauses: list[float] = []
    monkeypatch.setattr(contention, "watch", watch)
    monkeypatch.setattr("time.sleep", pauses.append)
    monkeypatch.setattr(cal_module, "_calibrate_once", lambda *a: _cal(0.05))
    return pauses


def test_a_contended_fit_is_measured_again_after_a_back_off_and_says_so(monkeypatch) -> None:
    verdicts = [True, False]
    pauses = _watched(monkeypatch, verdicts)
    said: list[str] = []
    cal = calibrate("torch:cpu", progress=said.append)
    assert cal.contended is False and verdicts == []
    assert pauses == [cal_module.CALIBRATION_BACKOFF_S]
    assert said == ["attempt 1 refused (the machine was shared: other processes used 45% of our "
                    "cores): measuring again in 2 s"]
    assert save_calibration(cal).exists()


def test_a_fit_contended_on_every_attempt_comes_back_marked_and_is_refused(monkeypatch) -> None:
    verdicts = [True] * cal_module.CALIBRATION_ATTEMPTS
    pauses = _watched(monkeypatch, verdicts)
    cal = calibrate("torch:cpu")
    assert cal.contended is True and len(pauses) == cal_module.CALIBRATION_ATTEMPTS - 1
    with pytest.raises(UnreliableError, match="shared"):
        save_calibration(cal)


def test_a_quiet_attempt_beats_a_contended_one_with_better_checks(monkeypatch) -> None:
    fits = [_cal(0.01), _cal(0.3)]  # contended first with near-perfect checks, then quiet
    verdicts = [True, False]
    _watched(monkeypatch, verdicts)
    monkeypatch.setattr(cal_module, "_calibrate_once", lambda *a: fits.pop(0))
    cal = calibrate("torch:cpu")
    assert cal.contended is False and cal.check_mape == pytest.approx(0.3)


def test_validate_measures_a_stored_contended_calibration_again(monkeypatch) -> None:
    from chipfit.pipelines import validate as val

    path = cal_module.calibration_path("torch:cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal_module._to_dict(_cal(0.05, contended=True, contention=BUSY))))
    fresh = [_cal(0.07, contended=False, contention=QUIET)]
    monkeypatch.setattr(cal_module, "calibrate", lambda *a, **k: fresh.pop(0))
    said: list[str] = []
    roofs, created = val._roofs_for("torch:cpu", None, True, said.append, False)
    assert fresh == [] and roofs.basis == "calibrated"
    assert said[0] == ("the stored calibration of torch:cpu was measured while the machine was "
                       "shared (other processes used 45% of our cores): measuring it again")
    assert load_calibration("torch:cpu").contended is False  # the quiet one replaced it
    # measured again and still contended: validation refuses (it would score the neighbours)
    path.write_text(json.dumps(cal_module._to_dict(_cal(0.05, contended=True, contention=BUSY))))
    monkeypatch.setattr(cal_module, "calibrate",
                        lambda *a, **k: _cal(0.05, contended=True, contention=BUSY))
    with pytest.raises(UnreliableError, match="not stored: .*shared"):
        val._roofs_for("torch:cpu", None, True, said.append, False)


def test_a_cpu_calibration_beyond_this_cpus_theoretical_peak_is_refused(monkeypatch,
                                                                         tmp_path) -> None:
    from chipfit.errors import InvalidInputError
    from chipfit.hardware import cpu

    peak = cpu.Peak(100e9, "estimated", "theoretical: 2 cores x 3000 MHz x 16 FP32 FLOP/cycle")
    monkeypatch.setattr(cpu, "local_theoretical_peak", lambda cores=None: peak)
    ok = save_calibration(_cal(0.05), tmp_path / "ok.json")  # 50 GFLOP/s: possible
    assert load_calibration(path=ok).matmul
    data = cal_module._to_dict(_cal(0.05))
    data["matmul"]["float32"][-1][1] = 450e9  # 4.5x the peak
    (tmp_path / "fast.json").write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=r"matmul 'float32' reaches 450 GFLOP/s, over 4x "
                                                r"this CPU's theoretical peak of 100 GFLOP/s"):
        load_calibration(path=tmp_path / "fast.json")
    data["kind"] = "gpu"  # a GPU's rates are not bounded by this CPU
    (tmp_path / "gpu.json").write_text(json.dumps(data))
    assert load_calibration(path=tmp_path / "gpu.json").kind == "gpu"
    data["kind"] = "cpu"
    data["matmul"] = {"float32": [[1e6, 5e10]], "bfloat16": [[1e6, 450e9]]}  # AMX: not FP32
    (tmp_path / "amx.json").write_text(json.dumps(data))
    assert load_calibration(path=tmp_path / "amx.json").matmul[1][0] == "bfloat16"


@pytest.mark.parametrize(("change", "says"), [
    ({"host_per_op_s": float("nan")}, "host_per_op_s must be a finite number"),
    ({"host_per_op_s": -1e-6}, "host_per_op_s is -1e-06, not a measured value"),
    ({"host_per_view_s": "3us"}, "host_per_view_s must be a number, not str"),
    ({"bandwidth": [[1e3, float("inf")]]}, "bandwidth rate must be a finite number"),
    ({"bandwidth": [[1e3]]}, "bandwidth must be a list of [work, rate] pairs"),
    ({"matmul": {}}, "matmul holds no float32 curve"),
    ({"bandwidth": []}, "bandwidth holds no point"),
    ({"matmul": {"float32": [[1e6, 1e30]]}}, "not a measured value (must be between 0 and 1e+17)"),
    ({"contended": "no"}, "contended must be true, false or null"),
    ({"contention": {"load1": "high"}}, "contention 'load1' must be a number"),
    ({"checks": [["x", float("nan"), 1e-3]]}, "checks predicted_s must be a finite number"),
    ({"points": [{"probe": "matmul", "__class__": 1}]}, "points must be objects"),
    ({"device": "torch:cpu\x1b[8m"}, "device must be a short line of text"),
    ({"memory_bytes": -1}, "memory_bytes is -1"),
    ({"asynchronous": "yes"}, "asynchronous must be true or false"),
])
def test_every_field_of_a_stored_calibration_is_checked_as_it_is_read(tmp_path, change,
                                                                     says) -> None:
    from chipfit.errors import InvalidInputError

    data = {**cal_module._to_dict(_cal(0.05)), **change}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError) as info:
        load_calibration(path=path)
    assert says in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_every_probe_is_timed_in_passes_and_its_blocks_pooled(monkeypatch) -> None:
    """A burst of interference spoils one visit to a probe, not all of them: calibration
    times every probe in CALIBRATION_PASSES passes, each with its share of the budget, and
    fits on the blocks of all passes pooled."""
    from chipfit.pipelines.calibrate import CALIBRATION_PASSES, FAST_QUANTILE, _Run
    from chipfit.spec import TimingConfig
    from chipfit.timing import stats

    assert CALIBRATION_PASSES >= 2
    # a slow first visit (a burst) and a quiet second: the pooled fast quantile is quiet
    visits = iter([[5e-3] * 5, [1e-3] * 5])
    monkeypatch.setattr(cal_module, "_per_call_seconds", lambda *a: next(visits))
    first = _Run(None, lambda x: None, TimingConfig.quick(), lambda s: None)
    assert first.time("matmul", "float32", "48", lambda: None, 1.0) == 5e-3
    second = _Run(None, lambda x: None, TimingConfig.quick(), lambda s: None,
                  earlier=first.samples)
    fast = second.time("matmul", "float32", "48", lambda: None, 1.0)
    pooled = [5e-3] * 5 + [1e-3] * 5
    assert fast == stats.quantile(pooled, FAST_QUANTILE) == 1e-3
    assert second.points[0].median_s == stats.median(pooled)
    assert second.samples == {("matmul", "float32", "48"): [1e-3] * 5}  # this pass's own

    # the whole probe list runs once per pass, in one session, each pass on its budget share
    seen = []

    def one_pass(run, ref, info, dtypes, quick, session):
        seen.append((run.timing.budget_s, dict(run.earlier)))
        run.samples[("dispatch", "float32", "1")] = [len(seen) * 1e-6]
        return _cal(0.0)

    monkeypatch.setattr(cal_module, "_measure_all", one_pass)
    timing = TimingConfig.quick()
    cal_module._calibrate_once("torch:cpu", ("float32",), True, timing, None, None)
    assert len(seen) == CALIBRATION_PASSES
    assert all(b == pytest.approx(timing.budget_s / CALIBRATION_PASSES) for b, _ in seen)
    assert seen[0][1] == {} and seen[1][1] == {("dispatch", "float32", "1"): [1e-6]}
