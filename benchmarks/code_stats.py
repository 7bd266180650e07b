"""Size and shape of chipfit's source: modules, lines per file and per function, import graph.

Reads the source with ``ast`` (nothing is imported or run), so it works on any checkout::

    python benchmarks/code_stats.py                 # this checkout's src/chipfit
    python benchmarks/code_stats.py --rev 391a3d4   # a git revision of it (via git archive)

Lines are physical lines of the file (or of the function, decorators excluded, nested
functions counted inside their parent and again on their own). The import graph counts every
import of a chipfit module, module level and inside functions, folded to the top-level
package (``chipfit.cost.torch`` -> ``cost``).
"""

from __future__ import annotations

import argparse
import ast
import io
import statistics
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sources(rev: str | None) -> Iterator[tuple[str, str]]:
    """(path relative to src/, text) of every module under src/chipfit."""
    if rev is None:
        for path in sorted((ROOT / "src" / "chipfit").rglob("*.py")):
            yield str(path.relative_to(ROOT / "src")), path.read_text(encoding="utf-8")
        return
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/chipfit"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(".py"):
                text = tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
                yield member.name.removeprefix("src/"), text


def _quantiles(values: list[int]) -> tuple[float, float]:
    """Median and 90th percentile (inclusive method; exact for small samples)."""
    if len(values) < 2:
        return (float(values[0]), float(values[0])) if values else (0.0, 0.0)
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values), deciles[8]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(facade)"


def _module_name(path: str) -> str:
    name = path.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def _imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("chipfit"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chipfit"):
            yield node.module  # type: ignore[misc]


def stats(rev: str | None = None) -> dict[str, object]:
    """Module count, lines per file and per function, and the package import graph."""
    file_lines: list[int] = []
    function_lines: list[int] = []
    graph: dict[str, set[str]] = {}
    for path, text in _sources(rev):
        tree = ast.parse(text)
        file_lines.append(len(text.splitlines()))
        function_lines += [node.end_lineno - node.lineno + 1  # type: ignore[operator]
                           for node in ast.walk(tree)
                           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        own = _package(_module_name(path))
        edges = graph.setdefault(own, set())
        edges.update(p for p in map(_package, _imports(tree)) if p != own)
    return {"modules": len(file_lines), "lines": sum(file_lines),
            "file_lines": _quantiles(file_lines), "functions": len(function_lines),
            "function_lines": _quantiles(function_lines), "graph": graph}


def render(result: dict[str, object], label: str) -> str:
    med_f, p90_f = result["file_lines"]  # type: ignore[misc]
    med_fn, p90_fn = result["function_lines"]  # type: ignore[misc]
    lines = [f"{label}: {result['modules']} modules, {result['lines']} lines, "
             f"{result['functions']} functions",
             f"  lines per file: median {med_f:g}, p90 {p90_f:g}",
             f"  lines per function: median {med_fn:g}, p90 {p90_fn:g}",
             "  imports (package -> packages it imports, functions included):"]
    graph: dict[str, set[str]] = result["graph"]  # type: ignore[assignment]
    for package in sorted(graph):
        lines.append(f"    {package:12s} -> {', '.join(sorted(graph[package])) or '-'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a git revision instead of the working tree")
    args = parser.parse_args()
    print(render(stats(args.rev), args.rev or "working tree"))


if __name__ == "__main__":
    main()
