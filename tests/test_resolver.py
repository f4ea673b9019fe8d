"""One resolver: dlopt/contract/target.py alone decides what a name is, and every stage takes a Target.

The structural tests read the source, so a stage that grows its own name parsing again (a `_precheck` looking at
`opts.name`, a `Path(name).is_dir()`, its own `resolve_target`) fails here; the others check `locate` itself and
that a stage's support check runs before any run directory is made, for a checkpoint as well as a name.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from dlopt.contract.target import Kind, Located, Target, TargetOptions, locate, resolve_target
from dlopt.core.errors import UnsupportedError, UsageError
from dlopt.models.checkpoint import save_checkpoint
from dlopt.models.registry import create_model, get_spec, make_model_config

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dlopt"
RESOLVER = PKG / "contract" / "target.py"
STAGES = [("dlopt.export.stage", "run_export"), ("dlopt.prune.stage", "run_prune"),
          ("dlopt.quantize.stage", "run_quantize"), ("dlopt.bench.runner", "bench")]
NAMING_FIELDS = {"name", "checkpoint", "run", "open_run"}  # what says which model a TargetOptions means
RESOLVING = {"resolve_target", "locate", "open_located", "resolve_run", "get_spec", "is_artifact"}


def _sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text()) for p in sorted(PKG.rglob("*.py")) if p != RESOLVER}


def _options_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters typed as options only (a `Target | TargetOptions` one is a resolved Target once `as_target` ran)."""
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    text = {a.arg: ast.unparse(a.annotation) for a in args if a.annotation is not None}
    return {a for a, t in text.items() if "TargetOptions" in t and not re.search(r"\bTarget\b", t)}


def naming_reads(tree: ast.Module) -> list[str]:
    """`opts.name`-like reads of a TargetOptions parameter: deciding what the name is, outside dlopt/contract/target.py."""
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and (params := _options_params(fn)):
            out += [f"{fn.name}: {ast.unparse(node)}" for node in ast.walk(fn) if isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name) and node.value.id in params and node.attr in NAMING_FIELDS]
    return out


def test_only_the_resolver_reads_what_a_target_names():
    found = {str(p.relative_to(ROOT)): bad for p, tree in _sources().items() if (bad := naming_reads(tree))}
    assert not found, f"decide what a name is in dlopt/contract/target.py (locate), not here: {found}"


def test_the_scan_sees_a_stage_parsing_names():
    """The rule above is not vacuous: the old prune precheck, as it was written, is caught."""
    old = ast.parse('def _precheck(opts: TargetOptions, cfg: PruneConfig) -> None:\n'
                    '    name = opts.name\n'
                    '    if name and opts.checkpoint is None and not Path(name).exists():\n'
                    '        check_supported(get_spec(name), cfg)\n')
    assert naming_reads(old) == ["_precheck: opts.name", "_precheck: opts.checkpoint"]


@pytest.mark.parametrize("module,fn", STAGES)
def test_every_stage_takes_a_target_and_resolves_nothing(module, fn):
    func = getattr(importlib.import_module(module), fn)
    first = next(iter(inspect.signature(func).parameters.values()))
    assert re.search(r"\bTarget\b", str(first.annotation)), f"{fn}({first.name}: {first.annotation})"
    tree = ast.parse(Path(inspect.getfile(func)).read_text())
    calls = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}
    assert not calls & RESOLVING, f"{module} resolves its own target: {sorted(calls & RESOLVING)}"


def test_the_pipeline_passes_its_open_run():
    """The pipeline's steps hand their Run over as a Target: no name (or path) is turned back into a run."""
    text = (PKG / "pipeline" / "steps.py").read_text()
    assert "TargetOptions" not in text and "Target.of_run(ctx.run" in text


def _record(tmp_path: Path, arch: str) -> Path:
    spec = get_spec(arch)
    cfg = make_model_config(spec, tiny=True)
    return save_checkpoint(create_model(spec, cfg), spec, cfg, tmp_path / "ck" / f"{arch}.json")


def test_locate_names_each_kind_without_making_a_run(tmp_path):
    root = tmp_path / "runs"
    assert locate(TargetOptions(name="mlp", root=root)) == Located(Kind.ARCH, name="mlp", spec=get_spec("mlp"))
    record = _record(tmp_path, "mlp")
    record.with_suffix(".safetensors").write_bytes(b"not weights")  # the spec comes from the record alone
    found = locate(TargetOptions(name=str(record), root=root))
    assert (found.kind, found.path, found.spec.name) == (Kind.CHECKPOINT, record, "mlp")
    assert locate(TargetOptions(name="out/model.onnx", root=root)).kind == Kind.ARTIFACT
    assert not root.exists()
    with pytest.raises(UsageError, match="exported file"):  # a stage other than bench/verify refuses one
        resolve_target(TargetOptions(name="out/model.onnx", root=root))
    run = resolve_target(TargetOptions(name="mlp", tiny=True, root=root)).run
    assert locate(TargetOptions(name=str(run.path))).kind == Kind.RUN
    latest = locate(TargetOptions(root=root))
    assert (latest.kind, latest.path) == (Kind.LATEST, run.path)
    assert Target.of_run(run).checkpoint == run.path / "model.json"


def test_a_checkpoint_the_stage_cannot_take_makes_no_run(tmp_path):
    """The support check runs on the record's spec before the new run is created (it used to run after)."""
    from dlopt.prune import PruneConfig
    from dlopt.prune.stage import prune_check, run_prune

    record = _record(tmp_path, "perceptron")
    root = tmp_path / "runs"
    with pytest.raises(UnsupportedError, match="perceptron cannot be pruned"):
        resolve_target(TargetOptions(checkpoint=record, root=root), prune_check(PruneConfig()))
    with pytest.raises(UnsupportedError, match="perceptron cannot be pruned"):
        run_prune(TargetOptions(name=str(record), root=root), PruneConfig())
    assert not root.exists()
