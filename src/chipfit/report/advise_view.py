"""Words and tables for a recommendation: reasons become sentences only here."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

from chipfit.analysis.evidence import Option, Reason, Recommendation
from chipfit.analysis.verdict import SWITCH, Verdict
from chipfit.report.fmt import fmt_num, fmt_seconds

__all__ = ["advice_json", "advice_renderable", "advice_summary", "display_name", "reason_line",
           "reason_text", "rule_words", "stored_advice", "verdict_json", "verdict_text"]

_WORDS = {
    "below-crossover": "At batch {batch} the CPU is faster than every accelerator: the work is "
                       "below the crossover, where launches and copies cost more than they save.",
    "launch-bound": "The accelerators' predicted time is dominated by kernel launches or "
                    "host-device copies, not by the model's arithmetic.",
    "memory-host-only": "The model needs more memory than the accelerators have but fits in "
                        "host RAM.",
    "cpu-fallback-ops": "Some operators have no kernel on the accelerator and fall back to the "
                        "CPU, adding copies.",
    "recurrent-or-irregular": "Recurrent layers or many small non-matmul operators make the "
                              "work sequential and irregular, which suits CPUs and GPUs better "
                              "than TPUs.",
    "matrix-large-batch": "Almost all the arithmetic is matrix multiplication or convolution and "
                          "the batch is large: the shape of work TPUs are built for.",
    "long-training": "Training would take over a week even on the fastest single device: "
                     "spread it over a TPU pod or several GPUs.",
    "parallel-work": "The model has enough parallel work that a GPU is faster than the CPU.",
    "faster-stack": "{stack} ({precision}) on {device}: {speedup} faster than eager at batch "
                    "{batch}; {agreement}.",
}


class _Missing(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def reason_text(reason: Reason) -> str:
    """One sentence for ``reason`` followed by its evidence and source."""
    data = dict(reason.evidence)
    sentence = _WORDS.get(reason.code, reason.code).format_map(_Missing(data))
    facts = "; ".join(f"{k}: {v}" for k, v in reason.evidence)
    return f"{sentence} [evidence ({reason.source}): {facts}] [{rule_words(reason.cite, titles=True)}]"


def rule_words(cite: str, titles: bool = False) -> str:
    """A rule's citation in words. The seeds are the articles chipfit grew from, and a bare
    ``seeds/003`` means nothing to a reader: ``seeds/003 (GPU importance ...): small tasks
    lose to transfer ...`` -> ``the articles' rule: small tasks lose to transfer ...
    (seeds/003)``; ``titles`` adds each article's title (``seeds/003, "GPU importance
    ..."``). A citation of another form is shown as it is, after ``rule:``."""
    import re

    words, refs = [], []
    for part in re.split(r";\s*(?=seeds/)", cite):
        found = re.match(r"(seeds/\w+)(?: \(([^)]*)\))?(?::\s*(.*))?$", part.strip(), re.S)
        if found is None:
            words.append(part.strip())
            continue
        refs.append(f"{found[1]}, \u201c{found[2]}\u201d" if titles and found[2] else found[1])
        if found[3]:
            words.append(found[3].strip())
    if not refs:
        return f"rule: {cite}"
    text = "; ".join(w for w in words if w)
    where = "; ".join(refs)
    return f"the articles' rule: {text} ({where})" if text else f"the articles' rule ({where})"


def reason_line(reason: Reason) -> str:
    """``reason`` in one short line for the terminal: the sentence and where the rule comes
    from (the full evidence is in --json and the HTML report)."""
    data = dict(reason.evidence)
    sentence = _WORDS.get(reason.code, reason.code).format_map(_Missing(data))
    return f"{sentence} ({reason.source}; {rule_words(reason.cite)})"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}"


def _joules(o: Option) -> str:
    if o.joules_per_item is None:
        return "-"
    return fmt_num(o.joules_per_item) + (" meas." if o.energy_source == "measured" else " est.")


# Vendor words a buyer does not need in a sentence ("Use an L4", not "Use a NVIDIA L4").
_VENDORS = ("NVIDIA GeForce ", "NVIDIA ", "AMD Instinct ", "AMD ", "Google ", "Intel (Habana) ",
            "Intel ", "Apple ", "AWS ")
# Letters whose spoken name starts with a vowel sound: "an H100", "an MI300X", "an L4".
_AN_LETTERS = set("AEFHILMNORSX")


def display_name(o: Option) -> str:
    """A short product name for sentences: the catalog name without the vendor."""
    name = o.name.split(" (")[0]
    for vendor in _VENDORS:
        if name.startswith(vendor):
            return name[len(vendor):]
    return name


def _article(name: str) -> str:
    word = name.split()[0] if name else ""
    spelled = word[:2].isupper() or any(c.isdigit() for c in word)
    first = word[:1].upper()
    vowel = first in _AN_LETTERS if spelled else first in set("AEIOU")
    return ("an " if vowel else "a ") + name


def _here_name(o: Option) -> str:
    if o.kind == "cpu":
        return "this CPU" + (" at one thread" if o.device.endswith("@1t") else "")
    return f"this machine's {display_name(o)}"


def _times(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _price_words(o: Option) -> str:
    parts = []
    if o.price_usd_hr is not None:
        parts.append(f"at {_money(o.price_usd_hr)}/h")
    if o.usd_per_million is not None:
        parts.append(f"{_money(o.usd_per_million)} per 1M samples")
    return ", ".join(parts) if parts else "no price in the catalog"


_BETTER_WORSE = {"latency": ("faster", "slower"),
                 "throughput": ("more throughput", "less throughput"),
                 "cost": ("cheaper per sample", "dearer per sample"),
                 "energy": ("less energy per sample", "more energy per sample")}


def _compare(objective: str, ratio: float) -> str:
    """"3.1x faster" for ratio 3.1, "1.3x slower" for ratio 1/1.3 (subject vs the other)."""
    better, worse = _BETTER_WORSE[objective]
    return f"{_times(ratio)} {better}" if ratio >= 1 else f"{_times(1 / ratio)} {worse}"


def _predicted(o: Option | None) -> str:
    """How a catalog option was priced, in words: a roofline-only device says so."""
    return "predicted, roofline only" if o is not None and o.route == "roofline" else "predicted"


def _source_cell(o: Option) -> str:
    return "roofline" if o.route == "roofline" and not o.present else o.latency_source


def verdict_text(v: Verdict, batch: int | None = None) -> str:
    """The one sentence a person acts on: stay or switch, by how much, at what price."""
    at = f" at batch {batch}" if batch else ""
    if v.action == "none" or v.best is None:
        return "No processor meets the constraints: relax --max-latency or --budget."
    if v.action == SWITCH and v.here is None:
        return (f"Use {_article(display_name(v.best))}: the best {v.objective} of the options "
                f"({_predicted(v.best)}{at}), {_price_words(v.best)}; nothing was measured on "
                "this machine.")
    if v.action == SWITCH:
        if v.gain is None:
            return (f"Use {_article(display_name(v.best))}: {_price_words(v.best)}; "
                    f"{_here_name(v.here)} has no price to compare (pass --local-price USD/h).")
        text = (f"Use {_article(display_name(v.best))}: {_compare(v.objective, v.gain)} than "
                f"{_here_name(v.here)}{at} ({_predicted(v.best)}), {_price_words(v.best)}")
        if v.tied_with:
            names = ", ".join(display_name(o) for o in v.tied_with[:3])
            more = f" and {len(v.tied_with) - 3} more" if len(v.tied_with) > 3 else ""
            text += (f"; a tie on {v.objective} with {names}{more} within the predictions' "
                     "uncertainty, and the cheapest per sample of them")
        return text + "."
    here = _here_name(v.best)
    stay = f"Stay on {here}" if v.best.kind == "cpu" else f"Use {here}"
    if v.away is None:
        return f"{stay}: no catalog device could be predicted for this model{at}."
    rival = _article(display_name(v.away))
    if v.tie:
        return (f"{stay}: a tie{at} — the best accelerator, {rival}, is predicted "
                f"{_compare(v.objective, v.gain or 1.0)}, within the uncertainty "
                f"(x/÷{v.margin:.2g}), "
                "so it is not clearly better and not worth paying for.")
    if v.gain is None:
        return f"{stay}: the best on {v.objective}{at} (measured)."
    return (f"{stay}: it is {_compare(v.objective, 1 / v.gain)}{at} (measured) than the best "
            f"accelerator, {rival} ({_predicted(v.away)}).")


def _device_cell(o: Option) -> str:
    """The device, plus its stack and precision when not eager (with the speed-up over it)."""
    if o.stack in ("eager", "jit"):
        return o.device
    speedup = o.speedup_vs_eager
    return f"{o.device} {o.stack} {o.precision}" + (f" ×{speedup:.2g}" if speedup else "")


def options_table(rec: Recommendation, train: tuple[int, float] | None = None,
                  wide: bool = False) -> Any:
    """The ranked options; at a narrow width the secondary columns step aside (named)."""
    from chipfit.report.layout import Col, Fitted

    money_drop = 0 if rec.objective == "cost" else 1
    cols = [Col("#", "right"), Col("device"), Col("source"), Col("latency", "right"),
            Col("samples/s", "right", 2), Col("$ per 1M", "right", money_drop),
            Col("J/sample", "right", 0 if rec.objective == "energy" else 3),
            Col("kind", drop=5), Col("bound", drop=4)]
    if train:
        cols.append(Col("time to train", "right"))
    rows = []
    for i, o in enumerate(rec.ranked, 1):
        style = "bold green" if i == 1 else ""
        row = [Text(str(i), style), Text(_device_cell(o), style), _source_cell(o),
               fmt_seconds(o.latency_s), f"{o.throughput:,.0f}", _money(o.usd_per_million),
               _joules(o), o.kind, o.bound or "-"]
        if train:
            seconds = o.train_time_s(*train)
            row.append("-" if seconds is None else f"{fmt_seconds(seconds)} ({o.train_source})")
        rows.append(row)
    batch = rec.ranked[0].batch if rec.ranked else None
    return Fitted(cols, rows, wide=wide,
                  title=f"Processors ranked by {rec.objective}"
                        + (f" at batch {batch}" if batch else ""),
                  caption="source: measured here, or predicted from the catalog (roofline: "
                  "from catalog peaks only, a weaker route); $ (price x time) and J are "
                  "estimated unless marked meas.")


def _footnotes(rec: Recommendation) -> list[str]:
    """Where this machine's price and energy figures came from, when they are estimates."""
    notes = []
    for o in rec.ranked:
        if o.present and o.price_source and not o.price_source.startswith("catalog"):
            notes.append(f"price of this machine: {o.price_source}")
        if o.present and o.energy_source.startswith("estimated: ") and "per core" in o.energy_source:
            notes.append("energy here: " + o.energy_source.split(") x ")[0] + ") x cores used "
                         "x busy time")
    return list(dict.fromkeys(notes))


def _basis_note(verdict: Verdict | None) -> list[str]:
    """The price basis behind a verdict that names a catalog device's price."""
    best = verdict.best if verdict is not None else None
    if best is None or best.present or not best.price_source:
        return []
    return [f"price of {best.device}: {best.price_source}"]


def advice_renderable(rec: Recommendation, train: tuple[int, float] | None = None,
                      verdict: Verdict | None = None, wide: bool = False) -> Any:
    """The verdict first, then why, then the ranked table and its footnotes."""
    parts: list[Any] = []
    batch = rec.ranked[0].batch if rec.ranked else None
    if verdict is not None:
        parts.append(Text(verdict_text(verdict, batch), style="bold"))
        reasons = verdict.supporting
    else:
        reasons = rec.reasons
    for reason in reasons:
        parts.append(Text(f"- {reason_line(reason)}"))
    parts.append(Text(""))
    parts.append(options_table(rec, train, wide))
    if rec.choice is None:
        parts.append(Text("No processor meets the constraints.", style="bold red"))
    for group in rec.ties:
        parts.append(Text(f"tie: {', '.join(group)} ({rec.tie_break})", style="yellow"))
    for note in _basis_note(verdict) + _footnotes(rec):
        parts.append(Text(note, style="dim"))
    for device, why in rec.excluded:
        parts.append(Text(f"excluded {device}: {why}", style="dim"))
    return Group(*parts)


def advice_summary(advice: Any, top: int = 3) -> str:
    """A few plain lines for ``str(advice)``: the verdict, then the top options."""
    rec, v = advice.recommendation, advice.verdict
    lines = [verdict_text(v, advice.evidence.batch)]
    for i, o in enumerate(rec.ranked[:top], 1):
        lines.append(f"  {i}. {o.device} ({o.kind}): {fmt_seconds(o.latency_s)} per batch of "
                     f"{o.batch} ({o.latency_source}), {_money(o.usd_per_million)} per 1M")
    more = len(rec.ranked) - top
    if more > 0:
        lines.append(f"  ... {more} more in advice.recommendation.ranked")
    return "\n".join(lines)


def _option_json(o: Option, train: tuple[int, float] | None) -> dict[str, Any]:
    return {
        "device": o.device, "kind": o.kind, "name": o.name, "present": o.present, "batch": o.batch,
        "stack": o.stack, "precision": o.precision,
        "speedup_vs_eager": {"value": o.speedup_vs_eager, "source": o.latency_source},
        "max_rel_diff_vs_eager": {"value": o.max_rel_diff, "source": "measured"},
        "latency_s": {"value": o.latency_s, "source": o.latency_source},
        "throughput_per_s": {"value": o.throughput, "source": o.latency_source},
        "usd_per_million": {"value": o.usd_per_million, "source": "estimated",
                            "price_basis": o.price_source or None},
        "joules_per_sample": {"value": o.joules_per_item, "source": o.energy_source},
        "bound": o.bound, "fits": o.fits,
        "time_to_train_s": ({"value": o.train_time_s(*train), "source": o.train_source}
                            if train else None),
        "notes": list(o.notes),
        "band": o.band, "route": o.route or ("measured" if o.present else ""),
    }


def verdict_json(v: Verdict, batch: int | None = None) -> dict[str, Any]:
    """The verdict as data, with its sentence."""
    return {"action": v.action, "text": verdict_text(v, batch),
            "best": v.best.device if v.best else None,
            "here": v.here.device if v.here else None, "away": v.away.device if v.away else None,
            "speedup": v.speedup, "gain": v.gain, "margin": v.margin, "tie": v.tie,
            "tied_with": [o.device for o in v.tied_with],
            "source": "measured here vs predicted from the catalog"}


def advice_json(rec: Recommendation, train: tuple[int, float] | None = None,
                verdict: Verdict | None = None) -> dict[str, Any]:
    batch = rec.ranked[0].batch if rec.ranked else None
    aside = {id(r) for r in verdict.set_aside} if verdict is not None else set()
    return {
        "verdict": verdict_json(verdict, batch) if verdict is not None else None,
        "objective": rec.objective,
        "choice": rec.choice.device if rec.choice else None,
        "choice_stack": rec.choice.stack if rec.choice else None,
        "choice_precision": rec.choice.precision if rec.choice else None,
        "choice_batch": rec.choice.batch if rec.choice else None,
        "ranked": [_option_json(o, train) for o in rec.ranked],
        "reasons": [{"code": r.code, "favours": r.favours, "text": reason_text(r),
                     "supports_verdict": id(r) not in aside,
                     "evidence": dict(r.evidence), "source": r.source, "cite": r.cite}
                    for r in rec.reasons],
        "excluded": [{"device": d, "why": w} for d, w in rec.excluded],
        "ties": [list(group) for group in rec.ties],
        "tie_break": rec.tie_break,
    }


def _stored_value(cell: Any) -> float | None:
    """A figure of a stored option (``{"value": x, "source": ...}`` or a bare number)."""
    value = cell.get("value") if isinstance(cell, dict) else cell
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _stored_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _stored_text(value: Any) -> str:
    return value if isinstance(value, str) else "-" if value is None else str(value)


def stored_advice(data: Any, wide: bool = False) -> Any:
    """A stored advice record (``advice_json``'s dict, kept with an advise run) as
    ``chipfit show`` prints it: the verdict, the reasons that support it, and the ranked
    options in the table ``advise`` printed (the record itself: ``show --json``). Tolerates a
    record from an older chipfit or a damaged one: what is missing shows as ``-``."""
    from chipfit.report.layout import Col, Fitted

    data = data if isinstance(data, dict) else {}
    parts: list[Any] = []
    verdict = data.get("verdict") if isinstance(data.get("verdict"), dict) else {}
    if verdict.get("text"):
        parts.append(Text(_stored_text(verdict["text"]), style="bold"))
    for reason in _stored_list(data.get("reasons")):
        if isinstance(reason, dict) and reason.get("supports_verdict", True):
            text = _stored_text(reason.get("text")).split(" [evidence")[0]
            cite = reason.get("cite")
            where = f"; {rule_words(cite)}" if isinstance(cite, str) and cite else ""
            parts.append(Text(f"- {text} ({_stored_text(reason.get('source'))}{where})"))
    ranked = [o for o in _stored_list(data.get("ranked")) if isinstance(o, dict)]
    objective = _stored_text(data.get("objective"))
    if ranked:
        cols = [Col("#", "right"), Col("device"), Col("source"), Col("latency", "right"),
                Col("samples/s", "right", 2), Col("$ per 1M", "right", 1),
                Col("kind", drop=5), Col("bound", drop=4)]
        rows = []
        for i, o in enumerate(ranked, 1):
            stack = _stored_text(o.get("stack"))
            device = _stored_text(o.get("device")) + (
                "" if stack in ("eager", "jit", "-") else f" {stack}")
            latency = o.get("latency_s") if isinstance(o.get("latency_s"), dict) else {}
            rate = _stored_value(o.get("throughput_per_s"))
            rows.append([Text(str(i), "bold green" if i == 1 else ""),
                         Text(device, "bold green" if i == 1 else ""),
                         _stored_text(latency.get("source")),
                         fmt_seconds(_stored_value(latency)),
                         "-" if rate is None else fmt_num(rate),
                         _money(_stored_value(o.get("usd_per_million"))),
                         _stored_text(o.get("kind")), _stored_text(o.get("bound")) or "-"])
        batch = ranked[0].get("batch")
        parts.append(Text(""))
        parts.append(Fitted(cols, rows, wide=wide,
                            title=f"Processors ranked by {objective}"
                                  + (f" at batch {batch}" if isinstance(batch, int) else ""),
                            caption="as advised when the run was made: latency measured here "
                            "or predicted from the catalog; $ estimated (price x time); "
                            "show --json - gives the full record"))
    return Group(*parts)
