"""The hardware catalog: devices chipfit can predict for without owning them.

The data lives in ``hardware/data/catalog.toml`` (shipped with the package); this module
turns it into frozen :class:`HardwareSpec` values. Every figure keeps its status (sourced,
derived, unsourced, n/a) and its citations, and every value carries ``source="catalog"``:
nothing here is measured. Figures are converted to SI units (FLOP/s, bytes, bytes/s) by the
accessors; the raw catalog units are in the field names (``bf16_tflops``, ``memory_gb``).

Loading refuses a catalog whose ``schema_version`` is newer than this module understands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.paths import CONFIG_FILE_LIMIT, check_schema, read_user_text

__all__ = [
    "CATALOG_SCHEMA_VERSION", "FIGURES", "PRECISIONS", "Catalog", "Efficiency", "Figure",
    "HardwareSpec", "catalog_problems", "load_catalog",
]

# History: 1 = chipfit 0.1 (figures as inline tables with src/derived/unsourced/na).
CATALOG_SCHEMA_VERSION = 1
PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "int8", "fp8")
# field -> (display unit, factor to SI)
FIGURES: dict[str, tuple[str, float]] = {
    "fp64_tflops": ("TFLOP/s", 1e12), "fp32_tflops": ("TFLOP/s", 1e12),
    "tf32_tflops": ("TFLOP/s", 1e12), "bf16_tflops": ("TFLOP/s", 1e12),
    "fp16_tflops": ("TFLOP/s", 1e12), "int8_tops": ("TOP/s", 1e12),
    "fp8_tflops": ("TFLOP/s", 1e12), "memory_gb": ("GB", 1e9),
    "memory_bw_gbs": ("GB/s", 1e9), "host_link_gbs": ("GB/s", 1e9),
    "tdp_w": ("W", 1.0), "price_usd_hr": ("USD/h", 1.0),
}
# Figures a device may omit (absent = not in the catalog, no prediction that needs them).
OPTIONAL_FIGURES: dict[str, tuple[str, float]] = {"interconnect_gbs": ("GB/s", 1e9)}
_UNITS = {**FIGURES, **OPTIONAL_FIGURES}
EFFICIENCIES = ("matmul", "matmul_fp8", "memory", "host_copy", "pageable", "host_per_op_us",
                "kernel_floor_us")
KINDS = ("cpu", "gpu", "tpu", "npu")
_PEAK_FIELD = {p: ("int8_tops" if p == "int8" else f"{p}_tflops") for p in PRECISIONS}


@dataclass(frozen=True)
class Figure:
    """One catalog number, in the catalog's unit, with its status and citations."""

    name: str
    value: float | None
    unit: str
    status: str  # sourced | derived | unsourced | n/a
    sources: tuple[str, ...] = ()
    note: str = ""
    derivation: str = ""
    source: str = "catalog"

    @property
    def si(self) -> float | None:
        """The value in SI units (FLOP/s, bytes, bytes/s, W), or None if absent."""
        return None if self.value is None else self.value * _UNITS[self.name][1]


@dataclass(frozen=True)
class Efficiency:
    """A fraction of peak (or a per-op cost in microseconds) the predictor applies."""

    name: str
    value: float
    sources: tuple[str, ...]
    derivation: str
    basis: str  # "device" (measured on this model) or "default:<kind>"
    source: str = "catalog"


@dataclass(frozen=True)
class HardwareSpec:
    """One catalog device. Accessors return SI units or None where the catalog has no figure."""

    key: str
    name: str
    vendor: str
    kind: str
    launch: str
    aliases: tuple[str, ...]
    cores: int | None
    host_link: str
    interconnect: str
    sparsity_note: str
    notes: str
    sources: tuple[str, ...]
    figures: tuple[Figure, ...]
    efficiencies: tuple[Efficiency, ...]
    source: str = "catalog"
    optional_figures: tuple[Figure, ...] = ()  # OPTIONAL_FIGURES the entry has

    def figure(self, name: str) -> Figure:
        for fig in self.figures:
            if fig.name == name:
                return fig
        raise UnknownNameError("catalog figure", name, [f.name for f in self.figures])

    def peak(self, precision: str) -> float | None:
        """Dense peak FLOP/s (op/s for int8) at ``precision`` (fp32, bf16, int8 ...)."""
        if precision not in _PEAK_FIELD:
            raise UnknownNameError("precision", precision, PRECISIONS)
        return self.figure(_PEAK_FIELD[precision]).si

    def efficiency(self, name: str) -> Efficiency:
        for eff in self.efficiencies:
            if eff.name == name:
                return eff
        raise UnknownNameError("efficiency", name, [e.name for e in self.efficiencies])

    @property
    def memory_bytes(self) -> float | None:
        return self.figure("memory_gb").si

    @property
    def memory_bw(self) -> float | None:
        return self.figure("memory_bw_gbs").si

    @property
    def host_link_bw(self) -> float | None:
        return self.figure("host_link_gbs").si

    @property
    def interconnect_bw(self) -> float | None:
        """Device-to-device bytes/s per direction (NVLink, ICI ...); None if not cataloged."""
        found = [f for f in self.optional_figures if f.name == "interconnect_gbs"]
        return found[0].si if found else None

    @property
    def tdp_w(self) -> float | None:
        return self.figure("tdp_w").si

    @property
    def price_usd_hr(self) -> float | None:
        return self.figure("price_usd_hr").si

    @property
    def unified_memory(self) -> bool:
        """No host<->device copies: a CPU, or a GPU sharing the host's memory (Apple)."""
        return self.kind == "cpu" or self.figure("host_link_gbs").status == "n/a"


class Catalog(Mapping[str, HardwareSpec]):
    """Catalog devices by key; unknown keys raise :class:`UnknownNameError` (did you mean)."""

    def __init__(self, specs: Mapping[str, HardwareSpec], origin: str = "catalog") -> None:
        self._specs = dict(specs)
        self.origin = origin

    def __getitem__(self, key: str) -> HardwareSpec:
        if key in self._specs:
            return self._specs[key]
        err = UnknownNameError("hardware", key, self._specs)
        prefixed = [k for k in self._specs if k.startswith(key.lower())]
        if prefixed:  # "h100" -> h100-sxm, h100-pcie (difflib alone would say h200)
            listing = " or ".join(repr(k) for k in prefixed)
            err.args = (f"unknown hardware {key!r}; did you mean {listing}? "
                        "(chipfit catalog lists every key)",)
        raise err

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def match(self, device_name: str, cores: int | None = None) -> HardwareSpec | None:
        """The entry whose alias names ``device_name`` (a GPU name, ``device_kind``, CPU model).

        Exact alias matches win; then the longest alias contained in the name. For CPUs the
        core count must agree when the entry records one.
        """
        text = device_name.strip().lower()
        best: tuple[int, HardwareSpec] | None = None
        for spec in self._specs.values():
            if cores is not None and spec.cores is not None and spec.cores != cores:
                continue
            for alias in spec.aliases:
                a = alias.lower()
                score = 10_000 if a == text else (len(a) if a and a in text else 0)
                if score and (best is None or score > best[0]):
                    best = (score, spec)
        return best[1] if best else None


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib


def _figure_problems(where: str, name: str, raw: Any, sources: Mapping[str, str],
                     minimum: float = 0.0, strict: bool = True) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}.{name}: must be an inline table"]
    kinds = [k for k in ("value", "unsourced", "na") if k in raw]
    if len(kinds) != 1:
        return [f"{where}.{name}: needs exactly one of value / unsourced / na"]
    if kinds[0] != "value":
        return [] if raw[kinds[0]] is True else [f"{where}.{name}: {kinds[0]} must be true"]
    problems = []
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            value <= minimum if strict else value < minimum):
        sign = "positive" if strict else "non-negative"
        problems.append(f"{where}.{name}: value must be a {sign} number")
    cited = raw.get("src") or []
    if not cited:
        problems.append(f"{where}.{name}: a value needs a source (src)")
    problems += [f"{where}.{name}: unknown source key {k!r}" for k in cited if k not in sources]
    return problems


def catalog_problems(data: Mapping[str, Any]) -> list[str]:
    """Everything wrong with raw catalog data: missing figures, values without sources ..."""
    sources = data.get("sources", {})
    problems: list[str] = []
    for kind, effs in data.get("defaults", {}).get("efficiency", {}).items():
        problems += [p for n in EFFICIENCIES if n not in ("matmul_fp8",)
                     for p in (_figure_problems(f"defaults.{kind}", n, effs.get(n), sources,
                                                strict=False)
                               if n in effs else [f"defaults.{kind}: missing {n}"])]
    for key, dev in data.get("devices", {}).items():
        where = f"devices.{key}"
        if dev.get("kind") not in KINDS:
            problems.append(f"{where}: kind must be one of {', '.join(KINDS)}")
        for field in ("name", "vendor"):
            if not dev.get(field):
                problems.append(f"{where}: missing {field}")
        for name in FIGURES:
            if name not in dev:
                problems.append(f"{where}: missing figure {name}")
            else:
                problems += _figure_problems(where, name, dev[name], sources)
        problems += [p for name in OPTIONAL_FIGURES if name in dev
                     for p in _figure_problems(where, name, dev[name], sources)]
        for name, raw in dev.get("efficiency", {}).items():
            if name not in EFFICIENCIES:
                problems.append(f"{where}.efficiency: unknown efficiency {name!r}")
            problems += _figure_problems(f"{where}.efficiency", name, raw, sources, strict=False)
    return problems


def _figure(name: str, raw: Mapping[str, Any], sources: Mapping[str, str]) -> Figure:
    if raw.get("na"):
        status, value = "n/a", None
    elif raw.get("unsourced"):
        status, value = "unsourced", None
    else:
        status, value = ("derived" if raw.get("derived") else "sourced"), float(raw["value"])
    return Figure(name, value, _UNITS[name][0], status,
                  tuple(sources[k] for k in raw.get("src", ())), raw.get("note", ""),
                  raw.get("derived", ""))


def _efficiencies(dev: Mapping[str, Any], defaults: Mapping[str, Any],
                  sources: Mapping[str, str]) -> tuple[Efficiency, ...]:
    own = dev.get("efficiency", {})
    base = defaults.get(dev["kind"], {})
    out = []
    for name in EFFICIENCIES:
        if name in own:
            raw, basis = own[name], "device"
        else:
            raw, basis = base.get(name), f"default:{dev['kind']}"
        if raw is None:
            continue
        out.append(Efficiency(name, float(raw["value"]), tuple(sources[k] for k in raw["src"]),
                              raw.get("derived", ""), basis))
    return tuple(out)


def _spec(key: str, dev: Mapping[str, Any], data: Mapping[str, Any]) -> HardwareSpec:
    sources = data["sources"]
    defaults = data.get("defaults", {}).get("efficiency", {})
    return HardwareSpec(
        key=key, name=dev["name"], vendor=dev["vendor"], kind=dev["kind"],
        launch=dev.get("launch", ""), aliases=tuple(dev.get("aliases", ())),
        cores=dev.get("cores"), host_link=dev.get("host_link", ""),
        interconnect=dev.get("interconnect", ""), sparsity_note=dev.get("sparsity_note", ""),
        notes=dev.get("notes", ""), sources=tuple(sources[k] for k in dev.get("sources", ())),
        figures=tuple(_figure(n, dev[n], sources) for n in FIGURES),
        optional_figures=tuple(_figure(n, dev[n], sources) for n in OPTIONAL_FIGURES if n in dev),
        efficiencies=_efficiencies(dev, defaults, sources),
    )


def parse_catalog(data: Mapping[str, Any], origin: str = "catalog") -> Catalog:
    """Build a :class:`Catalog` from parsed TOML, refusing newer schemas and bad data."""
    check_schema(data.get("schema_version"), CATALOG_SCHEMA_VERSION, origin, "upgrade chipfit")
    problems = catalog_problems(data)
    if problems:
        raise InvalidInputError(f"{origin} is not a valid hardware catalog: {problems[0]}"
                                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return Catalog({k: _spec(k, d, data) for k, d in data.get("devices", {}).items()}, origin)


def read_catalog_data(path: str | Path | None = None) -> dict[str, Any]:
    """The raw parsed TOML of the shipped catalog (or of ``path``)."""
    if path is None:
        text = resources.files("chipfit.hardware").joinpath("data/catalog.toml").read_text("utf-8")
    else:
        text = read_user_text(path, CONFIG_FILE_LIMIT, "catalog")
    toml = _toml()
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path or 'catalog.toml'} is not valid TOML: {exc}") from None
    except RecursionError:  # inline tables nested deeper than the parser goes
        raise InvalidInputError(f"{path} is not a catalog (TOML nested too deeply)") from None


@lru_cache(maxsize=1)
def _shipped() -> Catalog:
    return parse_catalog(read_catalog_data(), "chipfit/hardware/data/catalog.toml")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The shipped hardware catalog (cached), or the catalog at ``path``."""
    if path is None:
        return _shipped()
    return parse_catalog(read_catalog_data(path), str(path))
