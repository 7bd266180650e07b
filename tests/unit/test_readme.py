"""README's promises that can drift: its install commands (which .ci/run executes) and counts."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _first_bash_block() -> list[str]:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_first_block_is_install_then_test_and_ci_runs_it():
    install, test = _first_bash_block()
    # the venv exists before anything is installed into it, and CPU torch before chipfit
    assert install.index("python3 -m venv .venv") < install.index("pip install")
    assert install.index('"torch==') < install.index('pip install -e ".[all,test]"')
    assert "+cpu" in install and "/whl/cpu" in install
    assert test.endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "README.md" in ci and "pip install" not in ci  # it runs README's lines, nothing else


def test_readme_counts_no_catalog_devices_that_are_not_there():
    from chipfit.hardware.catalog import load_catalog

    for claim in re.findall(r"catalog[^|\n]*?(\d+) devices", README):
        assert int(claim) == len(load_catalog())
