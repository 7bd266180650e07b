"""Views of the hardware catalog for a buyer: the device list with the age of its price,
one device's prices by provider, and the findings of ``chipfit catalog --check``.

Numbers come from the catalog (``source: catalog``); a price says its provider, its date and
its basis, a bought device's price says the amortisation assumptions it rests on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

__all__ = ["age_label", "catalog_list_table", "check_table", "entry_json", "prices_table",
           "show_entry"]


def age_label(date: str, today: dt.date | None = None) -> str:
    """How long ago ``date`` (YYYY-MM[-DD]) was, at a glance: "3mo", "2y", "new"."""
    parts = [int(x) for x in date.split("-")]
    when = dt.date(parts[0], parts[1], parts[2] if len(parts) > 2 else 1)
    days = ((today or dt.date.today()) - when).days
    if days < 31:
        return "new" if days >= 0 else "future"
    if days < 730:
        return f"{days // 30}mo"
    return f"{days // 365}y"


def _num(fig: Any) -> str:
    if fig.value is None:
        return "n/a" if fig.status == "n/a" else "?"
    return f"{fig.value:.4g}" + ("*" if fig.status == "derived" else "")


def _tensor(spec: Any) -> str:
    for name in ("bf16_tflops", "fp16_tflops", "fp32_tflops"):
        fig = spec.figure(name)
        if fig.value is not None:
            return _num(fig) + ("" if name == "bf16_tflops" else f" ({name[:4]})")
    return "?"


def _price_cells(spec: Any, today: dt.date | None) -> tuple[str, str, str]:
    chosen = spec.price()
    if chosen is None:
        fig = spec.figure("price_usd_hr")
        return ("n/a" if fig.status == "n/a" else "?"), ("not rented" if fig.status == "n/a"
                                                          else "unpriced"), "-"
    who = ("bought" if chosen.basis == "purchase" else
           f"median of {len(spec.prices)}" if chosen.basis == "median" and len(spec.prices) > 1
           else chosen.provider)
    return f"{chosen.usd_hr:.3g}", who, age_label(chosen.date, today)


def catalog_list_table(catalog: Any, width: int = 80, wide: bool = False,
                       today: dt.date | None = None, arch_keys: Any = None) -> Table:
    """One row per device: its figures, its price on the catalog's basis with who sets it
    and how old it is, and how many of its figures are unsourced. At a narrow ``width`` the
    less used columns step aside (and are named); key, bf16, memory, price and age stay."""
    from chipfit.report.layout import Col, fitted_table
    from chipfit.report.predict_view import _fig

    cols = [Col("key"), Col("kind", drop=4), Col("name", drop=7, prose=True),
            Col("fp32", "right", 3), Col("tf32", "right", 8), Col("bf16", "right"),
            Col("fp16", "right", 2), Col("int8", "right", 5), Col("memory GB", "right"),
            Col("mem GB/s", "right"), Col("link GB/s", "right", 8), Col("TDP W", "right", 1),
            Col("USD/h", "right"), Col("priced by", drop=3), Col("age", "right"),
            Col("gaps", "right", 6)]
    rows = []
    for spec in catalog.values():
        _usd, who, age = _price_cells(spec, today)
        gaps = sum(1 for f in spec.figures + spec.stated_gaps
                   if f.status == "unsourced" and f.name != "price_usd_hr")
        key = spec.key + ("+" if spec.origin != "catalog" else "")
        if arch_keys is not None and spec.kind == "gpu" and spec.key not in arch_keys:
            key += " (r)"
        rows.append((key, spec.kind, spec.name, _fig(spec, "fp32_tflops"),
                     _fig(spec, "tf32_tflops"), _fig(spec, "bf16_tflops"),
                     _fig(spec, "fp16_tflops"), _fig(spec, "int8_tops"),
                     _fig(spec, "memory_gb"), _fig(spec, "memory_bw_gbs"),
                     _fig(spec, "host_link_gbs"), _fig(spec, "tdp_w"),
                     _fig(spec, "price_usd_hr"), who, age, str(gaps)))
    basis = getattr(catalog, "basis", "median")
    return fitted_table(
        cols, rows, width, wide=wide,
        title=f"Hardware catalog (source: catalog; dense peaks; prices: {basis} basis)",
        caption="TFLOP/s (int8: TOP/s); GB and GB/s decimal; USD/h per device-hour on-demand "
                "(a bought device: amortised); age: when the price was read; gaps: unsourced "
                "figures; * derived; ? unsourced; n/a not supported (or not rented); (r) "
                "roofline only (no kernel-model figures); + from your catalog. chipfit "
                "catalog show KEY: every figure and price with its source")


def prices_table(spec: Any, today: dt.date | None = None) -> Table:
    """Every provider price of one device (and its purchase), with date, age and VM."""
    table = Table(title=f"Prices of {spec.key} (USD per device-hour; chosen basis: "
                        f"{spec.price_basis})", title_justify="left")
    for header, justify in (("provider", "left"), ("USD/h", "right"), ("date", "left"),
                            ("age", "right"), ("instance / note", "left")):
        table.add_column(header, justify=justify, no_wrap=header != "instance / note")
    for p in spec.prices:
        what = "; ".join(x for x in (
            p.region, f"{p.vm} ({p.vm_usd_hr:g} USD/h / {p.devices_per_vm})"
            if p.vm_usd_hr else p.vm, p.note, "" if p.origin == "catalog" else f"from {p.origin}")
            if x)
        table.add_row(p.provider, f"{p.usd_hr:.4g}", p.date, age_label(p.date, today),
                      what or "-")
    if spec.purchase is not None:
        b = spec.purchase
        table.add_row("purchase", f"{b.usd_hr(spec.tdp_w):.3g}", b.date, age_label(b.date, today),
                      f"USD {b.usd:,.0f} over {b.years:g} y at {b.utilisation:.0%} use + "
                      f"{b.usd_per_kwh:g} USD/kWh at TDP (assumptions; override in a user "
                      "catalog)")
    if not spec.prices and spec.purchase is None:
        table.add_row("-", "-", "-", "-", spec.not_rented or "no price in the catalog")
    chosen = spec.price()
    table.caption = (f"chosen: {chosen.usd_hr:.4g} USD/h, {chosen.provider} ({chosen.basis})"
                     if chosen else "chosen: none on this basis")
    table.caption_justify = "left"
    return table


def show_entry(spec: Any, today: dt.date | None = None) -> Group:
    """``chipfit catalog show KEY``: every figure with status and source, then the prices."""
    from chipfit.report.predict_view import catalog_entry

    extra = []
    if spec.old_keys:
        extra.append(Text(f"also accepted as: {', '.join(spec.old_keys)}"))
    if spec.origin != "catalog":
        extra.append(Text(f"added or changed by your catalog: {spec.origin}"))
    gaps = [f"{f.name}: {f.status}" + (f" ({f.note})" if f.note else "")
            for f in spec.stated_gaps]
    if gaps:
        extra.append(Text("optional figures not in the catalog: " + "; ".join(gaps)))
    return Group(catalog_entry(spec), *extra, prices_table(spec, today))


def check_table(items: Sequence[Any], stale_days: int) -> Table:
    """The findings of ``chipfit catalog --check``, errors first."""
    table = Table(title=f"Catalog check ({sum(i.severity == 'error' for i in items)} errors, "
                        f"{sum(i.severity == 'warning' for i in items)} warnings; prices older "
                        f"than {stale_days} days are stale)", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("finding")
    for item in sorted(items, key=lambda i: (i.severity != "error", i.key)):
        mark = Text("error", style="red") if item.severity == "error" else Text("warn")
        table.add_row(mark, item.key, item.what)
    return table


def entry_json(spec: Any) -> dict[str, Any]:
    """One device as JSON: every field, and the chosen price with its basis."""
    from dataclasses import asdict

    data = asdict(spec)
    chosen = spec.price()
    data["price"] = asdict(chosen) if chosen else None
    data["core_figures_missing"] = spec.missing()
    return data
