"""BatchNorm statistics are re-estimated before validation where a run is too short for their running averages
(MNASNet's momentum 0.0003); runs whose BatchNorm settles (momentum 0.1, enough steps) train exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dlopt.models.registry as registry
from dlopt.train import TrainConfig, train
from dlopt.train.bn_stats import SETTLE, plan

# a small cnn on 256 digits at 16x16, 16 steps an epoch: 48 steps in all (momentum 0.1 * 48 >= SETTLE: settled)
SETS = {"input_size": 16, "widths": "16,32,32", "hidden": 64}
COMMON = dict(arch="cnn", data="digits", sets=SETS, epochs=3, batch_size=16, lr=0.002, limit=256, progress=False)


@pytest.fixture
def slow_bn(monkeypatch):
    """Every model built has BatchNorm momentum 0.0003, as torchvision's MNASNet."""
    create = registry.create_model

    def build(*args, **kwargs):
        model = create(*args, **kwargs)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.0003
        return model

    monkeypatch.setattr(registry, "create_model", build)


def _without_refresh(monkeypatch) -> None:
    monkeypatch.setattr("dlopt.train.engine.plan", lambda *args: None)


def test_rule_settles_at_three_time_constants():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4))
    family = type("F", (), {"loss": lambda *a: None, "data": type("D", (), {"train": range(100)})(),
                            "hp": type("H", (), {"batch_size": 8})()})()
    assert plan(family, model, int(SETTLE / 0.1)) is None
    p = plan(family, model, int(SETTLE / 0.1) - 1)
    assert p is not None and p.batches == 13 and "momentum 0.1 cannot settle in 29 steps" in p.note
    model[0].momentum = None  # a cumulative average is never stale
    assert plan(family, model, 1) is None


def test_slow_batchnorm_is_re_estimated(slow_bn, tmp_path: Path, monkeypatch):
    fixed = train(TrainConfig(**COMMON, out=tmp_path / "fixed"))
    run = Path(fixed.run_dir)
    record = json.loads((run / "manifest.json").read_text())["stages"]["train"]["metrics"]
    assert "momentum 0.0003 cannot settle in 48 steps" in record["bn_stats"]
    assert fixed.bn_stats == record["bn_stats"]  # train_result.json and --json say it too
    assert json.loads((run / "train_result.json").read_text())["bn_stats"] == record["bn_stats"]
    assert all(row["bn_batches"] == 16 for row in fixed.history)
    assert fixed.test["accuracy"] > 0.6, fixed.test

    # the saved weights carry the statistics of the data: the first BatchNorm's mean is its conv's output mean
    weights = load_file(str(run / "model.safetensors"))
    from dlopt.data import load_data

    spec = registry.get_spec("cnn")
    data = load_data(spec, registry.make_model_config(spec, SETS), "digits", limit=256)
    x = torch.stack([data.train[i][0] for i in range(len(data.train))])
    conv = torch.nn.functional.conv2d(x, weights["features.0.weight"], weights["features.0.bias"], padding=1)
    assert torch.allclose(weights["features.1.running_mean"], conv.mean((0, 2, 3)), atol=0.05 * conv.std())

    _without_refresh(monkeypatch)
    stale = train(TrainConfig(**COMMON, out=tmp_path / "stale"))
    assert stale.test["accuracy"] < fixed.test["accuracy"] - 0.3, (stale.test, fixed.test)
    # training itself is untouched (train mode, dropout draws): only what evaluation sees differs
    assert [r["train_loss"] for r in stale.history] == [r["train_loss"] for r in fixed.history]


def test_settled_batchnorm_trains_as_before(tmp_path: Path, monkeypatch):
    now = train(TrainConfig(**COMMON, out=tmp_path / "now"))
    assert "bn_batches" not in now.history[0]
    _without_refresh(monkeypatch)
    before = train(TrainConfig(**COMMON, out=tmp_path / "before"))
    assert now.test == before.test
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in now.history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in before.history]
