"""The pipeline hands its open Run to each stage (TargetOptions.open_run) instead of a path to resolve again."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlopt.contract.target import TargetOptions, resolve_target
from dlopt.core.errors import UsageError
from dlopt.core.runs import Run
from dlopt.pipeline import PipelineConfig, apply, run_pipeline


def _built_run(tmp_path: Path) -> Run:
    return resolve_target(TargetOptions(name="lenet5", tiny=True, root=tmp_path / "artifacts")).run


def test_an_open_run_is_the_target_itself(tmp_path: Path) -> None:
    run = _built_run(tmp_path)
    target = resolve_target(TargetOptions(open_run=run))
    assert target.run is run and target.checkpoint == run.path / "model.json" and target.spec.name == "lenet5"
    with pytest.raises(UsageError, match="--weights"):
        resolve_target(TargetOptions(open_run=run, weights="DEFAULT"))


def test_pipeline_steps_never_reopen_their_run_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reopen(*_a: object, **_k: object) -> Run:
        raise AssertionError("a step resolved the pipeline's run from its path")

    monkeypatch.setattr(Run, "open", classmethod(no_reopen))
    cfg = apply(PipelineConfig(arch="lenet5", tiny=True), {"stages": ["prune", "bench"], "prune": {"ratio": 0.3},
                                                           "bench": {"backends": ["eager"], "batch_sizes": [1],
                                                                     "budget_s": 0.2}})
    outcome = run_pipeline(cfg, tmp_path)
    status = {s.name: (s.status, s.reason) for s in outcome.steps}
    assert status["prune"][0] == "ran" and status["bench"][0] == "ran", status
