"""The seed articles' claims beside this machine's measurements: words and a rich table.

:func:`verdict_text` turns a :class:`~chipfit.analysis.suites.ClaimResult` into the sentence a user
reads ("holds", "does not hold: CPU 3.6x slower than claimed", "not testable here: no GPU");
:func:`measured_text` says what was measured. Only these functions choose words.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from chipfit.analysis.suites import FAILS, HOLDS, ClaimResult
from chipfit.report.fmt import fmt_rate, fmt_seconds

__all__ = ["claims_table", "measured_text", "verdict_text"]

_KIND = {"cpu": "CPU", "gpu": "GPU", "tpu": "TPU"}


def _k(kind: str) -> str:
    return _KIND.get(kind, kind)


def _x(factor: float | None) -> str:
    return f"{factor:.1f}x" if factor is not None else "?x"


def _untestable(result: ClaimResult) -> str:
    code, _, rest = result.reason.partition(":")
    if code == "no_rates":
        return "no FLOP/s to compare"
    if code.startswith("no_") and not rest:
        return f"no {_k(code[3:])}"
    if code == "missing":
        return f"workload {rest} is not installed"
    if code == "not_measured":
        return f"nothing measured on a {_k(rest)}"
    if code == "failed":
        status, _, kind = rest.partition(":")
        return f"the {_k(kind)} run failed ({status})"
    return result.reason or "unknown"


def _fails(result: ClaimResult) -> str:
    claim, code = result.claim, result.reason.partition(":")[0]
    kind, versus, x = _k(claim.kind), _k(claim.versus), _x(result.factor)
    if claim.test == "latency":
        return f"{kind} {x} {'slower' if code == 'slower' else 'faster'} than claimed"
    if claim.test == "speedup":
        ratio = result.measured or 0.0
        return f"{kind} {ratio:.1f}x faster than the {versus}, not ~{claim.value:g}x"
    if code == "reversed":
        return f"the {kind} is {x} slower than the {versus}"
    if claim.test == "speedup_at_most":
        return f"{kind} {result.measured:.1f}x faster, beyond the claimed up to {claim.value:g}x"
    if claim.test == "copies_dominate":
        return f"copies take {x} less time than the computation"
    if claim.test == "highest_rate":
        mine = dict(result.detail).get("workload", claim.experiment)
        return f"{result.reason.partition(':')[2]} reaches {x} the {mine}'s FLOP/s on the {kind}"
    return result.reason


def verdict_text(result: ClaimResult) -> str:
    """``holds``, ``does not hold: <why>`` or ``not testable here: <why>``."""
    if result.status == HOLDS:
        return "holds"
    if result.status == FAILS:
        return f"does not hold: {_fails(result)}"
    return f"not testable here: {_untestable(result)}"


def measured_text(result: ClaimResult) -> str:
    """The figure the verdict rests on, with the devices it came from."""
    if result.measured is None:
        return "-"
    claim, value = result.claim, result.measured
    if claim.test == "latency":
        figure = f"{fmt_seconds(value)} on the {_k(claim.kind)}"
    elif claim.test == "copies_dominate":
        figure = f"copies {value:.2f}x the compute time"
    elif claim.test == "highest_rate":
        figure = f"{dict(result.detail).get('workload', claim.experiment)} " \
                 f"{fmt_rate(value, 'FLOP/s')}"
    elif value >= 1:
        figure = f"{_k(claim.kind)} {value:.2f}x faster than the {_k(claim.versus)}"
    else:
        figure = f"{_k(claim.kind)} {1 / value:.2f}x slower than the {_k(claim.versus)}"
    source = dict(result.detail).get("source", "")
    return f"{figure}\n({', '.join(result.devices)})" + (f"\n{source}" if source else "")


_STYLE = {HOLDS: "green", FAILS: "red"}


def claims_table(results: Sequence[ClaimResult], run_id: str = "") -> Table:
    """One row per claim: its words and source, what was measured here, and the verdict."""
    title = "The seeds' claims on this machine" + (f" (run {run_id})" if run_id else "")
    # Claims this machine cannot test (no GPU, no TPU) take one line, not a row each.
    untestable = [r for r in results if verdict_text(r).startswith("not testable here")]
    results = [r for r in results if r not in untestable]
    why = sorted({verdict_text(r).removeprefix("not testable here: ") for r in untestable})
    more = (f" {len(untestable)} more claim(s) not testable here: {'; '.join(why)}."
            if untestable else "")
    table = Table(title=title, title_justify="left", show_lines=True,
                  caption="Claims quoted from the seed articles (translated); every figure "
                          "measured here. ~ claims hold within the factor shown." + more
                          + " Source: seed 000 to 003, the four articles on CPU vs GPU vs TPU "
                          "that chipfit's rules come from.",
                  caption_justify="left")
    table.add_column("claim", overflow="fold", ratio=3)
    table.add_column("source", overflow="fold")
    table.add_column("measured here", overflow="fold", ratio=2)
    table.add_column("verdict", overflow="fold", ratio=2)
    for r in results:
        tolerance = f" (within {r.claim.tolerance:g}x)" if r.claim.tolerance > 1 else ""
        table.add_row(r.claim.quote + tolerance, "seed " + r.claim.source.rsplit("/", 1)[-1][:3],
                      measured_text(r), Text(verdict_text(r), style=_STYLE.get(r.status, "yellow")))
    return table
