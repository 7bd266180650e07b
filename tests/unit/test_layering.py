"""Every import in chipfit points down the pipeline (docs/ARCHITECTURE.md, "Layers").

The check reads the source with ``ast``, so it sees imports inside functions too (the lazy
imports that keep ``import chipfit`` cheap), which a runtime check would miss.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import chipfit

ROOT = Path(chipfit.__file__).parent

#: Lowest first. A module may import its own package and anything of a lower or equal rank;
#: equal ranks are siblings (cli and __main__). Within the {hardware, backends, discovery,
#: cost, workloads} layer the order is strict too, so the layer has no cycle.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "errors", "paths", "spec"),
    ("timing",),
    ("results",),  # a Measurement's CI comes from timing.stats
    ("hardware",),
    ("backends",),
    ("discovery",),
    ("cost",),
    ("workloads",),
    ("execute",),
    ("store",),
    ("analysis",),
    ("predictors",),  # the one predictor seam: reads shipped fits, never fits or validates
    ("pipelines",),
    ("report",),
    ("commands",),
    ("cli", "__main__", ""),  # "" is the facade, chipfit/__init__.py
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: Lower layers a package must still not import: analysis is pure (numbers in, findings out),
#: so it measures nothing, and reports render what they are given.
FORBIDDEN = {"analysis": {"backends", "discovery", "execute", "workloads", "store"},
             "report": {"execute", "pipelines", "store"},
             "predictors": {"backends", "discovery", "execute", "store"}}
#: Packages only these may import (the subcommands are the CLI's).
ONLY = {"commands": {"cli"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top(module: str) -> str:
    """The layer key of a dotted chipfit module name (``chipfit.cost.torch`` -> ``cost``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, imported chipfit module) for every import statement, at any depth."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "chipfit":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "chipfit":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if _is_module(full) else base


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that point up (or sideways into another layer)."""
    own = top(module)
    bad = []
    for line, target in imports(source, module, is_package):
        other = top(target)
        if other == own:
            continue
        if other not in RANK or own not in RANK:
            bad.append(f"{module}:{line} imports {target}: unknown layer (add it to LAYERS)")
        elif RANK[other] > RANK[own]:
            bad.append(f"{module}:{line} imports {target}, a higher layer")
        elif other in FORBIDDEN.get(own, ()) or own not in ONLY.get(other, {own}):
            bad.append(f"{module}:{line} imports {target}, which it must not")
    return bad


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        yield module_name(path), path


def import_graph() -> dict[str, set[str]]:
    """chipfit module -> the chipfit modules it imports anywhere (functions included)."""
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        found = imports(path.read_text(), module, path.name == "__init__.py")
        graph[module] = {target for _, target in found if target != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_points_down() -> None:
    bad = []
    for module, path in _modules():
        bad += violations(path.read_text(), module, path.name == "__init__.py")
    assert bad == []


def test_no_import_cycle_even_through_function_level_imports() -> None:
    assert cycles(import_graph()) == []


def test_every_package_has_a_layer() -> None:
    packages = {top(module) for module, _ in _modules()}
    assert packages <= set(RANK), packages - set(RANK)


def test_the_checker_catches_an_upward_import_inside_a_function() -> None:
    source = ("from chipfit.results import Run\n\n"
              "def f():\n    from chipfit.pipelines.bench import bench\n    return bench\n")
    assert violations(source, "chipfit.analysis.fake") == [
        "chipfit.analysis.fake:4 imports chipfit.pipelines.bench, a higher layer"]


def test_the_checker_catches_the_rules_the_layers_stand_for() -> None:
    must_not = {
        ("chipfit.analysis.fake", "import chipfit.backends.torch"): "chipfit.backends.torch",
        ("chipfit.analysis.fake", "from chipfit.execute import job"): "chipfit.execute.job",
        ("chipfit.analysis.fake", "from chipfit.discovery import discover"): "chipfit.discovery",
        ("chipfit.report.fake", "from chipfit.execute.base import Executor"): "chipfit.execute.base",
        ("chipfit", "from chipfit.commands import bench"): "chipfit.commands.bench",
        ("chipfit.report.fake", "from chipfit.pipelines.sweep import sweep"): "chipfit.pipelines.sweep",
    }
    for (module, source), target in must_not.items():
        assert [f"{module}:1 imports {target}, which it must not"] == violations(source, module)
    cases = {
        ("chipfit.store.fake", "from chipfit.report import fmt"): "chipfit.report.fmt",
        ("chipfit.pipelines.fake", "from chipfit.commands import bench"): "chipfit.commands.bench",
        ("chipfit.analysis.fake", "from ..pipelines import predict"): "chipfit.pipelines.predict",
    }
    for (module, source), target in cases.items():
        assert [f"{module}:1 imports {target}, a higher layer"] == violations(source, module)
    assert violations("from chipfit.results import Run", "chipfit.analysis.fake") == []
    assert violations("from chipfit.cost.records import OpCost", "chipfit.analysis.fake") == []
    assert violations("from chipfit.commands import bench", "chipfit.cli") == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
