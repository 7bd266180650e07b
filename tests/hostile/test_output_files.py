"""Writing output files: a full disk mid-write, a failing writer, permissions kept.

The disk is filled for real with RLIMIT_FSIZE (the kernel refuses writes past the limit with
EFBIG, as a full disk refuses them with ENOSPC), in a real ``chipfit report`` process.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hostile._support import assert_refused, no_temp_files

from chipfit.errors import InvalidInputError
from chipfit.paths import open_atomic, write_atomic, write_json_atomic


def _small_disk() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_full_disk_during_report_is_one_line_and_keeps_the_old_file(stored_run, tmp_path):
    old = tmp_path / "report.html"
    old.write_text("the previous report")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200",
           "MPLCONFIGDIR": str(tmp_path / "mpl")}
    # matplotlib's font cache is written first, without the limit (a fresh machine has none)
    warm = subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert warm.returncode == 0, warm.stderr
    proc = subprocess.run([sys.executable, "-m", "chipfit", "report", str(stored_run.json), "-o",
                           str(old)], capture_output=True, text=True, env=env, timeout=240,
                          preexec_fn=_small_disk)
    assert_refused(proc, 2, "cannot write")
    assert old.read_text() == "the previous report"
    assert not no_temp_files(tmp_path)


def test_a_failure_while_writing_leaves_the_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), open_atomic(target) as fh:
        fh.write("half a ")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and not no_temp_files(tmp_path)


def test_replacing_keeps_the_file_mode_and_new_files_follow_the_umask(tmp_path: Path) -> None:
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    write_json_atomic(kept, {"a": 1})
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    old = os.umask(0o022)
    try:
        fresh = write_atomic(tmp_path / "sub" / "fresh.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644 and fresh.read_text() == "x"


@pytest.mark.parametrize("target", ["/dev/null", "/dev/full"])
def test_devices_are_never_replaced(target: str) -> None:
    with pytest.raises(InvalidInputError, match="character device"):
        write_json_atomic(target, {})
    assert stat.S_ISCHR(os.lstat(target).st_mode)


def test_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("keep")
    (tmp_path / "link.json").symlink_to(real)
    with pytest.raises(InvalidInputError, match="symbolic link"):
        write_json_atomic(tmp_path / "link.json", {})
    assert real.read_text() == "keep" and (tmp_path / "link.json").is_symlink()
