"""Every trainable architecture in the registry trains for one tiny epoch through its family's loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dlopt.models.registry import list_specs
from dlopt.train import TrainConfig, list_families, train

TRAINABLE = [s for s in list_specs(stage="train") if s.trainer]


def test_every_spec_names_a_registered_loop():
    families = set(list_families())
    assert {"classification", "regression", "seq2seq", "gan", "autoencoder", "vae", "dqn", "perceptron"} <= families
    assert all(s.trainer in families for s in TRAINABLE)


@pytest.mark.parametrize("spec", TRAINABLE, ids=lambda s: s.name)
def test_tiny_training_leaves_a_complete_run(spec, tmp_path: Path):
    result = train(TrainConfig(arch=spec.name, tiny=True, epochs=1, batch_size=16, limit=48, out=tmp_path,
                               progress=False))
    run = Path(result.run_dir)
    assert math.isfinite(result.test[spec.metric])
    manifest = json.loads((run / "manifest.json").read_text())
    stage = manifest["stages"]["train"]
    assert stage["status"] == "done"
    assert f"test_{spec.metric}" in stage["metrics"]
    assert manifest["model"]["checkpoint"] == "model.json"
    for name in ("model.safetensors", "model.json", "metrics.jsonl", "learning_curve.png", "train_state.json",
                 "train_state.safetensors"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and f"val_{spec.metric}" in rows[0]
    record = json.loads((run / "model.json").read_text())
    assert record["metrics"][f"test_{spec.metric}"] == pytest.approx(result.test[spec.metric])
    if spec.trainer in ("gan", "vae"):
        assert (run / "samples.png").stat().st_size > 1000


def test_trained_run_is_what_later_stages_load(tmp_path: Path):
    import torch
    from safetensors.torch import load_file

    from dlopt.contract.target import TargetOptions, resolve_target

    result = train(TrainConfig(arch="lenet5", epochs=1, limit=64, out=tmp_path, progress=False))
    target = resolve_target(TargetOptions(name=result.run_dir))
    saved = load_file(str(Path(result.run_dir) / "model.safetensors"))
    assert all(torch.equal(target.model.state_dict()[k], v) for k, v in saved.items())


def test_perceptron_rule_learns_the_and_gate(tmp_path: Path):
    result = train(TrainConfig(arch="perceptron", data="and", epochs=20, out=tmp_path, progress=False))
    assert result.test["accuracy"] == 1.0


def test_classifier_learns_digits_quickly(tmp_path: Path):
    result = train(TrainConfig(arch="lenet5", epochs=3, limit=400, out=tmp_path, progress=False))
    assert result.test["accuracy"] > 0.6  # 10 classes: chance is 0.1


def test_sine_regression_error_falls(tmp_path: Path):
    result = train(TrainConfig(arch="rnn", tiny=True, epochs=6, batch_size=16, lr=0.01, limit=600, out=tmp_path,
                               progress=False))
    first, last = result.history[0]["val_mse"], result.history[-1]["val_mse"]
    assert last < first and result.test["mse"] < 0.1  # predicting the mean scores the sine's variance, 0.5
