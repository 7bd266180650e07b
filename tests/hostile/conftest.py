"""Session fixtures of the hostile tests (see ``_support.py`` for what they build)."""

from __future__ import annotations

import pytest
from tests.hostile._support import Material, StoredRun, build_material, build_stored_run


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("hostile-material")
    return build_material(root / "files", root / "PAYLOAD_RAN")


@pytest.fixture(scope="session")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> StoredRun:
    return build_stored_run(tmp_path_factory.mktemp("hostile-run"))


@pytest.fixture(autouse=True)
def _payload_never_runs(request: pytest.FixtureRequest):
    """After every test that used the material: its payload marker must not exist."""
    yield
    if "material" in request.fixturenames:
        marker = request.getfixturevalue("material").marker
        assert not marker.exists(), "a malicious pickle's payload ran"
