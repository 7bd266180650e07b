"""GPU architectural figures (``data/gpu_arch.toml``) for the per-kernel GPU models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from chipfit.errors import SchemaError

__all__ = ["GPU_ARCH_SCHEMA_VERSION", "GpuFigures", "gpu_figures", "study_names"]

GPU_ARCH_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GpuFigures:
    """A GPU's architectural figures (datasheet values; see ``hardware/data/gpu_arch.toml``).

    ``lanes_per_sm`` are FP32 lanes per SM (CUDA cores per SM; 64 per CU on AMD, whose
    ``sms`` are compute units). ``tensor_tflops`` maps a precision (tf32, bf16, fp16, int8,
    fp8, fp32-matrix) to its dense peak where the device has one.
    """

    key: str
    name: str
    sms: int
    lanes_per_sm: int
    boost_mhz: float
    mem_bw_gbs: float
    l2_mb: float
    tdp_w: float
    year: float
    vendor: str = "NVIDIA"
    tensor_tflops: tuple[tuple[str, float], ...] = field(default=())
    shared_int32: bool = False  # half the FP32 lanes share issue slots with INT32 (GA10x, Ada)
    architecture: str = ""  # pascal, volta, turing, ampere, ada, hopper, cdna1 ...

    @property
    def fp32_flops(self) -> float:
        """Vector FP32 peak in FLOP/s: SMs x lanes x 2 (FMA) x boost clock."""
        return self.sms * self.lanes_per_sm * 2.0 * self.boost_mhz * 1e6

    @property
    def bandwidth(self) -> float:
        return self.mem_bw_gbs * 1e9

    @property
    def l2_bytes(self) -> float:
        return self.l2_mb * 1e6

    def tensor_peak(self, precision: str) -> float | None:
        value = dict(self.tensor_tflops).get(precision)
        return value * 1e12 if value else None

    @classmethod
    def from_mapping(cls, key: str, raw: Mapping[str, Any]) -> GpuFigures:
        def val(name: str) -> Any:
            v = raw[name]
            return v["value"] if isinstance(v, Mapping) else v

        tensor = tuple((k, float(v["value"] if isinstance(v, Mapping) else v))
                       for k, v in (raw.get("tensor_tflops") or {}).items())
        return cls(key, str(raw.get("name", key)), int(val("sms")), int(val("lanes_per_sm")),
                   float(val("boost_mhz")), float(val("mem_bw_gbs")), float(val("l2_mb")),
                   float(val("tdp_w")), float(val("year")), str(raw.get("vendor", "NVIDIA")),
                   tensor, bool(raw.get("fp32_shares_int32", False)),
                   str(raw.get("architecture", "")))


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    from importlib import resources

    from chipfit.hardware.catalog import _toml, renamed_keys

    text = resources.files("chipfit.hardware").joinpath("data/gpu_arch.toml").read_text("utf-8")
    data = _toml().loads(text)
    if data.get("schema_version", 0) > GPU_ARCH_SCHEMA_VERSION:
        raise SchemaError("gpu_arch.toml is newer than this chipfit; upgrade chipfit")
    # A catalog entry renamed (old_keys, e.g. mi250x -> mi250x-gcd) keeps its figures here.
    renamed = renamed_keys()
    data["gpus"] = {renamed.get(k, k): v for k, v in data.get("gpus", {}).items()}
    return data


@lru_cache(maxsize=1)
def gpu_figures() -> dict[str, Any]:
    """Catalog key -> :class:`GpuFigures` (datasheet figures)."""
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
