"""Estimates for the machine chipfit runs on when the catalog has no exact entry for it.

A CPU reported only as "AMD EPYC" (a cloud guest often hides the model number) matches no
catalog entry with a TDP, so it would get no energy estimate and no price. Here it gets both,
each labelled as an estimate with its basis:

- power: watts per core from the catalog's sourced CPU TDPs of the same vendor family
  (e.g. EPYC 9654 360 W / 96 cores, EPYC 7763 280 W / 64 cores), times the cores used;
- price: ``--local-price`` when given, otherwise a stated default per vCPU-hour.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_USD_PER_VCPU_HR", "LocalEstimate", "local_power", "local_price"]

# Stated default price of this machine: AWS m7g.large (2 vCPU, 8 GiB) Linux on-demand in
# us-east-1 was $0.0816/h in June 2026 (factualminds.com, "Amazon EC2 On-Demand Pricing ...
# (2026)"), i.e. $0.0408 per vCPU-hour. It is a general-purpose cloud slice, the nearest
# thing to "a few cores of a server" with a public on-demand price; --local-price overrides.
DEFAULT_USD_PER_VCPU_HR = 0.0816 / 2
DEFAULT_PRICE_BASIS = ("default $0.0408 per vCPU-hour (AWS m7g.large on-demand, us-east-1, "
                       "June 2026); --local-price sets yours")

_FAMILIES = ("epyc", "xeon", "ryzen", "threadripper", "core", "graviton", "grace", "apple")


@dataclass(frozen=True)
class LocalEstimate:
    """A figure for this machine and the words that say how it was made."""

    value: float
    basis: str


def _family(name: str) -> str:
    text = name.lower()
    return next((f for f in _FAMILIES if f in text), "")


def local_power(name: str, cores: int | None, specs: Iterable[Any]) -> LocalEstimate | None:
    """Watts for ``cores`` cores of CPU ``name``: catalog TDP per core of its family (or of
    every sourced CPU when no family member has one)."""
    if not cores:
        return None
    cpus = [s for s in specs if s.kind == "cpu" and s.tdp_w and s.cores]
    family = _family(name)
    same = [s for s in cpus if family and _family(s.name) == family] or cpus
    if not same:
        return None
    per_core = statistics.median(s.tdp_w / s.cores for s in same)
    basis = ", ".join(f"{s.key} {s.tdp_w:g} W/{s.cores}" for s in same[:4])
    return LocalEstimate(per_core * cores, f"estimated: {per_core:.2f} W per core ({basis}; "
                                           f"median TDP per core) x {cores} cores")


def local_price(threads: int | None, given: float | None,
                model: str | None = None) -> LocalEstimate | None:
    """This machine's hourly price: ``given`` (``--local-price``), else an estimate for its
    CPU ``model`` (the name the OS reports, e.g. /proc/cpuinfo's model name) per vCPU.

    Only one general-purpose rate is sourced (AWS m7g.large, Graviton3); for any other CPU
    the estimate says that it is that stand-in, naming the model it read, so the basis is
    never mistaken for a price of this CPU."""
    if given is not None:
        return LocalEstimate(given, "given (--local-price)")
    if not threads:
        return None
    name = " ".join((model or "").split())[:80] or "an unreported CPU model"
    value = DEFAULT_USD_PER_VCPU_HR * threads
    if _family(name) == "graviton":
        return LocalEstimate(value, f"estimated: {threads} vCPU x {DEFAULT_PRICE_BASIS}")
    return LocalEstimate(value, f"estimated: {threads} vCPU of {name} x $0.0408 per vCPU-hour, "
                         "a stand-in (the only sourced general-purpose rate is AWS m7g.large, "
                         "Graviton3, us-east-1, June 2026; none is sourced for this CPU, whose "
                         "instances usually cost more); --local-price sets yours")
