"""Two CPU workers (torchrun, gloo) against one worker with the same global batch.

Each worker takes a contiguous half of every global batch and weights its loss by its share, so the summed
all-reduce is the whole batch's gradient; only the float32 summation order differs. LeNet-5 has neither
BatchNorm nor dropout, and the random transforms are drawn for the global batch, so nothing else differs.
Measured here: the weights differ by ~1e-6 of the distance training moved them (max abs ~1e-8, once 2e-5).
The test allows 1e-3 of that distance: rounding, amplified over six SGD steps, stays far below it, while a
real fault (a worker stepping on its half-batch gradient, weights drifting apart) is of order 1e-1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from dlopt.models.registry import build_model
from dlopt.train import TrainConfig, train


def _weights(run_dir: str) -> dict[str, torch.Tensor]:
    state = load_file(str(Path(run_dir) / "train_state.safetensors"))
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k] - b[k]).double().norm() ** 2) for k in a) ** 0.5


def test_two_workers_match_one(tmp_path: Path, capfd, monkeypatch):
    common = dict(arch="lenet5", epochs=2, batch_size=32, limit=96, optimizer="sgd", lr=0.05, progress=False)
    one = train(TrainConfig(**common, out=tmp_path / "one"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # torchrun prints a banner when it has to set it
    capfd.readouterr()
    two = train(TrainConfig(**common, out=tmp_path / "two", nproc_per_node=2))
    assert "OMP_NUM_THREADS" not in "".join(capfd.readouterr())  # only dlopt's own output reaches the user
    assert two.world_size == 2 and one.world_size == 1
    torch.manual_seed(0)
    initial = build_model("lenet5")[0].state_dict()
    a, b = _weights(one.run_dir), _weights(two.run_dir)
    moved = _distance(a, initial)
    assert moved > 0.01  # training did move the weights
    assert _distance(a, b) < 1e-3 * moved, (_distance(a, b), moved)
    manifest = json.loads((Path(two.run_dir) / "manifest.json").read_text())
    assert manifest["stages"]["train"]["config"]["world_size"] == 2
    assert manifest["stages"]["train"]["status"] == "done"
    assert abs(one.test["accuracy"] - two.test["accuracy"]) < 0.02
