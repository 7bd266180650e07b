"""An installed chipfit (a wheel, not the source tree) carries every file it reads.

setuptools ships a package's ``.py`` files and only those data files that
``[tool.setuptools.package-data]`` names; a data file left out installs fine and fails at
run time (the GPU kernel models' ``gpu_model.json`` did). Nothing is built here: the globs are
checked against the files in ``src/chipfit`` and against every data path the code opens
through ``importlib.resources``. ``.ci/run`` builds and installs the wheel for real.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "chipfit"


def _package_data() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data["tool"]["setuptools"]["package-data"]["chipfit"])


def _shipped() -> set[Path]:
    return {p for glob in _package_data() for p in PKG.glob(glob) if p.is_file()}


def _data_files() -> set[Path]:
    """Every file in the package that is not Python source or bytecode."""
    return {p for p in PKG.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".py", ".pyc")}


def test_every_data_file_in_the_package_is_shipped():
    missing = sorted(str(p.relative_to(PKG)) for p in _data_files() - _shipped())
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


@pytest.mark.parametrize("glob", _package_data())
def test_every_package_data_glob_names_a_file_that_exists(glob):
    assert any(p.is_file() for p in PKG.glob(glob)), f"{glob} matches nothing in src/chipfit"


def _resource_paths() -> list[tuple[str, str, str]]:
    """(module, package, path glob) of every ``resources.files(PKG).joinpath(PATH)`` in the
    source; f-string fields become ``*``."""
    found = []
    for source in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "joinpath" and isinstance(node.func.value, ast.Call)
                    and getattr(node.func.value.func, "attr", "") == "files" and node.args):
                continue
            package, path = node.func.value.args[0], node.args[0]
            if isinstance(path, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in path.values)
            else:
                text = path.value
            found.append((str(source.relative_to(PKG)), package.value, text))
    return found


def test_the_code_reads_its_data_through_importlib_resources():
    """The files the code is known to open are found by the scan (so the next test checks
    them): the catalog, the GPU figures and the fitted GPU kernel models."""
    read = {p for _, package, path in _resource_paths()
            for p in PKG.parent.joinpath(*package.split(".")).glob(path)}
    assert {PKG / "hardware" / "data" / name for name in
            ("catalog.toml", "gpu_arch.toml", "gpu_model.json")} <= read


@pytest.mark.parametrize(("module", "package", "path"), _resource_paths())
def test_every_file_the_code_reads_is_shipped(module, package, path):
    assert package.startswith("chipfit"), f"{module} reads another package's data"
    folder = PKG.parent.joinpath(*package.split("."))
    targets = [p for p in folder.glob(path) if p.is_file()]
    assert targets, f"{module} reads {package}/{path}, which does not exist"
    missing = [str(p.relative_to(PKG)) for p in targets if p not in _shipped()]
    assert not missing, f"{module} reads {missing}, not in [tool.setuptools.package-data]"


def test_every_folder_of_python_modules_is_a_package():
    """``packages.find`` ships regular packages only: a folder of modules without an
    ``__init__.py`` would be left out of the wheel."""
    folders = {p.parent for p in PKG.rglob("*.py") if "__pycache__" not in p.parts}
    assert not sorted(str(f) for f in folders if not (f / "__init__.py").is_file())


def test_no_data_file_hides_from_the_scan_behind_open_or_path():
    """Data is read through importlib.resources only (what a zipped or installed package
    supports), not by a path built from ``__file__`` to a non-Python file."""
    pattern = re.compile(r"Path\(__file__\)[^\n]*\.(?:toml|json|txt|csv)")
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders
