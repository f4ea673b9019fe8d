"""One contract for every stage (dlopt.contract.stage), one table of stages that the CLI, the pipeline and the report
read, one quantize rule and backend table, and the worked examples of docs/contributing.md: a stage
(tests/fixtures/stage_example.py) and a bench runtime (tests/fixtures/runtime_example.py) each added in one file."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.contract import stage as contract
from dlopt.contract.stage import STAGE_MODULES, Outcome, Stage, get_stage, stage_names, stages
from dlopt.core.errors import UnsupportedError
from dlopt.models.registry import get_spec
from dlopt.pipeline import PipelineConfig, apply
from dlopt.pipeline.config import stage_configs

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BUILT_IN = ("train", "prune", "quantize", "optimize", "export", "verify", "bench")
RULED_OUT_BY_SPEC = tuple(n for n in BUILT_IN if n != "optimize")  # optimize's search is bounded by the spec's
# prune, quantize and export capabilities (tests/test_optimize_*), it has none of its own


def _limited(stage: str) -> Any:
    """mlp's spec with `stage` ruled out, the reason in its limits (as a spec says it)."""
    from dlopt.models.spec import Stage as StageName

    spec = get_spec("mlp")
    return dataclasses.replace(spec, stages=frozenset(spec.stages) - {StageName(stage)},
                               limits={**spec.limits, stage: f"{stage} ruled out for this test"})


# -- the contract -------------------------------------------------------------------------------------------------

def test_the_table_is_every_stage_in_pipeline_order() -> None:
    assert stage_names()[:7] == BUILT_IN == tuple(STAGE_MODULES)
    assert tuple(s.name for s in stages()) == stage_names()


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_stage_keeps_the_contract(name: str) -> None:
    stage = get_stage(name)
    assert isinstance(stage, Stage) and stage.name == name and dataclasses.is_dataclass(stage.Config)
    outcome = typing.get_type_hints(type(stage).run, vars(sys.modules[type(stage).__module__]))["return"]
    assert issubclass(outcome, Outcome)  # stage, run_dir, report_path, summary: the same names everywhere
    assert {f.name for f in dataclasses.fields(outcome)} >= {"stage", "run_dir", "report_path", "summary"}
    if stage.section is not None and stage.section.keys is not None:
        fields = {f.name for f in dataclasses.fields(stage.Config)}
        assert set(stage.section.keys) <= fields  # a section only names the Config's own fields


@pytest.mark.parametrize("name", RULED_OUT_BY_SPEC)
def test_a_stage_the_spec_rules_out_is_refused_with_its_reason(name: str) -> None:
    get_stage(name).check(get_spec("mlp"))
    with pytest.raises(UnsupportedError, match=f"{name} ruled out for this test"):
        get_stage(name).check(_limited(name))


def test_the_old_calls_and_field_names_still_work() -> None:
    """Other code calls run_export / run_prune / run_quantize with their keyword arguments, and reads the outcome
    fields by their older names; both keep working beside the contract's."""
    from dlopt.bench.runner import BenchOutcome, bench  # noqa: F401 -- still importable
    from dlopt.export.stage import ExportOutcome, run_export
    from dlopt.prune.stage import run_prune
    from dlopt.quantize.stage import run_quantize
    from dlopt.train.api import train  # noqa: F401
    from dlopt.verify.stage import verify_path  # noqa: F401

    assert {"on_step", "inputs", "folder", "stage", "recorded"} <= set(inspect.signature(run_export).parameters)
    assert {"progress", "replace"} <= set(inspect.signature(run_prune).parameters)
    assert "progress" in inspect.signature(run_quantize).parameters
    export = ExportOutcome(None, None, (), stage="export", run_dir=Path("r"), report_path=Path("r/v.json"))
    bench_out = BenchOutcome({}, stage="bench", run_dir=Path("r"), report_path=Path("r/bench.json"))
    assert not hasattr(export, "report") and not hasattr(bench_out, "path")  # one name per field: report_path


# -- the pipeline reads the table: no mirror configs --------------------------------------------------------------

def test_sections_are_the_stages_own_configs() -> None:
    from dlopt.bench.config import BenchConfig
    from dlopt.export import ExportConfig

    cfg = PipelineConfig()
    assert list(cfg.sections) == [n for n in BUILT_IN if get_stage(n).section is not None]
    assert cfg.bench.batch_sizes == list(BenchConfig().batch_sizes)  # one batch default: the command's
    assert cfg.export.formats == [str(f) for f in ExportConfig().formats] and cfg.train.epochs == 0
    built = stage_configs(apply(PipelineConfig(arch="mlp"), {"train": {"epochs": 3}, "bench": {"threads": 2}}))
    assert isinstance(built["bench"], BenchConfig) and built["bench"].threads == 2
    assert built["train"].epochs == 3 and built["train"].lr is None  # 0 in the table = None, the family's default


def test_the_bench_step_runs_the_config_validation_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No second BenchConfig: the step hands bench the very object the pipeline validated."""
    from dlopt.bench import stage as bench_stage
    from dlopt.contract.target import Target
    from dlopt.core.runs import Run
    from dlopt.pipeline import steps

    seen: list[Any] = []
    monkeypatch.setattr(bench_stage, "run_bench", lambda t, c, p: seen.append(c) or
                        bench_stage.BenchOutcome({}, stage="bench", run_dir=None, report_path=tmp_path / "b.json"))
    monkeypatch.setattr(Target, "of_run", classmethod(lambda cls, run, variant=None: None))
    cfg = apply(PipelineConfig(arch="mlp"), {"bench": {"backends": ["eager"]}})
    configs = stage_configs(cfg)
    run = Run.create(tmp_path, "mlp", {"arch": "mlp"})
    ctx = steps.Context(run, cfg, get_spec("mlp"), lambda _m: None, False, configs)
    assert steps.bench(ctx) == [tmp_path / "b.json"]
    assert seen == [configs["bench"]] and seen[0] is configs["bench"]


def test_one_quantize_rule_for_the_check_the_recipes_and_the_plan() -> None:
    from dlopt.pipeline.stages import _quant_limit
    from dlopt.quantize.choose import recipes
    from dlopt.quantize.config import QBackend, QuantizeConfig
    from dlopt.quantize.recipe import unsupported
    from dlopt.quantize.stage import quantize_check

    spec = get_spec("mlp")
    spec = dataclasses.replace(spec, quant_methods=frozenset(spec.quant_methods) - {"dynamic"},
                               limits={**spec.limits, "quantize:dynamic": "no dynamic int8 for this test"})
    cfg = QuantizeConfig(method="dynamic")
    assert unsupported(spec, "dynamic") == "no dynamic int8 for this test"
    with pytest.raises(UnsupportedError, match="no dynamic int8 for this test"):
        quantize_check(cfg)(spec)
    with pytest.raises(UnsupportedError, match="no dynamic int8 for this test"):
        recipes(spec, cfg, (QBackend.ONNXRUNTIME,))
    ctx = type("Ctx", (), {"spec": spec, "cfg": apply(PipelineConfig(), {"quantize": {"method": "dynamic"}})})()
    assert _quant_limit(ctx) == "no dynamic int8 for this test"
    auto = recipes(spec, QuantizeConfig(), (QBackend.ONNXRUNTIME, QBackend.TORCH))
    assert {str(r.method) for r in auto} == {"static"}  # auto leaves out what the spec rules out


def test_the_quantize_backend_table_names_each_backend_once() -> None:
    from dlopt.quantize.config import Method, QBackend
    from dlopt.quantize.recipe import BACKENDS

    assert set(BACKENDS) == set(QBackend)
    for name, found in BACKENDS.items():
        code = found.code()  # each module has the same entry points
        assert callable(code.build_for) and set(found.offers("AUTO_METHODS")) <= set(found.offers()), name
        assert set(found.offers("CALIBRATED_METHODS")) <= {Method.STATIC}, name


# -- the worked example: a stage in one file ----------------------------------------------------------------------

@pytest.fixture
def fold(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Imports the example stage (its last line registers it), and takes it out of the table afterwards."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    module = importlib.reload(importlib.import_module("stage_example"))
    yield module
    contract.unregister_stage("fold")


def test_an_added_stage_is_in_the_table_the_pipeline_and_its_sections(fold: Any) -> None:
    from dlopt.pipeline.stages import plan

    assert stage_names() == ("train", "prune", "quantize", "optimize", "fold", "export", "verify", "bench")
    assert PipelineConfig().stages == tuple(n for n in stage_names() if n != "optimize")  # optimize is opt-in
    assert PipelineConfig().fold == {}
    cfg = apply(PipelineConfig(arch="cnn"), {"stages": ["fold", "train"], "fold": {"min_channels": 4}})
    assert cfg.stages == ("train", "fold") and stage_configs(cfg)["fold"] == fold.FoldConfig(min_channels=4)
    from dlopt.core.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean min_channels"):
        apply(PipelineConfig(), {"fold": {"min_chanels": 4}})
    with pytest.raises(ConfigError, match="fold.min_channels"):
        stage_configs(apply(PipelineConfig(arch="cnn"), {"fold": {"min_channels": 0}}))
    from dlopt.prune import PruneConfig

    with pytest.raises(ConfigError, match="reserved"):  # a variant named like the stage would take its record
        PruneConfig(name="fold")
    steps = {s.name: s for s in plan(cfg, get_spec("cnn"))}
    assert list(steps) == ["train", "fold", "evaluate", "report"] and set(steps["fold"].after) == {"train", "build"}


def test_an_added_stage_is_printed_run_resumed_and_reported_by_the_cli(fold: Any, tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["pipeline", "cnn", "--print-config"])
    assert printed.exit_code == 0, printed.output
    assert "# fold options (a stage added by tests/fixtures/stage_example.py)\n\n[fold]\nmin_channels = 1\n" \
        in printed.output
    args = ["pipeline", "cnn", "--tiny", "--stages", "fold", "--out", str(tmp_path), "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    run = next(tmp_path.glob("cnn/*/manifest.json")).parent
    summary = json.loads((run / fold.RESULT).read_text())
    assert summary["foldable"] == len(summary["layers"]) > 0  # the tiny cnn has Conv -> BatchNorm blocks
    report = json.loads((run / "report.json").read_text())
    assert {"stage": "fold", "status": "done", "summary": {"foldable": summary["foldable"]}} in report["stages"]
    again = CliRunner().invoke(app, ["pipeline", "--resume", str(run), "--json"])
    assert again.exit_code == 0, again.output
    assert {s["name"]: s["status"] for s in json.loads(again.stdout)["steps"]}["fold"] == "skipped"


# -- the worked example: a bench runtime in one file --------------------------------------------------------------

@pytest.fixture
def onnx_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's module name in RUNTIME_MODULES: the registration line (undone after the test)."""
    from dlopt.runtime import formats

    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delitem(sys.modules, "runtime_example", raising=False)
    monkeypatch.setattr(formats, "BY_BACKEND", dict(formats.BY_BACKEND))
    monkeypatch.setattr(formats, "RUNTIME_MODULES", [*formats.RUNTIME_MODULES, "runtime_example"])
    monkeypatch.setattr(formats, "_loaded", set())


def test_an_added_runtime_is_benched_on_the_runs_files(onnx_reference: None, tmp_path: Path) -> None:
    from dlopt.bench.config import BenchConfig, parse_backends

    export = CliRunner().invoke(app, ["export", "mlp", "--tiny", "--format", "onnx", "--out", str(tmp_path)])
    assert export.exit_code == 0, export.output
    run = next(tmp_path.glob("mlp/*/manifest.json")).parent
    assert parse_backends("eager,onnx-reference") == ("eager", "onnx-reference")
    assert apply(PipelineConfig(), {"bench": {"backends": ["onnx-reference"]}}).bench.backends == ["onnx-reference"]
    BenchConfig(backends=("onnx-reference",))  # validated against the runtime table, not a fixed list
    result = CliRunner().invoke(app, ["bench", str(run), "--backend", "eager,onnx-reference", "--batch-sizes", "2",
                                      "--budget-s", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r for r in json.loads((run / "bench.json").read_text())["rows"]}
    row = rows["onnx-reference:model.onnx"]
    assert row["status"] == "ok" and row["backend"] == "onnx-reference" and row["stats"]["median_ms"] > 0, row
