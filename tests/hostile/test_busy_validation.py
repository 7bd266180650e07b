"""Crafted calibration files and busy evidence, through the CLI: a stored calibration is
checked field by field as it is read (one line naming the file and the field, exit 2, nothing
predicted), and one measured while the machine was shared is refused (exit 1, what to do)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from tests.hostile._support import assert_refused

from chipfit.analysis.calibration import Calibration

pytest.importorskip("torch")

DEVICE = "torch:cpu@1t"
BUSY = {"cores": 2.0, "cpus": 2.0, "load1": 293.0, "others_s": 0.9, "others_share": 0.45,
        "window_s": 1.0}


def _good() -> dict:
    from chipfit.pipelines.calibrate import _to_dict

    cal = Calibration(
        device=DEVICE, name="Test CPU", kind="cpu", backend="torch",
        created_at="2026-01-01T00:00:00+00:00", chipfit_version="0", machine=(("cpu", "x"),),
        points=(), matmul=(("float32", ((1e6, 1e9), (1e9, 5e9))),), conv=(),
        bandwidth=((1e3, 1e9), (1e8, 2e9)), host_per_op_s=5e-6,
        checks=tuple((f"case {i}", 1.05e-3, 1e-3) for i in range(4)), contended=False,
        contention=(("cores", 2.0), ("cpus", 2.0), ("load1", 0.2)))
    return json.loads(json.dumps(_to_dict(cal)))


def _crafted(change) -> str:  # noqa: ANN001
    data = _good()
    change(data)
    return json.dumps(data, allow_nan=True)


def _set(path: str, value) -> object:  # noqa: ANN001
    """A change setting ``path`` (keys and list indexes, dot-separated) to ``value``."""
    def change(data: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in parents:
            data = data[p]
        data[last] = value
    return change


def _drop(key: str) -> object:
    return lambda data: data.pop(key)


# (id, change to a good file, the words the one line must hold)
MALFORMED = [
    ("nan-rate", _set("matmul.float32.0.1", math.nan), "must be a finite number, not nan"),
    ("infinite-rate", _set("matmul.float32.1.1", math.inf), "must be a finite number, not inf"),
    ("impossible-rate", _set("matmul.float32.1.1", 1e30), "not a measured value"),
    ("400-digit-rate", _set("matmul.float32.1.1", 10**400), "matmul.float32[1][1] is a 401-digit number"),
    ("400-digit-overhead", _set("host_per_op_s", -(10**400)), "host_per_op_s is a 401-digit number"),
    ("negative-bandwidth", _set("bandwidth.0.1", -5.0), "bandwidth rate is -5"),
    ("zero-bandwidth", _set("bandwidth.1.1", 0), "bandwidth rate is 0"),
    ("no-bandwidth-point", _set("bandwidth", []), "bandwidth holds no point"),
    ("nan-overhead", _set("host_per_op_s", math.nan), "host_per_op_s must be a finite number"),
    ("negative-overhead", _set("host_per_op_s", -1e-6), "host_per_op_s is -1e-06"),
    ("hour-long-overhead", _set("host_per_module_s", 3600.0), "host_per_module_s is 3600"),
    ("string-overhead", _set("host_per_view_s", "3us"), "must be a number, not str"),
    ("bool-overhead", _set("host_per_call_s", True), "must be a number, not bool"),
    ("no-matmul", _drop("matmul"), "matmul is missing"),
    ("matmul-string", _set("matmul", "fast"), "matmul must be an object"),
    ("matmul-no-float32", _set("matmul", {"bfloat16": [[1e6, 1e9]]}), "no float32 curve"),
    ("curve-not-pairs", _set("matmul.float32", [[1e6]]), "list of [work, rate] pairs"),
    ("curve-not-a-list", _set("conv", {"float32": 7}), "list of [work, rate] pairs"),
    ("contended-string", _set("contended", "no"), "contended must be true, false or null"),
    ("evidence-string", _set("contention.load1", "high"), "contention 'load1' must be a number"),
    ("evidence-nan", _set("contention.load1", math.nan), "contention 'load1' must be a finite"),
    ("checks-nan", _set("checks", [["x", math.nan, 1e-3]]), "checks predicted_s must be a finite"),
    ("checks-shape", _set("checks", [[1, 2]]), "checks must be a list of [case"),
    ("point-extra-field", _set("points", [{"probe": "matmul", "dtype": "float32", "size": "1",
                                           "work": 1.0, "seconds": 1e-3, "__reduce__": 1}]),
     "points must be objects with the fields"),
    ("point-nan", _set("points", [{"probe": "m", "dtype": "float32", "size": "1",
                                   "work": math.nan, "seconds": 1e-3}]), "points work must be"),
    ("escape-in-name", _set("name", "cpu\x1b[8mhidden"), "name must be a short line of text"),
    ("another-devices-file", _set("device", "torch:cuda:0"), "this file is torch:cpu@1t's place"),
    ("no-device", _drop("device"), "device is missing"),
    ("negative-memory", _set("memory_bytes", -1), "memory_bytes is -1"),
    ("async-string", _set("asynchronous", "yes"), "asynchronous must be true or false"),
    ("machine-not-text", _set("machine", {"cpu": 3}), "machine must map names to text"),
]


def _write(home: Path, text: str) -> Path:
    from chipfit.pipelines.calibrate import calibration_path

    path = calibration_path(DEVICE)
    assert str(path).startswith(str(home))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def home() -> Path:
    return Path(os.environ["CHIPFIT_HOME"])


COMMANDS = {
    "predict": ("predict", "matmul", "--hardware", DEVICE, "--batch", "64", "--no-measure"),
    "calibrate-show": ("calibrate", "--devices", DEVICE, "--show"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("change", "says"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_a_crafted_calibration_is_one_line_naming_the_file_and_field(cli, home, command, change,
                                                                    says) -> None:
    path = _write(home, _crafted(change))
    proc = cli(*COMMANDS[command])
    assert_refused(proc, 2, says)
    assert str(path) in proc.stderr and proc.stdout == ""


def test_a_rate_beyond_this_cpus_theoretical_peak_is_refused(cli, home) -> None:
    from chipfit.hardware.cpu import local_theoretical_peak

    peak = local_theoretical_peak(os.cpu_count() or 1)
    if peak is None:
        pytest.skip("no theoretical peak for this CPU's flags: nothing to be beyond")
    # under the bound no device reaches, far over what this CPU's cores can issue
    _write(home, _crafted(_set("matmul.float32.1.1", 5 * peak.flops)))
    proc = cli(*COMMANDS["predict"])
    assert_refused(proc, 2, "this CPU's theoretical peak")


def test_the_good_file_itself_is_accepted(cli, home) -> None:
    _write(home, json.dumps(_good()))
    proc = cli(*COMMANDS["predict"], "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["prediction"]["basis"] == "calibrated"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("change", "says"), [
    (_set("contended", True), "was measured while the machine was shared"),
    # a file whose own evidence says others used 45% of our cores cannot call itself quiet
    (_set("contention", BUSY), "other processes used 45% of our cores"),
], ids=["contended", "busy-evidence-called-quiet"])
def test_a_contended_calibration_is_refused_by_predict(cli, home, command, change, says) -> None:
    _write(home, _crafted(change))
    proc = cli(*COMMANDS[command])
    if command == "calibrate-show":  # showing what is stored is no use of it
        assert proc.returncode == 0, proc.stderr
        return
    assert_refused(proc, 1, says)
    assert "when the machine is quiet" in proc.stderr


@pytest.mark.parametrize(("change", "says"), [m[1:] for m in MALFORMED[:3]],
                         ids=[m[0] for m in MALFORMED[:3]])
def test_validate_refuses_a_crafted_calibration_before_measuring(cli, home, change,
                                                                 says) -> None:
    _write(home, _crafted(change))
    proc = cli("validate", "--devices", DEVICE, "--workloads", "matmul", "--sizes", "16",
               "--no-references", "--quick")
    assert_refused(proc, 2, says)
    assert not (home / "validation" / "latest.json").exists()
