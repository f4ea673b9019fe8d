"""dlopt's import graph has no cycles, and the core imports no stage.

What counts as an import: every `import` / `from ... import` statement in every module of dlopt/, at module
level AND inside functions (a function-level import defers loading, it is still a dependency). Relative imports
are resolved; `from pkg import name` is an edge to the submodule pkg.name when that is a module. Not counted:
the root package `dlopt` itself (its __init__ is a facade that re-exports the registry and holds __version__),
the implicit import of a parent package, and strings that importlib resolves at run time (a spec's builder
"module:attr", dlopt.runtimes' writer/loader names, dlopt.zoo loaded by name): those are registrations.

Units: a module of a subpackage belongs to the subpackage (dlopt.export.onnx -> dlopt.export); a top-level module
is its own unit (dlopt.registry). Three rules: no cycle between modules; no cycle between units; no core unit
imports a stage. An edge in KNOWN_EDGES is a cycle edge not yet fixed (each names the owner's file and the fix):
the test fails when a new cycle appears AND when a listed edge is gone (so the list only shrinks, and stays true).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dlopt"

# The stages (and the entry points above them): a core unit imports none of these.
STAGES = {"dlopt.train", "dlopt.prune", "dlopt.quantize", "dlopt.export", "dlopt.verify", "dlopt.bench",
          "dlopt.pipeline", "dlopt.report", "dlopt.evaluate", "dlopt.cli", "dlopt.__main__"}
# The artifact runtime (the format table, load and run an exported file, trust it, time-limit it, quiet its
# warnings, OpenVINO's runner): one unit below export, verify and bench. Four of its modules still sit in
# dlopt/export/ (moving them is pending: others own them this session); being a unit of its own, verify may use
# it without importing the export stage, and a test below checks that it imports no export writer.
ARTIFACT_RUNTIME = {"dlopt.runtimes", "dlopt.openvino_rt", "dlopt.export.runtime", "dlopt.export.archive",
                    "dlopt.export.interrupt", "dlopt.export.quiet"}
# (importer, imported) edges of cycles still in the tree, with the fix each needs:
KNOWN_EDGES = {
    # #17's width table (in progress): widths.refine imports width_table, which takes widths' constants; they
    # belong in a module both import (dlopt/prune/widths.py, width_table.py)
    ("dlopt.prune.widths", "dlopt.prune.width_table"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_pkg: bool, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
    out = []
    for name in names:
        while name not in modules and "." in name:  # dlopt.x.func -> dlopt.x
            name = name.rsplit(".", 1)[0]
        if name in modules and name not in ("dlopt", module):
            out.append(name)
    return out


def import_graph(sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module -> the dlopt modules it imports (module level and inside functions). `sources` overrides files."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        text = (sources or {}).get(module) or path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(module, node, path.name == "__init__.py", modules))
    return graph


def unit(module: str) -> str:
    if module in ARTIFACT_RUNTIME:
        return "dlopt.artifact-runtime"
    return ".".join(module.split(".")[:2])


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        out[unit(a)].update(unit(b) for b in targets if unit(b) != unit(a))
    return dict(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in KNOWN_EDGES} for a, targets in graph.items()}


def _describe(graph: dict[str, set[str]], comps: list[list[str]]) -> str:
    return "\n".join(f"cycle {comp}: " + ", ".join(f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp)
                     for comp in comps)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_known_edges_still_exist(graph: dict[str, set[str]]) -> None:
    gone = [edge for edge in KNOWN_EDGES if edge[1] not in graph.get(edge[0], set())]
    assert not gone, f"fixed, take them out of KNOWN_EDGES: {gone}"


def test_no_module_cycles(graph: dict[str, set[str]]) -> None:
    g = _without_known(graph)
    assert not cycles(g), _describe(g, cycles(g))


def test_no_package_cycles(graph: dict[str, set[str]]) -> None:
    g = unit_graph(_without_known(graph))
    assert not cycles(g), _describe(g, cycles(g))


@pytest.mark.parametrize("a,b", [("dlopt.export", "dlopt.verify"), ("dlopt.registry", "dlopt.zoo"),
                                 ("dlopt.train.api", "dlopt.train.distributed")])
def test_named_cycles_of_issue_18_are_gone(graph: dict[str, set[str]], a: str, b: str) -> None:
    """No path back from b to a (modules or units), whichever way the one-way edge points; known edges included."""
    g = graph if a.count(".") > 1 else unit_graph(graph)

    def reaches(src: str, dst: str) -> bool:
        seen, todo = set(), [src]
        while todo:
            v = todo.pop()
            if v == dst:
                return True
            if v not in seen:
                seen.add(v)
                todo.extend(g.get(v, ()))
        return False

    assert not (reaches(a, b) and reaches(b, a)), f"{a} and {b} import each other"


def test_artifact_runtime_imports_no_writer(graph: dict[str, set[str]]) -> None:
    bad = sorted((a, b) for a in ARTIFACT_RUNTIME for b in _without_known(graph)[a] if unit(b) in STAGES)
    assert not bad, "the artifact runtime imports a stage: " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_core_imports_no_stage(graph: dict[str, set[str]]) -> None:
    bad = sorted((a, b) for a, targets in _without_known(graph).items() if unit(a) not in STAGES
                 for b in targets if unit(b) in STAGES)
    assert not bad, "core modules importing a stage: " + ", ".join(f"{a} -> {b}" for a, b in bad)


# Training is imported by the train command, the pipeline (it runs the train stage) and pruning's fine-tuning.
TRAINS = ("dlopt.train", "dlopt.cli", "dlopt.pipeline", "dlopt.prune.finetune")


def training_importers(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Modules outside TRAINS that import dlopt.train: a stage measuring a model uses dlopt.tasks instead."""
    return sorted((a, b) for a, targets in graph.items() if not a.startswith(TRAINS)
                  for b in targets if unit(b) == "dlopt.train")


def test_stages_measure_models_through_tasks_not_training(graph: dict[str, set[str]]) -> None:
    assert not training_importers(graph), training_importers(graph)
    broken = import_graph({"dlopt.verify.realdata": "def f():\n    from dlopt.train.family import Family\n"})
    assert training_importers(broken) == [("dlopt.verify.realdata", "dlopt.train.family")]


def test_function_level_imports_count() -> None:
    """The graph sees an import inside a function, and a cycle made of one is found (the rules have teeth)."""
    src = "def f():\n    from dlopt.registry import get_spec\n"
    g = import_graph({"dlopt.spec": src})
    assert "dlopt.registry" in g["dlopt.spec"]
    assert any("dlopt.spec" in c and "dlopt.registry" in c for c in cycles(g))
    assert any("dlopt.spec" in c for c in cycles(unit_graph(g)))


def test_relative_and_from_package_imports_resolve() -> None:
    g = import_graph({"dlopt.zoo.vision": "from . import table\nfrom ..checkpoint import load_checkpoint\n"})
    assert {"dlopt.zoo.table", "dlopt.checkpoint"} <= g["dlopt.zoo.vision"]
