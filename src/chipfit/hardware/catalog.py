"""The hardware catalog: devices chipfit can predict for without owning them.

The data lives in ``hardware/data/catalog.toml`` (shipped with the package); this module
turns it into frozen :class:`HardwareSpec` values. Every figure keeps its status (sourced,
derived, unsourced, n/a) and its citations, and every value carries ``source="catalog"``:
nothing here is measured. Figures are converted to SI units (FLOP/s, bytes, bytes/s) by the
accessors; the raw catalog units are in the field names (``bf16_tflops``, ``memory_gb``).

Prices are one basis for every device: on-demand US dollars per device-hour, dated, from
named providers (``prices = [...]``, a whole VM divided per device). :func:`price` picks one
by basis (``median`` of the providers, the ``cheapest``, or one PROVIDER); a device people
buy rather than rent carries a ``purchase`` price, amortised under stated assumptions
(``[amortisation]``). The ``price_usd_hr`` figure of a spec is that choice.

Users extend the catalog with a TOML file of the same schema (``--catalog FILE``, or
``catalog.toml`` in chipfit's data directory): it adds devices and overrides prices (a
private contract). It is read through the bounded reader and validated strictly; anything
wrong is one line naming the file and the field.

Loading refuses a catalog whose ``schema_version`` is newer than this module understands.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import statistics
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.paths import CONFIG_FILE_LIMIT, check_schema, read_user_text

__all__ = [
    "CATALOG_SCHEMA_VERSION", "CORE_FIGURES", "FIGURES", "PRECISIONS", "PRICE_BASES", "Catalog",
    "CheckItem", "Efficiency", "Figure", "HardwareSpec", "MissingFigure", "Price", "PricePoint",
    "Purchase", "catalog_problems", "check_catalog", "configure", "figure", "load_catalog",
    "missing_core", "price", "require",
]

# History: 1 = chipfit 0.1 (figures as inline tables with src/derived/unsourced/na; one
# price_usd_hr figure per device). 2 = prices from several providers ([[prices]] entries with
# dates), purchase + [amortisation], fp4_tflops, key aliases (old_keys). Version 1 files are
# still read (a user catalog written for 0.1): their price_usd_hr becomes one price entry.
CATALOG_SCHEMA_VERSION = 2
PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "int8", "fp8", "fp4")
# field -> (display unit, factor to SI)
FIGURES: dict[str, tuple[str, float]] = {
    "fp64_tflops": ("TFLOP/s", 1e12), "fp32_tflops": ("TFLOP/s", 1e12),
    "tf32_tflops": ("TFLOP/s", 1e12), "bf16_tflops": ("TFLOP/s", 1e12),
    "fp16_tflops": ("TFLOP/s", 1e12), "int8_tops": ("TOP/s", 1e12),
    "fp8_tflops": ("TFLOP/s", 1e12), "fp4_tflops": ("TFLOP/s", 1e12),
    "memory_gb": ("GB", 1e9), "memory_bw_gbs": ("GB/s", 1e9), "host_link_gbs": ("GB/s", 1e9),
    "tdp_w": ("W", 1.0), "price_usd_hr": ("USD/h", 1.0),
}
# Figures an entry states itself; price_usd_hr is computed from its prices / purchase.
STATED = tuple(n for n in FIGURES if n != "price_usd_hr")
# Figures a device may omit (absent = not in the catalog, no prediction that needs them).
OPTIONAL_FIGURES: dict[str, tuple[str, float]] = {"interconnect_gbs": ("GB/s", 1e9)}
_UNITS = {**FIGURES, **OPTIONAL_FIGURES}
EFFICIENCIES = ("matmul", "matmul_fp8", "memory", "host_copy", "pageable", "host_per_op_us",
                "kernel_floor_us")
KINDS = ("cpu", "gpu", "tpu", "npu")
_PEAK_FIELD = {p: ("int8_tops" if p == "int8" else f"{p}_tflops") for p in PRECISIONS}
# What the predictors need to give a time for a device: a figure in each group (alternatives
# separated by "|"). A shipped device without one fails `chipfit catalog --check`.
CORE_FIGURES: dict[str, tuple[str, ...]] = {
    "cpu": ("fp32_tflops", "memory_bw_gbs"),
    "gpu": ("fp32_tflops|bf16_tflops|fp16_tflops", "memory_gb", "memory_bw_gbs"),
    "tpu": ("bf16_tflops", "memory_gb", "memory_bw_gbs"),
    "npu": ("bf16_tflops|fp16_tflops", "memory_gb", "memory_bw_gbs"),
}
PRICE_BASES = ("median", "cheapest")
DEFAULT_BASIS = "median"
STALE_DAYS = 365  # a price read longer ago than this is listed as stale by --check
# Bounds for user catalogs (a hostile or broken file is refused in one line).
MAX_DEVICES = 1000
MAX_VALUE = 1e7  # in catalog units: 10 EFLOP/s, 10 PB, 10 MW, 10 M$/h are all nonsense
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9-]{0,39}\Z")
_DATE = re.compile(r"(20[0-9]{2})-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01]))?\Z")
_BAD_TEXT = re.compile(r"[\x00-\x1f\x7f<>\[\]{}\\]")


class MissingFigure(InvalidInputError):
    """A figure a computation needs is not in the catalog (unsourced, n/a or absent).

    Callers that answer many devices catch it and turn it into a row note (see
    :func:`require`); ``key``, ``figure`` and ``status`` say which and why."""

    def __init__(self, key: str, name: str, status: str) -> None:
        self.key, self.figure, self.status = key, name, status
        what = {"n/a": "not supported by the device", "unsourced": "not sourced yet",
                "absent": "not in the catalog"}.get(status, status)
        super().__init__(f"{key}: {name} is not in the catalog ({what})")


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
class PricePoint:
    """One provider's on-demand price for one device-hour, as read on ``date``."""

    provider: str
    usd_hr: float
    date: str  # YYYY-MM or YYYY-MM-DD: when the price was read or published
    region: str = ""
    vm: str = ""  # the instance it was divided from, with its vCPU/RAM
    vm_usd_hr: float | None = None
    devices_per_vm: int | None = None
    note: str = ""
    sources: tuple[str, ...] = ()
    origin: str = "catalog"  # "catalog" (shipped) or the user catalog file it came from
    term: str = "on-demand"  # or "spot" (interruptible), "committed" (a reservation)


@dataclass(frozen=True)
class Purchase:
    """A device people buy: its price, and the assumptions that turn it into USD per hour."""

    usd: float
    date: str
    years: float
    utilisation: float
    usd_per_kwh: float
    note: str = ""
    sources: tuple[str, ...] = ()
    origin: str = "catalog"

    def usd_hr(self, tdp_w: float | None) -> float:
        """Amortised cost of one busy hour: the price spread over the busy hours of its
        life, plus electricity at TDP (none when the TDP is unknown)."""
        busy_hours = self.years * 8766 * self.utilisation
        return self.usd / busy_hours + (tdp_w or 0.0) / 1000 * self.usd_per_kwh


@dataclass(frozen=True)
class Price:
    """The price :func:`price` chose: value, who charges it, when it was read, and how."""

    usd_hr: float
    provider: str  # a provider, "median of a, b", "purchase (amortised)" or "given"
    date: str
    basis: str  # the basis asked for: median | cheapest | PROVIDER | purchase | given
    note: str
    sources: tuple[str, ...] = ()
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
    prices: tuple[PricePoint, ...] = ()
    purchase: Purchase | None = None
    not_rented: str = ""  # why no provider price is expected (empty: a rentable device)
    old_keys: tuple[str, ...] = ()  # keys this entry had before (still accepted)
    measured_locally: str = ""  # why its missing figures are measured (calibrate), not cited
    stated_gaps: tuple[Figure, ...] = ()  # OPTIONAL_FIGURES stated as unsourced or n/a
    origin: str = "catalog"  # "catalog" or the user catalog file that added or changed it
    price_basis: str = DEFAULT_BASIS

    def figure(self, name: str) -> Figure:
        for fig in self.figures + self.optional_figures + self.stated_gaps:
            if fig.name == name:
                return fig
        if name in OPTIONAL_FIGURES:
            return Figure(name, None, OPTIONAL_FIGURES[name][0], "absent")
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
        return self.figure("interconnect_gbs").si

    @property
    def tdp_w(self) -> float | None:
        return self.figure("tdp_w").si

    @property
    def price_usd_hr(self) -> float | None:
        """USD per device-hour on this catalog's price basis (see :meth:`price`)."""
        return self.figure("price_usd_hr").si

    @property
    def unified_memory(self) -> bool:
        """No host<->device copies: a CPU, or a GPU sharing the host's memory (Apple)."""
        return self.kind == "cpu" or self.figure("host_link_gbs").status == "n/a"

    def price(self, basis: str | None = None) -> Price | None:
        """The hourly price on ``basis``: ``median`` (of the providers' on-demand prices),
        ``cheapest``, or a provider name; a bought device's amortised purchase price when
        no provider rents it; None when neither is known (or PROVIDER does not rent it)."""
        return _choose_price(self, basis or self.price_basis)

    def missing(self) -> list[str]:
        """The core figure groups (:data:`CORE_FIGURES`) this device has no value for."""
        return missing_core(self)


def missing_core(spec: HardwareSpec) -> list[str]:
    """Core figure groups of ``spec`` without a value ("bf16_tflops|fp16_tflops" ...)."""
    out = []
    for group in CORE_FIGURES[spec.kind]:
        if not any(spec.figure(n).value is not None for n in group.split("|")):
            out.append(group)
    return out


def _median_label(points: list[PricePoint]) -> str:
    return "median of " + ", ".join(_label(p) for p in points)


def _label(p: PricePoint) -> str:
    return p.provider if p.term == "on-demand" else f"{p.provider} ({p.term})"


def _choose_price(spec: HardwareSpec, basis: str) -> Price | None:
    """On-demand prices first; spot or committed ones only where no on-demand price exists,
    labelled so in the provider (``b300``: "spheron (spot)")."""
    rents = [p for p in spec.prices if p.term == "on-demand"] or list(spec.prices)
    if basis not in PRICE_BASES:  # one provider
        found = sorted((p for p in spec.prices if p.provider == basis),
                       key=lambda q: q.term != "on-demand")
        if not found:
            return None
        p = found[0]
        return Price(p.usd_hr, _label(p), p.date, basis, _point_note(p), p.sources)
    if rents:
        if basis == "cheapest":
            p = min(rents, key=lambda q: q.usd_hr)
            return Price(p.usd_hr, _label(p), p.date, basis, _point_note(p), p.sources)
        value = statistics.median(p.usd_hr for p in rents)
        oldest = min(p.date for p in rents)
        note = "; ".join(f"{_label(p)} {p.usd_hr:.4g} ({p.date})" for p in rents)
        if len(rents) == 1:
            note = _point_note(rents[0])
        return Price(value, _median_label(rents) if len(rents) > 1 else _label(rents[0]),
                     oldest, basis, note, tuple(dict.fromkeys(s for p in rents
                                                              for s in p.sources)))
    if spec.purchase is not None:
        b = spec.purchase
        tdp = spec.tdp_w
        note = (f"bought for USD {b.usd:,.0f} ({b.date}), amortised over {b.years:g} years at "
                f"{b.utilisation:.0%} utilisation, plus electricity at "
                + (f"{tdp:g} W TDP" if tdp else "unknown TDP (not counted)")
                + f" x USD {b.usd_per_kwh:g}/kWh (assumptions: [amortisation])")
        return Price(b.usd_hr(tdp), "purchase (amortised)", b.date, "purchase", note, b.sources)
    return None


def _point_note(p: PricePoint) -> str:
    where = f"{p.provider}" + (f" {p.region}" if p.region else "")
    what = (f"{p.vm} {p.vm_usd_hr:g} USD/h / {p.devices_per_vm} devices"
            if p.vm and p.vm_usd_hr and p.devices_per_vm else p.vm)
    term = p.term + (" (interruptible)" if p.term == "spot" else "")
    return "; ".join(x for x in (f"{where} {term}, {p.date}", what, p.note) if x)


class Catalog(Mapping[str, HardwareSpec]):
    """Catalog devices by key; unknown keys raise :class:`UnknownNameError` (did you mean)."""

    def __init__(self, specs: Mapping[str, HardwareSpec], origin: str = "catalog",
                 basis: str = DEFAULT_BASIS, amortisation: Mapping[str, Any] | None = None
                 ) -> None:
        self._specs = dict(specs)
        self._aliases = {old: s.key for s in self._specs.values() for old in s.old_keys}
        self.origin = origin
        self.basis = basis
        self.amortisation = dict(amortisation or {})

    def __getitem__(self, key: str) -> HardwareSpec:
        if key in self._specs:
            return self._specs[key]
        if key in self._aliases:
            return self._specs[self._aliases[key]]
        err = UnknownNameError("hardware", key, self._specs)
        prefixed = [k for k in self._specs if k.startswith(key.lower())]
        if prefixed:  # "h100" -> h100-sxm, h100-pcie (difflib alone would say h200)
            listing = " or ".join(repr(k) for k in prefixed)
            err.args = (f"unknown hardware {key!r}; did you mean {listing}? "
                        "(chipfit catalog lists every key)",)
        raise err

    def __contains__(self, key: object) -> bool:
        return key in self._specs or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def price(self, key: str, basis: str | None = None) -> Price | None:
        return self[key].price(basis or self.basis)

    def providers(self) -> list[str]:
        """Every provider some device has a price from (what --price-basis may name)."""
        return sorted({p.provider for s in self._specs.values() for p in s.prices})

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


def figure(key: str, name: str, catalog: Catalog | None = None) -> float | None:
    """The SI value of figure ``name`` of device ``key``, or None where the catalog has none
    (unsourced, n/a, absent). For callers that note a gap instead of stopping."""
    return (catalog or load_catalog())[key].figure(name).si


def require(spec: HardwareSpec | str, name: str, catalog: Catalog | None = None) -> float:
    """The SI value of figure ``name``; :class:`MissingFigure` (one line, which figure and
    why) when the catalog has none. Answering many devices, catch it and note the row."""
    if isinstance(spec, str):
        spec = (catalog or load_catalog())[spec]
    fig = spec.figure(name)
    if fig.si is None:
        raise MissingFigure(spec.key, name, fig.status)
    return fig.si


def price(key: str, basis: str | None = None, catalog: Catalog | None = None) -> Price | None:
    """The hourly price of device ``key`` on ``basis`` (median | cheapest | PROVIDER; default:
    the configured basis): value, provider, date, note. None when it has none."""
    cat = catalog or load_catalog()
    if basis is not None:
        _check_basis(basis, cat)
    return cat.price(key, basis)


# ---------------------------------------------------------------- reading and validating

def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib


def _number_problem(where: str, value: Any, *, strict: bool = True,
                    maximum: float = MAX_VALUE) -> list[str]:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or (value <= 0 if strict else value < 0)
            or value > maximum):
        sign = "positive" if strict else "non-negative"
        return [f"{where}: value must be a {sign} finite number (at most {maximum:g})"]
    return []


def _text_problem(where: str, value: Any, limit: int = 300) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: must be text"]
    if len(value) > limit:
        return [f"{where}: longer than {limit} characters"]
    if _BAD_TEXT.search(value):
        return [f"{where}: contains markup or control characters (<>[]{{}}\\ or escapes)"]
    return []


def _date_problem(where: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not _DATE.match(value):
        return [f"{where}: date must be YYYY-MM or YYYY-MM-DD (2000-2099)"]
    try:
        _as_date(value)
    except ValueError:
        return [f"{where}: {value!r} is not a calendar date"]
    return []


def _as_date(text: str) -> _dt.date:
    parts = [int(x) for x in text.split("-")]
    return _dt.date(parts[0], parts[1], parts[2] if len(parts) > 2 else 1)


def _figure_problems(where: str, name: str, raw: Any, sources: Mapping[str, str],
                     strict: bool = True, user: bool = False) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}.{name}: must be an inline table"]
    kinds = [k for k in ("value", "unsourced", "na") if k in raw]
    if len(kinds) != 1:
        return [f"{where}.{name}: needs exactly one of value / unsourced / na"]
    problems = [f"{where}.{name}: unknown field {k!r}" for k in raw
                if k not in ("value", "unsourced", "na", "src", "note", "derived")]
    if user:
        problems += [p for k in ("note", "derived") if k in raw
                     for p in _text_problem(f"{where}.{name}.{k}", raw[k])]
    if kinds[0] != "value":
        return problems + ([] if raw[kinds[0]] is True
                           else [f"{where}.{name}: {kinds[0]} must be true"])
    problems += _number_problem(f"{where}.{name}", raw["value"], strict=strict)
    cited = raw.get("src", [])
    if not isinstance(cited, list) or not all(isinstance(k, str) for k in cited):
        return problems + [f"{where}.{name}: src must be a list of source keys"]
    if not cited and not user:
        problems.append(f"{where}.{name}: a value needs a source (src)")
    problems += [f"{where}.{name}: unknown source key {k[:40]!r}" for k in cited
                 if k not in sources]
    return problems


_PRICE_FIELDS = ("provider", "usd_hr", "date", "region", "vm", "vm_usd_hr", "devices_per_vm",
                 "note", "src", "term")
TERMS = ("on-demand", "spot", "committed")


def _price_problems(where: str, raw: Any, sources: Mapping[str, str], user: bool) -> list[str]:
    if not isinstance(raw, list):
        return [f"{where}.prices: must be a list of inline tables"]
    problems: list[str] = []
    seen: set[str] = set()
    for i, p in enumerate(raw):
        at = f"{where}.prices[{i}]"
        if not isinstance(p, dict):
            problems.append(f"{at}: must be an inline table")
            continue
        problems += [f"{at}: unknown field {k[:40]!r}" for k in p if k not in _PRICE_FIELDS]
        prov = p.get("provider")
        term = p.get("term", "on-demand")
        if term not in TERMS:
            problems.append(f"{at}.term: one of {', '.join(TERMS)}")
        if not isinstance(prov, str) or not _PROVIDER.match(prov):
            problems.append(f"{at}.provider: must be a short lower-case name (aws, gcp, runpod)")
        elif f"{prov} {term}" in seen:
            problems.append(f"{at}.provider: {prov} ({term}) is listed twice")
        else:
            seen.add(f"{prov} {term}")
        problems += _number_problem(f"{at}.usd_hr", p.get("usd_hr"), maximum=10_000)
        problems += _date_problem(f"{at}.date", p.get("date"))
        problems += [q for k in ("region", "vm", "note") if k in p
                     for q in _text_problem(f"{at}.{k}", p[k])]
        if ("vm_usd_hr" in p) != ("devices_per_vm" in p):
            problems.append(f"{at}: vm_usd_hr and devices_per_vm go together")
        elif "vm_usd_hr" in p:
            problems += _number_problem(f"{at}.vm_usd_hr", p["vm_usd_hr"], maximum=100_000)
            n = p["devices_per_vm"]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
                problems.append(f"{at}.devices_per_vm: must be a whole number 1-1024")
            elif (isinstance(p.get("usd_hr"), (int, float)) and isinstance(p["vm_usd_hr"], (int, float))
                  and math.isfinite(p["vm_usd_hr"]) and p["vm_usd_hr"] > 0
                  and abs(p["usd_hr"] - p["vm_usd_hr"] / n) > 0.01 * abs(p["usd_hr"])):
                problems.append(f"{at}: usd_hr {p['usd_hr']:g} is not vm_usd_hr / "
                                f"devices_per_vm = {p['vm_usd_hr'] / n:.4g}")
        cited = p.get("src", [])
        if not isinstance(cited, list) or not all(isinstance(k, str) for k in cited):
            problems.append(f"{at}.src: must be a list of source keys")
        else:
            if not cited and not user:
                problems.append(f"{at}: a price needs a source (src)")
            problems += [f"{at}: unknown source key {k[:40]!r}" for k in cited
                         if k not in sources]
    return problems


def _purchase_problems(where: str, raw: Any, sources: Mapping[str, str],
                       user: bool) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}.purchase: must be an inline table"]
    at = f"{where}.purchase"
    problems = [f"{at}: unknown field {k[:40]!r}" for k in raw
                if k not in ("usd", "date", "note", "src")]
    problems += _number_problem(f"{at}.usd", raw.get("usd"), maximum=MAX_VALUE)
    problems += _date_problem(f"{at}.date", raw.get("date"))
    if "note" in raw:
        problems += _text_problem(f"{at}.note", raw["note"])
    cited = raw.get("src", [])
    if not isinstance(cited, list) or not all(isinstance(k, str) for k in cited):
        return problems + [f"{at}.src: must be a list of source keys"]
    if not cited and not user:
        problems.append(f"{at}: a purchase price needs a source (src)")
    return problems + [f"{at}: unknown source key {k[:40]!r}" for k in cited if k not in sources]


_AMORTISATION = {"years": 50.0, "utilisation": 1.0, "usd_per_kwh": 10.0}
_DEVICE_FIELDS = {"name", "vendor", "kind", "launch", "aliases", "cores", "host_link",
                  "interconnect", "sparsity_note", "notes", "sources", "efficiency", "prices",
                  "purchase", "not_rented", "old_keys", "price_usd_hr", "measured_locally",
                  *STATED, *OPTIONAL_FIGURES}


def _amortisation_problems(raw: Any, sources: Mapping[str, str], user: bool) -> list[str]:
    if not isinstance(raw, dict):
        return ["amortisation: must be a table"]
    problems = [f"amortisation: unknown field {k[:40]!r}" for k in raw if k not in _AMORTISATION]
    for name, top in _AMORTISATION.items():
        if name not in raw:
            if not user:
                problems.append(f"amortisation: missing {name}")
            continue
        problems += _figure_problems("amortisation", name, raw[name], sources, user=user)
        if isinstance(raw[name], dict) and "value" not in raw[name]:
            problems.append(f"amortisation.{name}: needs a value")
        value = raw[name].get("value") if isinstance(raw[name], dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > top:
            problems.append(f"amortisation.{name}: at most {top:g}")
    return problems


def _device_problems(key: str, dev: Any, sources: Mapping[str, str], *, user: bool,
                     partial: bool) -> list[str]:
    """Problems of one device entry; ``partial``: a user entry changing a shipped device."""
    where = f"devices.{key}"
    if not isinstance(dev, dict):
        return [f"{where}: must be a table"]
    problems = [f"{where}: unknown field {k[:40]!r}" for k in dev if k not in _DEVICE_FIELDS]
    if not partial:
        if dev.get("kind") not in KINDS:
            problems.append(f"{where}: kind must be one of {', '.join(KINDS)}")
        problems += [f"{where}: missing {f}" for f in ("name", "vendor") if not dev.get(f)]
    elif "kind" in dev:
        problems.append(f"{where}: kind of a shipped device cannot change")
    if user:
        problems += [p for f in ("name", "vendor", "launch", "host_link", "interconnect",
                                 "sparsity_note", "not_rented", "measured_locally") if f in dev
                     for p in _text_problem(f"{where}.{f}", dev[f], 120)]
        if "notes" in dev:
            problems += _text_problem(f"{where}.notes", dev["notes"], 1000)
        aliases = dev.get("aliases", [])
        if not isinstance(aliases, list) or len(aliases) > 20:
            problems.append(f"{where}.aliases: must be a list of at most 20 names")
        else:
            problems += [p for a in aliases for p in _text_problem(f"{where}.aliases", a, 120)]
        if "cores" in dev and (isinstance(dev["cores"], bool) or not isinstance(dev["cores"], int)
                               or not 1 <= dev["cores"] <= 100_000):
            problems.append(f"{where}.cores: must be a whole number 1-100000")
        if "old_keys" in dev:
            problems.append(f"{where}.old_keys: only the shipped catalog renames devices")
    for name in STATED:
        if name in dev:
            problems += _figure_problems(where, name, dev[name], sources, user=user)
        elif not user:
            problems.append(f"{where}: missing figure {name}")
    problems += [p for name in OPTIONAL_FIGURES if name in dev
                 for p in _figure_problems(where, name, dev[name], sources, user=user)]
    if "price_usd_hr" in dev:
        problems += _figure_problems(where, "price_usd_hr", dev["price_usd_hr"], sources,
                                     user=user)
    if "prices" in dev:
        problems += _price_problems(where, dev["prices"], sources, user)
    if "purchase" in dev:
        problems += _purchase_problems(where, dev["purchase"], sources, user)
    if not user and not partial and "prices" not in dev and "not_rented" not in dev \
            and "price_usd_hr" not in dev:
        problems.append(f"{where}: needs prices (on-demand, per provider) or not_rented "
                        "(why no provider rents it)")
    effs = dev.get("efficiency", {})
    if not isinstance(effs, dict):
        problems.append(f"{where}.efficiency: must be a table")
        effs = {}
    for name, raw in effs.items():
        if name not in EFFICIENCIES:
            problems.append(f"{where}.efficiency: unknown efficiency {name[:40]!r}")
        problems += _figure_problems(f"{where}.efficiency", name, raw, sources, strict=False,
                                     user=user)
    return problems


def catalog_problems(data: Mapping[str, Any]) -> list[str]:
    """Everything wrong with raw (shipped-style) catalog data: missing figures, values without
    sources, prices without a provider or date ..."""
    sources = data.get("sources", {})
    problems: list[str] = []
    for kind, effs in data.get("defaults", {}).get("efficiency", {}).items():
        problems += [p for n in EFFICIENCIES if n not in ("matmul_fp8",)
                     for p in (_figure_problems(f"defaults.{kind}", n, effs.get(n), sources,
                                                strict=False)
                               if n in effs else [f"defaults.{kind}: missing {n}"])]
    if "amortisation" in data or data.get("schema_version", 1) >= 2:
        problems += _amortisation_problems(data.get("amortisation"), sources, user=False)
    for key, dev in data.get("devices", {}).items():
        problems += _device_problems(key, dev, sources, user=False, partial=False)
    return problems


def user_catalog_problems(user: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a user catalog meant to extend ``base`` (the shipped data)."""
    problems = [f"unknown top-level table {k[:40]!r} (use schema_version, sources, "
                "amortisation, devices)" for k in user
                if k not in ("schema_version", "sources", "amortisation", "devices")]
    own = user.get("sources", {})
    if not isinstance(own, dict):
        return problems + ["sources: must be a table of key = \"citation\""]
    for k, text in own.items():
        if not _KEY.match(k):
            problems.append(f"sources: key {k[:40]!r} must be lower-case letters, digits, -._")
        problems += _text_problem(f"sources.{k[:40]}", text, 500)
        if k in base["sources"] and base["sources"][k] != text:
            problems.append(f"sources.{k}: already a shipped source with other text")
    sources = {**base["sources"], **own}
    if "amortisation" in user:
        problems += _amortisation_problems(user["amortisation"], sources, user=True)
    devices = user.get("devices", {})
    if not isinstance(devices, dict):
        return problems + ["devices: must be a table of [devices.KEY] entries"]
    if len(devices) > MAX_DEVICES:
        return problems + [f"devices: {len(devices)} entries, more than {MAX_DEVICES}"]
    shipped = base["devices"]
    renamed = {old: k for k, d in shipped.items() for old in d.get("old_keys", ())}
    for key, dev in devices.items():
        if not _KEY.match(key):
            problems.append(f"devices: key {key[:40]!r} must be 1-64 lower-case letters, "
                            "digits, -._")
            continue
        partial = key in shipped or key in renamed
        problems += _device_problems(key, dev, sources, user=True, partial=partial)
    return problems


def _figure(name: str, raw: Mapping[str, Any], sources: Mapping[str, str],
            fallback: tuple[str, ...] = ()) -> Figure:
    if raw.get("na"):
        status, value = "n/a", None
    elif raw.get("unsourced"):
        status, value = "unsourced", None
    else:
        status, value = ("derived" if raw.get("derived") else "sourced"), float(raw["value"])
    cited = tuple(sources[k] for k in raw.get("src", ())) or (fallback if value else ())
    return Figure(name, value, _UNITS[name][0], status, cited, raw.get("note", ""),
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
        cited = tuple(sources[k] for k in raw.get("src", ())) or (
            (f"user catalog {dev['_origin']}",) if dev.get("_origin") else ())
        out.append(Efficiency(name, float(raw["value"]), cited, raw.get("derived", ""), basis))
    return tuple(out)


def _points(dev: Mapping[str, Any], sources: Mapping[str, str], origin: str
            ) -> tuple[PricePoint, ...]:
    fallback = () if origin == "catalog" else (f"user catalog {origin}",)
    out = []
    for p in dev.get("prices", ()):
        out.append(PricePoint(
            provider=p["provider"], usd_hr=float(p["usd_hr"]), date=p["date"],
            region=p.get("region", ""), vm=p.get("vm", ""),
            vm_usd_hr=float(p["vm_usd_hr"]) if "vm_usd_hr" in p else None,
            devices_per_vm=p.get("devices_per_vm"), note=p.get("note", ""),
            term=p.get("term", "on-demand"),
            sources=tuple(sources[k] for k in p.get("src", ())) or fallback, origin=origin))
    old = dev.get("price_usd_hr")  # a schema-1 file: its one price becomes one entry
    if not out and isinstance(old, dict) and "value" in old:
        out.append(PricePoint("catalog-v1", float(old["value"]), "2000-01",
                              note=old.get("note", "schema-1 price (no provider or date)"),
                              sources=tuple(sources[k] for k in old.get("src", ())) or fallback,
                              origin=origin))
    return tuple(out)


def _purchase(dev: Mapping[str, Any], data: Mapping[str, Any], origin: str) -> Purchase | None:
    raw = dev.get("purchase")
    if raw is None:
        return None
    am = data["amortisation"]
    sources = data["sources"]
    fallback = () if origin == "catalog" else (f"user catalog {origin}",)
    return Purchase(float(raw["usd"]), raw["date"], float(am["years"]["value"]),
                    float(am["utilisation"]["value"]), float(am["usd_per_kwh"]["value"]),
                    raw.get("note", ""), tuple(sources[k] for k in raw.get("src", ()))
                    or fallback, origin)


def _price_figure(spec: HardwareSpec) -> Figure:
    chosen = spec.price()
    if chosen is None:
        if spec.prices or spec.purchase:  # a provider basis this device is not rented on
            return Figure("price_usd_hr", None, "USD/h", "unsourced",
                          note=f"no {spec.price_basis} price (rented from "
                               + ", ".join(p.provider for p in spec.prices) + ")")
        if spec.not_rented:
            return Figure("price_usd_hr", None, "USD/h", "n/a", note=spec.not_rented)
        return Figure("price_usd_hr", None, "USD/h", "unsourced",
                      note="no provider price or purchase price in the catalog")
    status = "sourced" if chosen.basis not in ("median", "purchase") or len(spec.prices) == 1 \
        else "derived"
    derivation = ""
    if chosen.basis == "purchase":
        derivation = chosen.note
    elif status == "derived":
        derivation = f"{chosen.provider}: {chosen.note}"
    note = (f"{chosen.basis} basis: {chosen.provider}, read {chosen.date}"
            + (f"; {chosen.note}" if status == "sourced" else ""))
    return Figure("price_usd_hr", chosen.usd_hr, "USD/h", status, chosen.sources, note,
                  derivation)


def _spec(key: str, dev: Mapping[str, Any], data: Mapping[str, Any], basis: str) -> HardwareSpec:
    sources = data["sources"]
    origin = dev.get("_origin", "catalog")
    fallback = () if origin == "catalog" else (f"user catalog {origin}",)
    defaults = data.get("defaults", {}).get("efficiency", {})
    spec = HardwareSpec(
        key=key, name=dev["name"], vendor=dev["vendor"], kind=dev["kind"],
        launch=dev.get("launch", ""), aliases=tuple(dev.get("aliases", ())),
        cores=dev.get("cores"), host_link=dev.get("host_link", ""),
        interconnect=dev.get("interconnect", ""), sparsity_note=dev.get("sparsity_note", ""),
        notes=dev.get("notes", ""), sources=tuple(sources[k] for k in dev.get("sources", ())),
        figures=tuple(_figure(n, dev[n], sources, fallback) for n in STATED)
        + (Figure("price_usd_hr", None, "USD/h", "unsourced"),),
        optional_figures=tuple(_figure(n, dev[n], sources, fallback)
                               for n in OPTIONAL_FIGURES if n in dev and "value" in dev[n]),
        stated_gaps=tuple(_figure(n, dev[n], sources, fallback)
                          for n in OPTIONAL_FIGURES if n in dev and "value" not in dev[n]),
        efficiencies=_efficiencies(dev, defaults, sources),
        prices=_points(dev, sources, dev.get("_price_origin", origin)),
        purchase=_purchase(dev, data, dev.get("_price_origin", origin)),
        not_rented=dev.get("not_rented", ""), old_keys=tuple(dev.get("old_keys", ())),
        measured_locally=dev.get("measured_locally", ""),
        origin=origin, price_basis=basis,
    )
    return replace(spec, figures=spec.figures[:-1] + (_price_figure(spec),))


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 data (no fp4 figure, no amortisation) read as schema 2."""
    if data.get("schema_version") == 1:
        for dev in data.get("devices", {}).values():
            if isinstance(dev, dict):
                dev.setdefault("fp4_tflops", {"unsourced": True, "note": "schema-1 file"})
                if "price_usd_hr" not in dev and "prices" not in dev:
                    dev.setdefault("not_rented", "schema-1 file without a price")
    return data


def parse_catalog(data: Mapping[str, Any], origin: str = "catalog",
                  basis: str = DEFAULT_BASIS) -> Catalog:
    """Build a :class:`Catalog` from parsed TOML, refusing newer schemas and bad data."""
    check_schema(data.get("schema_version"), CATALOG_SCHEMA_VERSION, origin, "upgrade chipfit")
    data = _upgrade(dict(data))
    problems = catalog_problems(data)
    if problems:
        raise InvalidInputError(f"{origin} is not a valid hardware catalog: {problems[0]}"
                                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return _build(data, origin, basis)


def _build(data: dict[str, Any], origin: str, basis: str) -> Catalog:
    """A :class:`Catalog` of data already validated (shipped, or merged with a checked user
    catalog)."""
    if "amortisation" not in data:
        data["amortisation"] = _shipped_data()["amortisation"]
        data["sources"] = {**_shipped_data()["sources"], **data.get("sources", {})}
    return Catalog({k: _spec(k, d, data, basis) for k, d in data.get("devices", {}).items()},
                   origin, basis, data["amortisation"])


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
        first = str(exc).splitlines()[0][:200] if str(exc) else "parse error"
        raise InvalidInputError(f"{path or 'catalog.toml'} is not valid TOML: {first}") from None
    except RecursionError:
        raise InvalidInputError(f"{path} is not a catalog (TOML nested too deeply)") from None
    except (ValueError, OverflowError):  # absurd numbers
        raise InvalidInputError(f"{path} is not a catalog (TOML the reader cannot hold)") from None


@lru_cache(maxsize=1)
def _shipped_data() -> dict[str, Any]:
    return read_catalog_data()


def merge_user_catalog(base: Mapping[str, Any], user: Mapping[str, Any], origin: str
                       ) -> dict[str, Any]:
    """``base`` (shipped data) with the user catalog ``user`` (read from ``origin``) applied:
    its devices added, its entries for shipped devices (prices above all) overriding."""
    import copy

    check_schema(user.get("schema_version"), CATALOG_SCHEMA_VERSION, origin, "upgrade chipfit")
    problems = user_catalog_problems(user, base)
    if problems:
        raise InvalidInputError(f"{origin} is not a valid user catalog: {problems[0]}"
                                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    data = copy.deepcopy(dict(base))
    data["sources"] = {**data["sources"], **user.get("sources", {})}
    for name, raw in user.get("amortisation", {}).items():
        data["amortisation"][name] = {**raw, "note": raw.get("note", f"set in {origin}")}
    renamed = {old: k for k, d in data["devices"].items() for old in d.get("old_keys", ())}
    for key, dev in user.get("devices", {}).items():
        key = renamed.get(key, key)
        if key in data["devices"]:
            entry = data["devices"][key]
            entry.update({k: v for k, v in dev.items()})
            entry["_origin"] = origin if set(dev) - {"prices", "purchase"} else \
                entry.get("_origin", "catalog")
            if "prices" in dev or "purchase" in dev:
                entry["_price_origin"] = origin
        else:
            entry = dict(dev)
            for name in STATED:
                entry.setdefault(name, {"unsourced": True, "note": f"not given in {origin}"})
            entry["_origin"] = origin
            data["devices"][key] = entry
    return data


def renamed_keys() -> dict[str, str]:
    """Old catalog key -> its key now (``old_keys`` of the shipped entries)."""
    return {old: key for key, dev in _shipped_data().get("devices", {}).items()
            for old in dev.get("old_keys", ())}


# ---------------------------------------------------------------- the effective catalog

_CONFIG: dict[str, Any] = {"paths": (), "basis": None}


def configure(catalog: str | Path | None = None, price_basis: str | None = None) -> None:
    """Set what :func:`load_catalog` returns by default: a user catalog file layered on the
    shipped one (besides ``catalog.toml`` in the data directory), and the price basis. The
    CLI calls this for ``--catalog`` and ``--price-basis``."""
    _CONFIG["paths"] = () if catalog is None else (str(catalog),)
    _CONFIG["basis"] = price_basis


def user_catalog_paths() -> list[str]:
    """The user catalogs in effect: the data directory's catalog.toml, then --catalog."""
    from chipfit.paths import data_dir

    found = data_dir() / "catalog.toml"
    return ([str(found)] if found.is_file() else []) + list(_CONFIG["paths"])


def _check_basis(basis: str, catalog: Catalog) -> None:
    if basis not in PRICE_BASES and basis not in catalog.providers():
        raise UnknownNameError("price basis", basis, list(PRICE_BASES) + catalog.providers())


@lru_cache(maxsize=8)
def _effective(paths: tuple[tuple[str, float], ...], basis: str) -> Catalog:
    shipped = "chipfit/hardware/data/catalog.toml"
    cat = parse_catalog(_shipped_data(), shipped, basis)  # the shipped data, checked strictly
    if paths:
        data = _shipped_data()
        for path, _mtime in paths:
            data = merge_user_catalog(data, read_catalog_data(path), path)  # checked as user data
        cat = _build(data, shipped + "".join(f" + {p}" for p, _ in paths), basis)
    _check_basis(basis, cat)
    return cat


def load_catalog(path: str | Path | None = None, *, basis: str | None = None,
                 user: str | Path | None = None) -> Catalog:
    """The catalog in effect (cached): shipped, plus the user catalogs (data directory, then
    ``user`` or the one :func:`configure` set), on ``basis`` or the configured price basis;
    or the whole catalog at ``path``."""
    chosen = basis or _CONFIG["basis"] or DEFAULT_BASIS
    if path is not None:
        cat = parse_catalog(read_catalog_data(path), str(path), chosen)
        _check_basis(chosen, cat)
        return cat
    paths = user_catalog_paths()
    if user is not None:
        paths = [p for p in paths if p not in _CONFIG["paths"]] + [str(user)]
    stamped = []
    for p in paths:
        try:
            stamped.append((p, Path(p).stat().st_mtime))
        except OSError:
            stamped.append((p, 0.0))  # the bounded reader says what is wrong with it
    return _effective(tuple(stamped), chosen)


# ---------------------------------------------------------------- chipfit catalog --check

@dataclass(frozen=True)
class CheckItem:
    """One finding of :func:`check_catalog`: ``error`` (fails the check) or ``warning``."""

    severity: str
    key: str
    what: str
    origin: str = "catalog"


def check_catalog(catalog: Catalog, stale_days: int = STALE_DAYS,
                  today: _dt.date | None = None,
                  arch_keys: Collection[str] | None = None) -> list[CheckItem]:
    """Every gap in ``catalog``: errors for a device without a core figure (what the
    predictors need to give it a time); warnings for each unsourced figure, a rentable device
    without a price, each price older than ``stale_days``, a rentable device priced by one
    provider only, and a GPU without kernel-model figures (``arch_keys``: the GPUs
    gpu_arch.toml describes; such a GPU is predicted by the roofline only)."""
    today = today or _dt.date.today()
    out: list[CheckItem] = []
    for spec in catalog.values():
        def add(severity: str, what: str, s: HardwareSpec = spec) -> None:
            out.append(CheckItem(severity, s.key, what, s.origin))

        for group in spec.missing():
            if spec.measured_locally:
                add("warning", f"core figure {group.replace('|', ' or ')} missing: "
                               f"{spec.measured_locally}")
            else:
                add("error", f"core figure {group.replace('|', ' or ')} missing "
                             f"(predictions for it are skipped with a row note)")
        for fig in spec.figures + spec.optional_figures + spec.stated_gaps:
            if fig.status == "unsourced" and fig.name != "price_usd_hr":
                add("warning", f"{fig.name} unsourced" + (f" ({fig.note})" if fig.note else ""))
        if not spec.prices and spec.purchase is None:
            if not spec.not_rented:
                add("warning", "rentable but no dated provider price: unpriced in cost "
                               "rankings (add one in a user catalog)")
        elif not spec.prices and not spec.not_rented:
            add("warning", "only a purchase price; no provider rents it in the catalog")
        elif len(spec.prices) == 1 and not spec.not_rented:
            add("warning", f"one provider only ({spec.prices[0].provider})")
        for p in spec.prices:
            age = (today - _as_date(p.date)).days
            if age > stale_days:
                add("warning", f"{p.provider} price read {p.date}, {age} days ago "
                               f"(stale after {stale_days})")
        if arch_keys is not None and spec.kind == "gpu" and spec.key not in arch_keys:
            add("warning", "no GPU architecture figures: predicted by the roofline only")
    return out
