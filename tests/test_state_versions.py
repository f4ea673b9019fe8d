"""Safetensors keeps no state-dict layout versions; torchvision's MNASNet refuses a state without one. Training
reloads its best epoch, a resume reloads its state, and a later stage reloads the checkpoint: each must work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlopt.models.checkpoint import load_checkpoint
from dlopt.train import TrainConfig, train

ARCH = "torchvision:mnasnet0_5"


class Interrupt(KeyboardInterrupt):
    pass


def _stop(epoch: int, row: dict) -> None:
    raise Interrupt


def test_mnasnet_trains_resumes_and_reloads(tmp_path: Path):
    cfg = TrainConfig(arch=ARCH, data="digits", sets={"num_classes": 10, "input_size": 32}, epochs=2,
                      batch_size=16, limit=16, out=tmp_path, progress=False)
    with pytest.raises(Interrupt):  # after epoch 1; the resume below reloads train_state.safetensors
        train(cfg, on_epoch=_stop)
    [run] = [p for p in tmp_path.glob("*/*") if p.is_dir()]
    result = train(TrainConfig(arch="", resume=run, progress=False))  # the end reloads model.safetensors
    assert result.epochs_run == 2
    model = load_checkpoint(run / "model.json").model
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 10) and torch.equal(model(x), load_checkpoint(run / "model.json").model(x))
