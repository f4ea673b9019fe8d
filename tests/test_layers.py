"""dlopt's folders are layers: an import runs only downward, and no modules or folders import each other in a circle.

What counts as an import: every `import` / `from ... import` statement in every module of dlopt/, at module
level AND inside functions (a function-level import defers loading, it is still a dependency). Relative imports
are resolved; `from pkg import name` is an edge to the submodule pkg.name when that is a module. Not counted:
the root package `dlopt` itself (its __init__ is a facade that re-exports the registry and holds __version__),
the implicit import of a parent package, and strings that importlib resolves at run time (a spec's builder
"module:attr", dlopt.models.zoo loaded by name): those are registrations.

Units are the folders of dlopt/ (dlopt.runtime.loader -> dlopt.runtime). LAYERS lists them top to bottom: a unit
may import units of lower layers, and units of its own layer only when no circle forms (the stages use each
other: quantize exports and verifies). A new folder must be placed in LAYERS before its first import is allowed.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dlopt"

# Top to bottom. cli is thin; pipeline and optimize drive the stages; the stages; what a stage works on and
# hands back (contract); the task metrics; runners of exported files (runtime); inputs and data sets; the models
# and their specs; core (runs, staging, records, trust, file I/O, errors).
LAYERS: list[set[str]] = [
    {"dlopt.__main__"},
    {"dlopt.cli"},
    {"dlopt.pipeline", "dlopt.optimize"},
    {"dlopt.train", "dlopt.prune", "dlopt.quantize", "dlopt.export", "dlopt.verify", "dlopt.bench", "dlopt.report"},
    {"dlopt.contract"},
    {"dlopt.tasks"},
    {"dlopt.runtime"},
    {"dlopt.data"},
    {"dlopt.models"},
    {"dlopt.core"},
]
STAGES = set().union(*LAYERS[:4])
KNOWN_EDGES: set[tuple[str, str]] = set()  # (importer, imported) edges of cycles not yet fixed: none


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
    return ".".join(module.split(".")[:2])


def layer(u: str) -> int | None:
    return next((i for i, names in enumerate(LAYERS) if u in names), None)


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) module edges whose imported folder sits in a higher layer than the importer's."""
    out = []
    for a, targets in graph.items():
        for b in targets:
            la, lb = layer(unit(a)), layer(unit(b))
            if unit(a) != "dlopt" and unit(a) != unit(b) and (la is None or lb is None or lb < la):
                out.append((a, b))
    return sorted(out)


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


@pytest.mark.parametrize("a,b", [("dlopt.export", "dlopt.verify"), ("dlopt.models.registry", "dlopt.models.zoo"),
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


def test_no_arrow_runs_up_a_layer(graph: dict[str, set[str]]) -> None:
    bad = upward(graph)
    assert not bad, "imports that run up a layer (or from a folder LAYERS does not place): " + ", ".join(
        f"{a} -> {b}" for a, b in bad)


def test_an_upward_import_is_caught() -> None:
    """The rule has teeth: a core module importing the registry, a model importing a stage, are both found."""
    g = import_graph({"dlopt.core.runs": "def f():\n    from dlopt.models.registry import get_spec\n",
                      "dlopt.models.checkpoint": "from dlopt.export import ExportConfig\n"})
    assert ("dlopt.core.runs", "dlopt.models.registry") in upward(g)
    assert ("dlopt.models.checkpoint", "dlopt.export") in upward(g)


def test_every_folder_has_a_layer(graph: dict[str, set[str]]) -> None:
    assert {unit(m) for m in graph} - {"dlopt"} <= set().union(*LAYERS), "place the new folder in LAYERS"


def test_no_module_loose_in_the_package() -> None:
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules loose in dlopt/ (give each a layer folder): {loose}"


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
    src = "def f():\n    from dlopt.models.registry import get_spec\n"
    g = import_graph({"dlopt.models.spec": src})
    assert "dlopt.models.registry" in g["dlopt.models.spec"]
    assert any("dlopt.models.spec" in c and "dlopt.models.registry" in c for c in cycles(g))
    g = import_graph({"dlopt.core.fileio": src.replace("models.registry", "runtime.loader"),
                      "dlopt.runtime.formats": "from dlopt.core.fileio import sha256_file\n"})
    assert any("dlopt.core" in c and "dlopt.runtime" in c for c in cycles(unit_graph(g)))


def test_relative_and_from_package_imports_resolve() -> None:
    g = import_graph({"dlopt.models.zoo.vision": "from . import table\nfrom ..checkpoint import load_checkpoint\n"})
    assert {"dlopt.models.zoo.table", "dlopt.models.checkpoint"} <= g["dlopt.models.zoo.vision"]
