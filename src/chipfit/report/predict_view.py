"""Rich views of the catalog, calibrations, predictions and validation reports.

Data never prints itself: these functions turn frozen values into tables. Every column says
where its numbers come from (catalog, measured, predicted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from chipfit.report.fmt import fmt_bytes, fmt_num, fmt_rate, fmt_seconds

__all__ = ["breakdown_table", "calibration_table", "catalog_entry", "catalog_table",
           "predictions_table", "reference_table", "validation_cases_table",
           "validation_summary"]


def _fig(spec: Any, name: str, digits: str = ".4g") -> str:
    fig = spec.figure(name)
    if fig.value is None:
        return "n/a" if fig.status == "n/a" else "?"
    mark = "*" if fig.status == "derived" else ""
    return f"{fig.value:{digits}}{mark}"


_CATALOG_COLS = (
    ("key", "left", 0), ("kind", "left", 0), ("name", "left", 5), ("fp32", "right", 3),
    ("tf32", "right", 6), ("bf16", "right", 0), ("fp16", "right", 2), ("int8", "right", 4),
    ("memory GB", "right", 0), ("mem GB/s", "right", 0), ("link GB/s", "right", 6),
    ("TDP W", "right", 1), ("USD/h", "right", 0),
)


def catalog_table(catalog: Any, width: int = 200, wide: bool = False) -> Table:
    """One row per catalog device; at a narrow ``width`` the less used columns step aside."""
    from chipfit.report.layout import Col, fitted_table

    cols = [Col(h, j, drop, prose=h == "name") for h, j, drop in _CATALOG_COLS]
    rows = [(spec.key, spec.kind, spec.name, _fig(spec, "fp32_tflops"),
             _fig(spec, "tf32_tflops"), _fig(spec, "bf16_tflops"), _fig(spec, "fp16_tflops"),
             _fig(spec, "int8_tops"), _fig(spec, "memory_gb"), _fig(spec, "memory_bw_gbs"),
             _fig(spec, "host_link_gbs"), _fig(spec, "tdp_w"), _fig(spec, "price_usd_hr"))
            for spec in catalog.values()]
    return fitted_table(cols, rows, width, wide=wide,
                        title="Hardware catalog (source: catalog; dense peaks)",
                        caption="TFLOP/s (int8: TOP/s); GB and GB/s decimal; * derived (see "
                        "chipfit catalog show KEY); ? unsourced; n/a not supported by the device")


def catalog_entry(spec: Any) -> Group:
    """Every figure of one device with its status, note and sources; then its efficiencies.

    Sources are numbered once below the tables and cited as [n], so a narrow terminal keeps
    one line per figure instead of folding long titles into every row.
    """
    head = Text.assemble((f"{spec.name}", "bold"), f"  [{spec.key}, {spec.kind}, {spec.vendor}]"
                         f"\nlaunch: {spec.launch}\nhost link: {spec.host_link}\n"
                         f"interconnect: {spec.interconnect}\nsparsity: {spec.sparsity_note}\n"
                         f"notes: {spec.notes or '-'}\nsource: catalog")
    numbers: dict[str, int] = {}

    def cite(sources: Sequence[str]) -> str:
        return "".join(f"[{numbers.setdefault(src, len(numbers) + 1)}]" for src in sources) or "-"

    figs = Table(title="Figures (source: catalog)", title_justify="left")
    figs.add_column("figure", no_wrap=True)
    figs.add_column("value", no_wrap=True, justify="right")
    figs.add_column("status", no_wrap=True)
    figs.add_column("note / derivation")
    figs.add_column("src", no_wrap=True)
    for f in spec.figures:
        value = "-" if f.value is None else f"{f.value:g} {f.unit}"
        text = "; ".join(x for x in (f.derivation, f.note) if x) or "-"
        figs.add_row(f.name, value, f.status, text, cite(f.sources))
    effs = Table(title="Efficiencies the predictor applies (source: catalog)",
                 title_justify="left")
    effs.add_column("name", no_wrap=True)
    effs.add_column("value", no_wrap=True, justify="right")
    effs.add_column("basis", no_wrap=True)
    effs.add_column("derivation")
    effs.add_column("src", no_wrap=True)
    for e in spec.efficiencies:
        effs.add_row(e.name, f"{e.value:g}", e.basis, e.derivation or "-", cite(e.sources))
    listing = Text("Sources:\n" + "\n".join(f"[{n}] {src}" for src, n in numbers.items()))
    return Group(head, figs, effs, listing)


def calibration_table(cal: Any) -> Table:
    """A calibration's fitted rates and overheads (all measured)."""
    table = Table(title=f"Calibration of {cal.device} — {cal.name} (measured {cal.created_at})",
                  title_justify="left", caption="rates are net of the per-op dispatch cost; "
                  "curves over operation size (FLOPs or bytes per op)", caption_justify="left")
    table.add_column("what")
    table.add_column("measured", overflow="fold")
    us = 1e6
    if cal.host_per_op_s:
        table.add_row("dispatch per op", f"{cal.host_per_op_s * us:.2f} us")
        table.add_row("per view / per nn.Module", f"{cal.host_per_view_s * us:.2f} us / "
                      f"{cal.host_per_module_s * us:.2f} us")
    if cal.host_per_call_s:
        table.add_row("dispatch per jitted call", f"{cal.host_per_call_s * us:.2f} us")
    for name, curves in (("matmul", cal.matmul), ("conv", cal.conv)):
        for dtype, curve in curves:
            table.add_row(f"{name} {dtype}", "  ".join(
                f"{_si(x)}:{fmt_rate(r, 'FLOP/s')}" for x, r in curve))
    table.add_row("bandwidth", "  ".join(f"{fmt_bytes(x)}:{fmt_rate(r, 'B/s')}"
                                         for x, r in cal.bandwidth))
    for kind, curve in cal.class_bandwidth:
        table.add_row(kind, "  ".join(f"{fmt_bytes(x)}:{fmt_rate(r, 'B/s')}" for x, r in curve))
    if cal.pool:
        table.add_row("max pool", "  ".join(f"{_si(x)}:{fmt_rate(r, 'out/s')}"
                                            for x, r in cal.pool))
    if cal.h2d_bw:
        table.add_row("copies h2d / d2h", f"{fmt_rate(cal.h2d_bw, 'B/s')} / "
                      f"{fmt_rate(cal.d2h_bw, 'B/s')}")
    for case, pred, meas in cal.checks:
        table.add_row(f"check {case}", f"predicted {fmt_seconds(pred)}, measured "
                      f"{fmt_seconds(meas)} ({_pct((pred - meas) / meas)})")
    if cal.check_mape is not None:
        table.add_row("check median error", f"{cal.check_mape:.1%}")
    return table


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{fmt_num(x / scale)}{unit}"
    return fmt_num(x)


def _pct(x: float) -> str:
    return f"{x:+.0%}" if math.isfinite(x) else "-"


def predictions_table(rows: Sequence[Any], title: str = "", wide: bool = False) -> Any:
    """Predicted (and, for local devices, measured) latency and throughput; the secondary
    columns step aside at a narrow width (named in the caption)."""
    from chipfit.report.layout import Col, Fitted

    measured_any = any(row.measurement is not None for row in rows)
    cols = [Col("hardware"), Col("size"), Col("predicted", "right"), Col("band", "right", 2),
            Col("items/s (pred.)", "right", 4), Col("e2e (pred.)", "right", 3), Col("bound", drop=1),
            Col("basis", drop=5), Col("measured", "right", 0 if measured_any else 6),
            Col("error", "right", 0 if measured_any else 6)]
    table_rows = []
    for row in rows:
        p, m = row.prediction, row.measurement
        measured = "-" if m is None else (fmt_seconds(m.median_s) if m.ok else m.status)
        bound = Text(p.bound, style="yellow" if p.bound in ("launch", "transfer") else "")
        hardware = Text(p.hardware)
        if p.route == "roofline" and p.kind != "cpu":
            hardware.append(" (roofline)", style="yellow")
        if p.fits is False:  # the time of a call that cannot run: said on the row
            hardware.append(f" (does not fit: {p.memory_need_bytes / 2**30:.1f} GiB > "
                            f"{p.memory_have_bytes / 2**30:.1f} GiB)", style="red")
        if p.unknown:  # no number and no band: "unknown" and the reason, kept short
            hardware.append(f" (no {p.missing_peak} peak)" if p.missing_peak
                            else f" ({p.unknown})", style="red")
            table_rows.append((hardware, p.size, Text("unknown", style="red"), "-", "-", "-",
                               "-", p.basis, measured, "-"))
            continue
        if p.missing_peak:
            hardware.append(f" (no {p.missing_peak} peak)", style="red")
        table_rows.append((hardware, p.size, fmt_seconds(p.seconds),
                           f"{fmt_seconds(p.low_s)}–{fmt_seconds(p.high_s)}",
                           fmt_rate(p.throughput, ""), fmt_seconds(p.end_to_end_s), bound,
                           p.basis, measured, _pct(row.error)))
    flags = []
    if any(r.prediction.route == "roofline" and r.prediction.kind != "cpu" for r in rows):
        flags.append("(roofline): no architecture figures, priced by catalog peaks x "
                     "efficiencies alone, a weaker route with a wider band")
    if any(row.prediction.fits is False for row in rows):
        flags.append("does not fit: one call needs more memory than the device has")
    if any(row.prediction.missing_peak and not row.prediction.unknown for row in rows):
        flags.append("no <precision> peak: the catalog lacks the peak of the precision "
                     "asked for; the time shown is priced at a stand-in peak (see the "
                     "precision lines)")
    if any(row.prediction.unknown for row in rows):
        flags.append("unknown: no <precision> peak in the catalog, so an engine at that "
                     "precision is not priced (no other peak stands in): no time, no band")
    return Fitted(cols, table_rows, wide=wide, title=title or "chipfit predict",
                  caption="predicted: per-operator models of each device (basis: calibrated "
                  "= rates measured here by chipfit calibrate; gpu-kernel-model = kernels "
                  "fitted on measured GPUs; catalog = peaks x documented efficiencies); band: "
                  "x/÷ (1 + out-of-fit error of the device's stratum). e2e adds host<->device "
                  "copies. measured: chipfit's timer, this run." +
                  "".join(f" {flag}." for flag in flags))


def breakdown_table(pred: Any) -> Table | Text:
    """Where one prediction's time goes, by operator class (all predicted); for an unknown
    prediction, one line saying why there is none."""
    if pred.unknown:
        return Text(f"{pred.workload} {pred.size} on {pred.hardware}: no time by operator "
                    f"class (unknown: {pred.unknown})")
    table = Table(title=f"{pred.workload} {pred.size} on {pred.hardware}: time by operator "
                        "class (predicted)", title_justify="left",
                  caption="roof = max(compute, memory) per operator; overhead = dispatch/launch "
                          "per operator (host and device overlap on accelerators, so rows may "
                          "add up to more than the total)", caption_justify="left")
    for col in ("class", "ops", "kernels", "FLOPs", "bytes", "compute", "memory", "overhead",
                "bound"):
        table.add_column(col, justify="left" if col in ("class", "bound") else "right")
    for c in pred.breakdown:
        table.add_row(c.op_class, str(c.ops), str(c.kernels), _si(c.flops) if c.flops else "-",
                      fmt_bytes(c.bytes_moved) if c.bytes_moved else "-", fmt_seconds(c.compute_s),
                      fmt_seconds(c.memory_s), fmt_seconds(c.overhead_s), c.bound)
    table.add_row("total", "", "", "", "", fmt_seconds(pred.compute_s), fmt_seconds(pred.memory_s),
                  fmt_seconds(pred.launch_s), pred.bound, style="bold")
    return table


def validation_cases_table(report: Any) -> Table:
    table = Table(title="Local: predicted (calibrated) vs measured", title_justify="left",
                  caption="error = (predicted - measured) / measured; ! noisy measurement",
                  caption_justify="left")
    for col in ("device", "workload", "size", "mode", "predicted", "measured", "error", "bound"):
        table.add_column(col, justify="right" if col in ("predicted", "measured", "error")
                         else "left")
    for c in report.cases:
        measured = fmt_seconds(c.measured_s) + (" !" if c.noisy else "") if c.status == "ok" \
            else f"{c.status}: {c.note[:50]}"
        table.add_row(c.device, c.workload, c.size, c.mode, fmt_seconds(c.predicted_s), measured,
                      _pct(c.error), c.bound)
    return table


def reference_table(report: Any) -> Table:
    table = Table(title="Published results vs catalog predictions", title_justify="left",
                  caption="MLPerf rows are INT8 engines (TensorRT, oneDNN): predicted as an "
                          "optimised stack, an upper bound. loo: scaled by the other rows of "
                          "the same stack and model (leave-one-out).", caption_justify="left")
    for col in ("id", "device", "batch", "metric", "published", "predicted", "error", "loo",
                "bound"):
        table.add_column(col, justify="left" if col in ("id", "device", "metric", "bound")
                         else "right", overflow="fold")
    for r in report.references:
        unit = "ms" if r.metric == "latency" else "/s"
        table.add_row(r.id, f"{r.count}x {r.device}" if r.count > 1 else r.device, str(r.batch),
                      r.metric, f"{r.published:.4g} {unit}", f"{r.predicted:.4g} {unit}",
                      _pct(r.error), _pct(r.loo_error), r.bound)
    return table


def validation_summary(report: Any) -> Table:
    s = report.summary()
    table = Table(title="Validation summary (MAPE = median absolute percentage error)",
                  title_justify="left")
    for col in ("set", "cases", "MAPE", "mean APE"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for device, row in s["local"].items():
        table.add_row(f"local {device} (calibrated)", str(row["cases"]), _opt(row["mape"]),
                      _opt(row["mean_ape"]))
    ref = s["reference"]
    if ref["rows"]:
        table.add_row("published, all rows (catalog)", str(ref["rows"]), _opt(ref["mape"]), "")
        table.add_row("published, GPU/TPU rows (catalog)", "", _opt(ref["mape_accelerators"]), "")
        table.add_row("published, all rows (leave-one-out)", "", _opt(ref["loo_mape"]), "")
    return table


def _opt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"
