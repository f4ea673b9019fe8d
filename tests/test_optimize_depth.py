"""Depth in the optimize search: the shares become block counts of the model at hand, a model without residual blocks
leaves depth out with the reason, a trial that removes blocks builds, judges and records them, and a study made
before depth pruning resumes as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dlopt.contract.target import Target
from dlopt.core.runs import Run
from dlopt.models.registry import get_spec
from dlopt.optimize.config import BEFORE_DEPTH, Goal, OptimizeConfig
from dlopt.optimize.space import Candidate, block_counts, build_space

QUICK = {"threads": (1,), "finetune_epochs": 1, "trial_timing_s": 0.2, "final_timing_s": 0.4}


def test_shares_become_distinct_block_counts_of_the_model():
    assert block_counts((0.0, 0.25, 0.5, 0.75), 10) == (0, 3, 5, 8)
    assert block_counts((0.0, 0.25, 0.5, 0.75), 5) == (0, 1, 3, 4)
    assert block_counts((0.0, 0.25, 0.5, 0.75), 0) == (0,)
    assert block_counts((0.0, 1.0), 3) == (0, 3)


def test_a_model_without_blocks_leaves_depth_out_with_the_reason():
    cfg = OptimizeConfig(runtimes=("onnxruntime",), precisions=("fp32",))
    none = build_space(get_spec("mlp"), cfg, blocks=0)
    assert none.blocks == (0,) and "no residual block" in none.left_out["depth"]
    some = build_space(get_spec("resnet18"), cfg, blocks=10)
    assert some.blocks == (0, 3, 5, 8) and "depth" not in some.left_out
    assert some.size == 4 * none.size  # the same ratios, formats and threads, four depths


def test_labels_and_old_trials():
    cand = Candidate.of({"prune": 0.3, "blocks": 5, "format": "int8@onnxruntime", "threads": 1})
    assert cand.label == "prune 0.3 − 5 blocks · int8 · onnxruntime · 1t"
    assert Candidate.of_row(cand.to_json()) == cand
    old = Candidate.of({"prune": 0.3, "format": "int8@onnxruntime", "threads": 1})  # a trial from before depth
    assert old.blocks == 0 and old.label.startswith("prune 0.3 · ")
    assert OptimizeConfig.from_json({"goal": {}}).depth_shares == BEFORE_DEPTH  # its stored config: no depth


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    root = tmp_path_factory.mktemp("optimize-depth")
    return Path(train(TrainConfig(arch="resnet18", out=root, tiny=True, epochs=1, limit=128,
                                  progress=False)).run_dir)


def test_a_trial_removes_blocks_and_records_them(trained, tmp_path):
    from dlopt.models.checkpoint import load_checkpoint
    from dlopt.optimize.stage import run_optimize

    dest = tmp_path / "artifacts" / "resnet18" / trained.name
    shutil.copytree(trained, dest)
    cfg = OptimizeConfig(**QUICK, trials=2, prune_ratios=(0.0,), depth_shares=(0.0, 1.0), runtimes=("onnxruntime",),
                         precisions=("fp32",), data_limit=64, goal=Goal(max_drop=100.0))
    out = run_optimize(Target.of_run(Run.open(dest)), cfg)
    assert out.report.space["blocks"] == [0, 1]  # the tiny resnet18 has one block that keeps its shape
    done = {t["candidate"]["blocks"]: t for t in out.report.trials if t["state"] == "complete"}
    assert set(done) == {0, 1} and out.report.builds["prune"] == 1
    assert "− 1 block" in done[1]["label"]
    models = list((dest / "optimize" / "cache").glob("*/pruned/model.json"))
    assert len(models) == 1
    record = json.loads(models[0].read_text())
    assert record["structure"]["identities"] and load_checkpoint(models[0]).model is not None


def test_a_study_stored_before_depth_pruning_resumes_and_refuses_a_depth_search(tmp_path):
    import optuna

    from dlopt.core.errors import UsageError
    from dlopt.optimize.study import _search_part, open_study

    url = f"sqlite:///{tmp_path / 'study.db'}"
    before = OptimizeConfig.from_json({"goal": {}})  # what --resume reads back from an older run
    stored = {k: v for k, v in _search_part(before).items() if k != "depth_shares"}
    old = optuna.create_study(storage=url, study_name=before.study, directions=["minimize", "minimize"])
    old.set_user_attr("search", stored)
    assert open_study(url, before).study_name == before.study
    with pytest.raises(UsageError, match="depth_shares differ"):
        open_study(url, OptimizeConfig())
