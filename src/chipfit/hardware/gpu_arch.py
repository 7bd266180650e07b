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
    #: Datasheet base clock: what the board guarantees at its power limit under heavy load
    #: (0: not sourced). Recorded; the sustained-clock model does not use it (a floor at it
    #: was tried and withdrawn, docs/GPU_MODELS.md "Device features").
    base_mhz: float = 0.0
    #: SM sub-partitions (warp schedulers) per SM and warp instructions each may dispatch per
    #: clock (Pascal: 2 dispatch units per scheduler; Volta and later: 1), and the warp width.
    partitions: int = 4
    dispatch: int = 1
    warp: int = 32
    #: 32-bit registers per SM (64K on every NVIDIA SM from Maxwell to Blackwell).
    regs_per_sm: int = 65536
    #: Tensor-core generation (0: none; 1 Volta, 2 Turing, 3 Ampere, 4 Ada/Hopper, 5 Blackwell;
    #: AMD: matrix-core generation of CDNA 1/2/3/4). Recorded, not used by the FP32 models.
    tensor_gen: int = 0

    @property
    def fp32_flops(self) -> float:
        """Vector FP32 peak in FLOP/s: SMs x lanes x 2 (FMA) x boost clock."""
        return self.sms * self.lanes_per_sm * 2.0 * self.boost_mhz * 1e6

    @property
    def base_fraction(self) -> float:
        """Base clock / boost clock (0 where the base clock is not sourced)."""
        return min(1.0, self.base_mhz / self.boost_mhz) if self.base_mhz > 0 else 0.0

    @property
    def ffma_issue_share(self) -> float:
        """Share of a scheduler's issue slots a stream of FP32 FMAs at full rate takes.

        A warp instruction occupies a partition's ``lanes / partitions`` FP32 lanes for
        ``warp / (lanes / partitions)`` clocks; the scheduler issues ``dispatch`` per clock.
        0.5 (Pascal with its dual dispatch, Volta/Turing/GA100 with 16 lanes per partition):
        every FMA leaves a free slot for the loads and address arithmetic of an SGEMM loop.
        1.0 (GA10x, Ada, Hopper, Blackwell: 32 FP32 lanes per partition, one dispatch):
        every other instruction takes an FMA's slot.
        """
        per_partition = self.lanes_per_sm / max(self.partitions, 1)
        return per_partition / (self.warp * max(self.dispatch, 1))

    @property
    def regs_per_lane(self) -> float:
        """32-bit registers per FP32 lane: 1024 on 64-lane SMs, 512 on 128-lane ones."""
        return self.regs_per_sm / self.lanes_per_sm

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
        def opt(name: str, default: float) -> float:
            return float(val(name)) if name in raw else default

        return cls(key, str(raw.get("name", key)), int(val("sms")), int(val("lanes_per_sm")),
                   float(val("boost_mhz")), float(val("mem_bw_gbs")), float(val("l2_mb")),
                   float(val("tdp_w")), float(val("year")), str(raw.get("vendor", "NVIDIA")),
                   tensor, bool(raw.get("fp32_shares_int32", False)),
                   str(raw.get("architecture", "")), opt("base_mhz", 0.0),
                   int(opt("partitions", 4)), int(opt("dispatch", 1)), int(opt("warp", 32)),
                   int(opt("regs_per_sm", 65536)), int(opt("tensor_gen", 0)))


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
