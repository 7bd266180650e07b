"""The prediction bands by stratum: how far each kind of prediction is trusted, and how many
of the project's own out-of-fit cases its band actually holds (``chipfit validate``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chipfit.report.layout import Col, Fitted

__all__ = ["STRATA_WORDS", "bands_table"]

#: What each stratum means, in words a reader can check.
STRATA_WORDS = {
    "gpu-in-data": "a GPU of the kernel data",
    "gpu-unseen-fitted-generation": "unseen GPU, fitted architecture",
    "gpu-newer-architecture": "unseen newer NVIDIA architecture",
    "gpu-other-vendor": "another vendor's GPU",
    "roofline-only": "roofline only (no architecture figures)",
    "catalog-cpu": "a catalog CPU",
    "engine": "a fused inference engine stack",
    "llm": "a language model (chipfit llm)",
}


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.0f}%"


def bands_table(strata: Mapping[str, Mapping[str, Any]], wide: bool = False) -> Any:
    """One row per stratum: the band, its out-of-fit cases and their coverage."""
    cols = [Col("stratum"), Col("band", "right"), Col("cases", "right"),
            Col("inside", "right"), Col("inside, LOO", "right", 1), Col("what", drop=2)]
    rows = [[name, f"x/÷{1 + float(e['band']):.2f}", str(e.get("cases") or 0),
             _pct(e.get("coverage")), _pct(e.get("loo_coverage")), STRATA_WORDS.get(name, "")]
            for name, e in strata.items()]
    return Fitted(cols, rows, wide=wide, title="Prediction bands by stratum (target: 80% inside)",
                  caption="inside: share of the stratum's out-of-fit cases within the band; LOO: "
                  "each case against the band of the others; 0 cases: an assumed band "
                  "(benchmarks/bands.py says which)")
