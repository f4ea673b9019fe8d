"""The pipeline derives from one stage table (dlopt.pipeline.stages): a stage added to TABLE, and nowhere else,
is a `stages` name, a validated [section], a planned step with its ledger dependencies, a --print-config section,
and runs and resumes in a real pipeline run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import ConfigError
from dlopt.models.registry import get_spec
from dlopt.pipeline import PipelineConfig, apply, run_pipeline
from dlopt.pipeline import stages as table
from dlopt.pipeline.config import validate
from dlopt.pipeline.stages import VARIANTS, StageDef, StepDef, default_stages, plan, stage_names


@dataclass(frozen=True)
class DistillSection:
    temperature: float = 2.0


def _check(cfg: Any) -> None:
    if cfg.distill.temperature <= 0:
        raise ConfigError(f"distill.temperature = {cfg.distill.temperature}: must be above 0")


def _distill(ctx: Any) -> list[Path]:
    out = ctx.path("distilled", "note.txt")
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"temperature {ctx.cfg.distill.temperature}\n")
    return [out]


DISTILL = StageDef("distill", (
    StepDef("distill", _distill, lambda c: dataclasses.asdict(c.cfg.distill), lambda c: [c.path("model.safetensors")],
            makes=("distilled",), uses=("fp32",)),
), DistillSection, build=_check, comment="distillation options (a stage added by a test)")


@pytest.fixture
def with_distill(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = list(table.TABLE)
    rows.insert([s.name for s in rows].index("export"), DISTILL)
    monkeypatch.setattr(table, "TABLE", tuple(rows))


def test_default_table_is_what_the_pipeline_takes() -> None:
    assert PipelineConfig().stages == default_stages() == ("train", "prune", "quantize", "export", "verify", "bench")
    assert stage_names() == ("train", "prune", "quantize", "optimize", "export", "verify", "bench")  # optimize: opt-in
    assert list(PipelineConfig().sections) == [s.name for s in table.table() if s.section is not None]


def test_ledger_dependencies_come_from_makes_and_uses() -> None:
    steps = {s.name: s for s in plan(PipelineConfig(), get_spec("lenet5"))}
    makers = {d.name for st in table.table() for d in st.steps if set(d.makes) & set(VARIANTS)}
    assert set(steps["prune"].after) == {"train", "build"}
    assert steps["quantize-pruned"].after == ("prune",) and steps["export-pruned"].after == ("prune",)
    assert set(steps["evaluate"].after) == set(steps["bench"].after) == makers
    assert steps["report"].after == tuple(n for n in steps if n != "report") and steps["report"].always


def test_the_stages_option_help_names_the_table() -> None:
    """The help text is written out (the CLI does not import the pipeline to start): it must name the table."""
    import typer.main

    command = typer.main.get_command(app).commands["pipeline"]
    option = next(p for p in command.params if "--stages" in p.opts)
    assert "Comma list of " + ",".join(stage_names()) + " " in option.help


def test_an_added_stage_is_a_stage_name_and_a_section(with_distill: None) -> None:
    assert PipelineConfig().stages == ("train", "prune", "quantize", "distill", "export", "verify", "bench")
    cfg = apply(PipelineConfig(), {"distill": {"temperature": 3}})
    assert cfg.distill == DistillSection(3.0) and cfg.to_json()["distill"] == {"temperature": 3.0}
    with pytest.raises(ConfigError, match="did you mean temperature"):
        apply(PipelineConfig(), {"distill": {"temprature": 1.0}})
    with pytest.raises(ConfigError, match="wrong type"):
        apply(PipelineConfig(), {"distill": {"temperature": "hot"}})
    with pytest.raises(ConfigError, match="must be above 0"):
        validate(apply(PipelineConfig(), {"distill": {"temperature": -1.0}}))
    assert apply(PipelineConfig(), {"stages": ["distill", "train"]}).stages == ("train", "distill")


def test_an_added_stage_is_planned_with_its_dependencies(with_distill: None) -> None:
    spec = get_spec("lenet5")
    steps = {s.name: s for s in plan(PipelineConfig(), spec)}
    assert list(steps).index("distill") == list(steps).index("quantize-pruned") + 1
    assert set(steps["distill"].after) == {"train", "build"} and "distill" in steps["report"].after
    assert "distill" not in steps["evaluate"].after  # it makes no model variant
    assert "distill" not in {s.name for s in plan(apply(PipelineConfig(), {"stages": ["train"]}), spec)}


def test_an_added_stage_is_printed_by_print_config(with_distill: None) -> None:
    result = CliRunner().invoke(app, ["pipeline", "lenet5", "--print-config"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "# distillation options (a stage added by a test)\n\n[distill]\ntemperature = 2.0\n" in text
    assert '"distill"' in text.splitlines()[1]  # stages = [...]


def test_an_added_stage_runs_and_resumes(with_distill: None, tmp_path: Path) -> None:
    cfg = apply(PipelineConfig(arch="lenet5", tiny=True), {"stages": ["distill"], "distill": {"temperature": 0.5}})
    first = run_pipeline(validate(cfg), tmp_path)
    status = {s.name: s.status for s in first.steps}
    assert status == {"build": "ran", "distill": "ran", "evaluate": "ran", "report": "ran"}, first.steps
    assert (Path(first.run_dir) / "distilled" / "note.txt").read_text() == "temperature 0.5\n"
    again = run_pipeline(cfg, tmp_path, resume=Path(first.run_dir))
    assert {s.name: s.status for s in again.steps}["distill"] == "skipped"
    changed = run_pipeline(apply(cfg, {"distill": {"temperature": 0.7}}), tmp_path, resume=Path(first.run_dir))
    assert {s.name: (s.status, s.reason) for s in changed.steps}["distill"] == ("ran", "its configuration changed")


def test_every_step_name_is_reserved_for_variants() -> None:
    """dlopt.contract.names cannot import the table, so RESERVED_NAMES is checked against it here: a variant
    named like a step would take that step's record in the manifest."""
    from dlopt.contract.names import RESERVED_NAMES

    assert {d.name for s in table.table() for d in s.steps} | set(stage_names()) <= RESERVED_NAMES
