"""A run stopped after an epoch and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlopt.core.fileio import looks_like_pickle
from dlopt.train import TrainConfig, train
from dlopt.train.state import _flatten, _unflatten


class Interrupt(KeyboardInterrupt):
    pass


def _stop_after(n: int):
    def hook(epoch: int, row: dict) -> None:
        if epoch == n:
            raise Interrupt
    return hook


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(run / "train_state.safetensors"))
    return {k: v for k, v in state.items() if k.startswith("model.")}


# cnn: BatchNorm buffers and dropout RNG; seq2seq_gru: the adapter path. SGD and AdamW states both round-trip.
@pytest.mark.parametrize(("arch", "optimizer"), [("cnn", "adamw"), ("seq2seq_gru", "sgd")])
def test_resume_matches_uninterrupted(arch: str, optimizer: str, tmp_path: Path):
    cfg = TrainConfig(arch=arch, tiny=True, epochs=3, batch_size=16, limit=64, optimizer=optimizer,
                      out=tmp_path / "a", progress=False)
    full = train(cfg)
    with pytest.raises(Interrupt):
        train(TrainConfig(**{**cfg.__dict__, "out": tmp_path / "b"}), on_epoch=_stop_after(1))
    [stopped] = list((tmp_path / "b" / arch).iterdir())
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "interrupted"
    resumed = train(TrainConfig(arch="", resume=stopped, progress=False))
    assert resumed.run_dir == str(stopped) and resumed.epochs_run == 3
    a, b = _weights(Path(full.run_dir)), _weights(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    best_a = load_file(str(Path(full.run_dir) / "model.safetensors"))
    best_b = load_file(str(stopped / "model.safetensors"))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["train_loss"] == full.history[-1]["train_loss"]
    assert json.loads((stopped / "manifest.json").read_text())["stages"]["train"]["status"] == "done"


def test_state_files_are_safetensors_and_json_not_pickle(tmp_path: Path):
    result = train(TrainConfig(arch="mlp", tiny=True, epochs=1, limit=64, out=tmp_path, progress=False))
    run = Path(result.run_dir)
    record = json.loads((run / "train_state.json").read_text())
    assert record["format"] == "dlopt-train-state" and record["epoch"] == 1
    assert not looks_like_pickle(run / "train_state.safetensors")
    assert "rng.torch" in load_file(str(run / "train_state.safetensors"))


def test_flatten_round_trips_optimizer_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    tree = json.loads(json.dumps(_flatten(opt.state_dict(), "opt", tensors)))
    back = _unflatten(tree, tensors)
    fresh = torch.optim.AdamW(model.parameters(), lr=0.5)
    fresh.load_state_dict(back)
    assert fresh.param_groups[0]["lr"] == 0.1
    assert torch.equal(fresh.state[model.weight]["exp_avg"], opt.state[model.weight]["exp_avg"])


def test_resume_of_a_run_without_state_is_a_clear_error(tmp_path: Path):
    from dlopt.core.errors import InputFileError
    from dlopt.core.runs import Run

    run = Run.create(tmp_path, "lenet5", {"arch": "lenet5"})
    with pytest.raises(InputFileError, match="no dlopt train stage"):
        train(TrainConfig(arch="", resume=run.path, progress=False))
