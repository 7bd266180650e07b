"""The public surface is explicit, sorted, importable, and cheap to import."""

import subprocess
import sys

import chipfit


def test_all_is_sorted_and_complete():
    assert list(chipfit.__all__) == sorted(chipfit.__all__)
    for name in chipfit.__all__:
        assert hasattr(chipfit, name), name


def test_dir_shows_only_the_public_names():
    names = dir(chipfit)
    assert names == sorted(chipfit.__all__)
    assert "Any" not in names and "annotations" not in names


def test_import_chipfit_imports_no_heavy_framework():
    code = ("import sys, chipfit, chipfit.cli; "
            "print(','.join(m for m in ('torch','jax','ray','matplotlib','transformers', "
            "'tensorflow','keras') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_imports_no_heavy_framework():
    code = ("import sys\nfrom chipfit.cli import build_parser\nbuild_parser()\n"
            "print(','.join(m for m in ('torch','jax','ray','matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_submodule_shadows_an_api_function():
    """``import chipfit.x`` binds ``chipfit.x``: no module may share an API function's name."""
    import importlib
    import pkgutil

    modules = [m.name for m in pkgutil.iter_modules(chipfit.__path__)]
    assert not set(modules) & set(chipfit.__all__)
    for name in modules:
        if name not in ("__main__", "_worker"):
            importlib.import_module(f"chipfit.{name}")
    for name in ("advise", "bench", "discover", "measure"):
        assert callable(getattr(chipfit, name)), name
