"""How long ``chipfit bench --suite NAME`` takes, against issue 3's targets on a 2-core CPU.

Targets: ``--suite default`` under 5 minutes, ``--suite seeds --quick`` under 2 minutes.
Each suite runs as a user runs it (a fresh ``python -m chipfit`` process with its default
devices), so the time includes interpreter and framework start-up, discovery, model builds,
FLOP counting, the timing itself and the tables. Printed per suite: wall time, target,
points measured (ok / all), the slowest points, and (seeds) each claim's verdict.

``--cores 2`` pins the run to two CPUs (``sched_setaffinity``) to mimic a 2-core machine on a
bigger one; torch then uses two threads.

Run alone on a quiet machine:  python benchmarks/suite_time.py [--suites seeds-quick,default]
Timings taken while other work shares the CPU are not the product's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: name -> (chipfit arguments, target seconds)
SUITES = {
    "seeds-quick": (["--suite", "seeds", "--quick"], 120.0),
    "seeds": (["--suite", "seeds"], None),
    "default": (["--suite", "default"], 300.0),
    "default-quick": (["--suite", "default", "--quick"], None),
}


def _pin(cores: int | None):  # noqa: ANN202
    if not cores:
        return None
    chosen = sorted(os.sched_getaffinity(0))[:cores]
    return lambda: os.sched_setaffinity(0, chosen)


def time_suite(name: str, cores: int | None, devices: str | None) -> dict[str, object]:
    """Run one suite in a fresh process; return its wall time and what it measured."""
    args, target = SUITES[name]
    with tempfile.TemporaryDirectory(prefix="chipfit-suite-time-") as home:
        out = Path(home) / "run.json"
        cmd = [sys.executable, "-m", "chipfit", "bench", *args, "--no-save", "--json", str(out)]
        cmd += ["--devices", devices] if devices else []
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_pin(cores),
                              env=dict(os.environ, CHIPFIT_HOME=home, COLUMNS="160"))
        wall = time.perf_counter() - start
        row: dict[str, object] = {"suite": name, "wall_s": wall, "target_s": target}
        if proc.returncode != 0:
            return {**row, "error": proc.stderr.strip()[-400:]}
        return {**row, **_summary(out, name)}


def _summary(path: Path, name: str) -> dict[str, object]:
    from chipfit.analysis.suites import check_claims, get_suite
    from chipfit.report.claims import verdict_text
    from chipfit.store.runs import load_run

    run = load_run(path)
    points = sorted(run.measurements, key=lambda m: -(m.median_s if m.ok else 0))
    slowest = [f"{m.workload} {m.size} {m.mode} {m.device}: {m.median_s * 1e3:.1f} ms/call"
               for m in points[:5] if m.ok]
    suite = get_suite(name.split("-")[0])
    claims = [f"{r.claim.key}: {verdict_text(r)}" for r in check_claims(run, suite)]
    return {"ok": sum(m.ok for m in run.measurements), "points": len(run.measurements),
            "devices": sorted({m.device for m in run.measurements}), "slowest": slowest,
            "claims": claims if suite.claims else []}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="seeds-quick,default",
                        help=f"comma-separated, of: {', '.join(SUITES)}")
    parser.add_argument("--cores", type=int, help="pin the runs to this many CPUs")
    parser.add_argument("--devices", help="comma-separated devices (default: the suite's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    rows, over = [], 0
    for name in args.suites.split(","):
        if name not in SUITES:
            parser.error(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
        row = time_suite(name, args.cores, args.devices)
        rows.append(row)
        target = row["target_s"]
        verdict = "-" if target is None else ("ok" if row["wall_s"] < target else "OVER")
        over += verdict == "OVER" or "error" in row
        print(f"{name:14s} {row['wall_s']:7.1f} s  target {target or '-'}  {verdict:4s}  "
              f"{row.get('ok', '-')}/{row.get('points', '-')} points on "
              f"{', '.join(row.get('devices', []))}  {row.get('error', '')}", flush=True)
        for line in [*row.get("slowest", []), *row.get("claims", [])]:
            print(f"{'':16s}{line}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
