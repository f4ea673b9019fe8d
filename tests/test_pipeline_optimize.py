"""optimize is an opt-in pipeline stage: off by default, on when `stages` names it; its pick is benched with the
other variants in one bench run and the ship pick weighs it on those numbers; resume reruns it only when its model or
options changed, and then on a study of its own (never on the trials of the model it replaced)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import ConfigError
from dlopt.models.registry import get_spec
from dlopt.pipeline import PipelineConfig, apply, run_pipeline
from dlopt.pipeline.stages import plan

ON = """
stages = ["train", "prune", "optimize", "export", "bench"]
[train]
epochs = 1
[prune]
ratio = 0.3
finetune_epochs = 0
[optimize]
trials = 2
runtimes = ["onnxruntime"]
threads = [1]
finetune_epochs = 1
[export]
formats = ["onnx"]
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
threads = 1
budget_s = 1.0
"""


def _steps(outcome) -> dict[str, str]:
    return {s.name: s.status for s in outcome.steps}


def test_optimize_is_off_unless_stages_names_it() -> None:
    spec = get_spec("mlp")
    assert "optimize" not in PipelineConfig().stages
    assert "optimize" not in {s.name for s in plan(PipelineConfig(), spec)}
    on = apply(PipelineConfig(), {"stages": ["optimize", "train", "bench"]})
    steps = {s.name: s for s in plan(on, spec)}
    assert on.stages == ("train", "optimize", "bench") and "optimize" in steps
    assert "optimize" in steps["bench"].after and "optimize" in steps["evaluate"].after  # its pick is a variant
    with pytest.raises(ConfigError, match="did you mean trials"):
        apply(PipelineConfig(), {"optimize": {"trails": 8}})


def test_help_and_print_config_say_how_to_turn_it_on() -> None:
    helped = CliRunner().invoke(app, ["pipeline", "--help"])
    assert helped.exit_code == 0 and "optimize" in helped.output
    assert "when named" in " ".join(helped.output.split())
    printed = CliRunner().invoke(app, ["pipeline", "mlp", "--print-config"])
    assert '# off unless stages names it: add "optimize" to stages' in printed.output
    assert "\n[optimize]\n" in printed.output and '"optimize"' not in printed.output.splitlines()[1]


@pytest.fixture(scope="module")
def optimized(tmp_path_factory) -> tuple[Path, PipelineConfig]:
    root = tmp_path_factory.mktemp("pipeline-optimize")
    cfg = apply(PipelineConfig(arch="mlp", tiny=True), tomllib.loads(ON))
    outcome = run_pipeline(cfg, root, show_bars=False)
    assert not outcome.failed, outcome.steps
    assert _steps(outcome)["optimize"] == "ran" and _steps(outcome)["prune"] == "ran"  # beside prune, not instead
    return Path(outcome.run_dir), cfg


def test_the_pick_is_benched_with_the_others_and_weighed_by_the_ship_pick(optimized) -> None:
    run, _ = optimized
    picked = json.loads((run / "optimized" / "optimize_report.json").read_text())
    shipped = picked["shipped"]
    bench = json.loads((run / "bench.json").read_text())
    rows = {r["artifact"]: r for r in bench["rows"] if r["status"] == "ok"}
    assert shipped[0] in rows and "pruned/model.onnx" in rows  # the pick's file, timed beside prune's
    assert rows[shipped[0]]["precision"] == picked["pick"]["candidate"]["precision"]
    assert {r["measured"] for r in bench["rows"]} == {bench["created"]}  # one bench run, one time for all rows
    assert {r["threads"] for r in bench["rows"]} == {1}
    report = json.loads((run / "report.json").read_text())
    row = next(r for r in report["rows"] if r["path"] == shipped[0])
    assert row["variant"] == "optimized" and row["metric"] is not None
    assert row["latency"]["1"]["p50"] == rows[shipped[0]]["stats"]["median_ms"]  # the bench's number, not optimize's
    ship = report["ship"]  # the pick, left out with a reason, or passed and slower than the pick
    excluded = {e["label"] for e in ship["excluded"]}
    assert row["label"] in {ship["label"], *excluded} or ship["pick"]["p50_ms"] <= row["latency"]["1"]["p50"], ship


def _resume(run: Path, cfg: PipelineConfig, changes: dict) -> dict:
    """Resume with `changes`; what the optimize step's search did (its trials run, those it found done)."""
    outcome = run_pipeline(apply(cfg, changes), run.parent.parent, resume=run, show_bars=False)
    assert not outcome.failed, outcome.steps
    assert _steps(outcome)["optimize"] == _steps(outcome)["bench"] == "ran", outcome.steps
    return json.loads((run / "optimized" / "optimize_report.json").read_text())["search"]


def test_resume_continues_the_study_only_for_the_same_model_and_search(optimized) -> None:
    run, cfg = optimized
    again = run_pipeline(cfg, run.parent.parent, resume=run, show_bars=False)
    assert _steps(again)["optimize"] == "skipped" and _steps(again)["bench"] == "skipped", again.steps
    more = _resume(run, cfg, {"optimize": {"trials": 3}})  # as a search killed after 2 trials resumes
    assert (more["finished_before"], more["ran"]) == (2, 1), more
    cfg = apply(cfg, {"optimize": {"trials": 3}})
    goal = _resume(run, cfg, {"optimize": {"max_drop": 5.0}})  # another goal: a new study, not a refusal
    assert (goal["finished_before"], goal["ran"]) == (0, 3), goal
    retrained = _resume(run, cfg, {"train": {"epochs": 2}})  # no trial of the replaced model reused
    assert (retrained["finished_before"], retrained["ran"]) == (0, 3), retrained


def test_the_pipelines_inputs_reach_a_stage_config_that_takes_them(monkeypatch, tmp_path):
    """--inputs FILE.npz: optimize calibrates and judges on the user's samples, as quantize and bench do."""
    import types

    from dlopt.contract import stage as contract
    from dlopt.contract import target as target_mod
    from dlopt.optimize.pipeline_stage import OptimizeStageConfig
    from dlopt.pipeline import stages

    seen = []
    monkeypatch.setattr(contract.get_stage("optimize"), "run", lambda _t, cfg, _p=None: seen.append(cfg) or
                        types.SimpleNamespace(outputs=(), report_path=None))
    monkeypatch.setattr(target_mod.Target, "of_run", staticmethod(lambda run: run))
    for given in ("my.npz", None):
        ctx = types.SimpleNamespace(cfg=types.SimpleNamespace(inputs=given), run=tmp_path, progress=None,
                                    config=lambda _name: OptimizeStageConfig(trials=2))
        stages._default_row("optimize").steps[0].run(ctx)
    assert seen[0].inputs == "my.npz" and seen[0].optimize_config().inputs == "my.npz"
    assert seen[1].inputs is None


def test_an_optimize_table_without_optimize_in_stages_is_named_not_silently_ignored(tmp_path, monkeypatch):
    import dlopt.pipeline
    from dlopt.core.errors import UsageError
    from dlopt.pipeline import PipelineConfig, apply
    from dlopt.pipeline.config import idle_sections

    assert idle_sections(apply(PipelineConfig(), {"optimize": {"trials": 5}})) == ["optimize"]
    assert idle_sections(apply(PipelineConfig(), {"optimize": {"trials": 5},
                                                  "stages": ["train", "optimize"]})) == []
    assert idle_sections(PipelineConfig()) == []  # nothing asked of it: nothing to say
    config = tmp_path / "pipeline.toml"
    config.write_text('arch = "mlp"\n[optimize]\ntrials = 5\n')

    def stub(*_a, **_k):
        raise UsageError("stopped before running (test)")

    monkeypatch.setattr(dlopt.pipeline, "run_pipeline", stub)
    from cli_calls import invoke

    res = invoke("pipeline", "--config", config, "--out", tmp_path / "runs")
    assert "[optimize] has options but stages does not name optimize" in " ".join(res.output.split())
