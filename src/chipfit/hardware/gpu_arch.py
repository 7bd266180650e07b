"""GPU architectural figures (``data/gpu_arch.toml``) for the per-kernel GPU models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chipfit.errors import SchemaError

__all__ = ["GPU_ARCH_SCHEMA_VERSION", "gpu_figures", "study_names"]

GPU_ARCH_SCHEMA_VERSION = 1


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    from importlib import resources

    from chipfit.hardware.catalog import _toml

    text = resources.files("chipfit.hardware").joinpath("data/gpu_arch.toml").read_text("utf-8")
    data = _toml().loads(text)
    if data.get("schema_version", 0) > GPU_ARCH_SCHEMA_VERSION:
        raise SchemaError("gpu_arch.toml is newer than this chipfit; upgrade chipfit")
    return data


@lru_cache(maxsize=1)
def gpu_figures() -> dict[str, Any]:
    """Catalog key -> :class:`~chipfit.analysis.gpu_kernels.GpuFigures` (datasheet figures)."""
    from chipfit.analysis.gpu_kernels import GpuFigures

    return {key: GpuFigures.from_mapping(key, raw) for key, raw in _data()["gpus"].items()}


def study_names() -> dict[str, str]:
    """The NeuSight study's device names -> catalog keys (for its kernel data)."""
    return {raw["study_name"]: key for key, raw in _data()["gpus"].items() if "study_name" in raw}


def figure_sources(key: str) -> dict[str, str]:
    """Figure name -> its source keys and note, for display."""
    raw = _data()["gpus"][key]
    out = {}
    for name, value in raw.items():
        if isinstance(value, dict) and "src" in value:
            note = f" ({value['note']})" if value.get("note") else ""
            out[name] = ", ".join(value["src"]) + note
    return out
