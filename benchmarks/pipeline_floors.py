"""Floors and sideways imports inside one package (default ``pipelines``).

    python benchmarks/pipeline_floors.py [--package pipelines] [--rev REV]

A sideways import is one module of the package importing another (at any depth, functions
included); floors are the longest chain of such imports plus one. The single-predictor
issue asked for about three floors.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sources(package: str, rev: str | None) -> dict[str, str]:
    base = f"src/chipfit/{package}"
    if rev is None:
        return {p.stem: p.read_text() for p in (ROOT / base).glob("*.py")}
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, base + "/"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    return {Path(n).stem: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT,
                                         capture_output=True, text=True, check=True).stdout
            for n in names if n.endswith(".py")}


def edges(package: str, srcs: dict[str, str]) -> dict[str, set[str]]:
    prefix = f"chipfit.{package}."
    out: dict[str, set[str]] = {m: set() for m in srcs}
    for mod, text in srcs.items():
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if n.startswith(prefix):
                    target = n[len(prefix):].split(".")[0]
                    if target in srcs and target != mod:
                        out[mod].add(target)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--package", default="pipelines")
    ap.add_argument("--rev")
    args = ap.parse_args()
    graph = edges(args.package, sources(args.package, args.rev))

    @cache
    def depth(m: str, stack: tuple[str, ...] = ()) -> int:
        if m in stack:
            return 0
        return 1 + max((depth(t, stack + (m,)) for t in graph[m]), default=0)

    floors = max(depth(m) for m in graph)
    sideways = sum(len(t) for t in graph.values())
    print(f"{args.package} at {args.rev or 'working tree'}: {len(graph)} modules, "
          f"{floors} floors, {sideways} sideways imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
