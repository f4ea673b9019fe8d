"""`dlopt train` through Typer's CliRunner: options -> config -> one library call -> table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_train_json_then_export_target_is_the_trained_run(tmp_path: Path):
    res = invoke("train", "mlp", "--tiny", "--epochs", "2", "--limit", "64", "--out", tmp_path, "--json",
                 "--optimizer", "sgd", "--lr", "0.05", "--batch-size", "16", "--seed", "3")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["arch"] == "mlp" and out["epochs_run"] == 2 and 0.0 <= out["test"]["accuracy"] <= 1.0
    assert out["hparams"]["optimizer"] == "sgd" and out["hparams"]["lr"] == 0.05 and out["hparams"]["batch_size"] == 16
    from dlopt.core.runs import latest_run

    assert str(latest_run(tmp_path).path) == out["run_dir"]
    assert (Path(out["run_dir"]) / "model.json").is_file()


def test_train_table_output(tmp_path: Path):
    res = invoke("train", "perceptron", "--data", "or", "--epochs", "10", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output and "1.0000" in res.output


def test_resume_via_cli_continues_in_the_same_run(tmp_path: Path):
    first = json.loads(invoke("train", "rnn", "--tiny", "--epochs", "2", "--limit", "64", "--out", tmp_path,
                              "--json").output)
    res = invoke("train", "--resume", first["run_dir"], "--json")
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["run_dir"] == first["run_dir"] and again["epochs_run"] == 2  # already finished: nothing to redo
    assert again["test"]["mse"] == pytest.approx(first["test"]["mse"])


@pytest.mark.parametrize(("args", "code", "message"), [
    (["train", "lenet5", "--amp"], 2, "--amp needs a CUDA GPU"),
    (["train", "lenet5", "--set", "num_classes=5"], 2, "contradicts the data"),
    (["train"], 2, "name an architecture"),
    (["train", "lenet6"], 2, "did you mean lenet5"),
    (["train", "lenet5", "--data", "nosuch"], 2, "unknown dataset"),
    (["train", "dqn", "--data", "digits"], 2, "drop --data"),
    (["train", "--resume", "/nonexistent/run"], 3, "not a dlopt run"),
])
def test_bad_input_is_one_clear_line(args: list[str], code: int, message: str, tmp_path: Path):
    res = invoke(*args, "--out", tmp_path, "--limit", "32", "--epochs", "1")
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    import torch

    from dlopt.data import load_data
    from dlopt.models.registry import get_spec, make_model_config
    from dlopt.train import TrainConfig, train

    spec = get_spec("rnn")
    good = load_data(spec, make_model_config(spec, {}, tiny=True), limit=64)
    bad_x = good.train.xs[0].clone()
    bad_x[5:] = float("nan")  # the very first batch meets NaN inputs
    from dlopt.data.common import DataSplits, PairDataset

    data = DataSplits(PairDataset([bad_x], good.train.y), good.val, good.test, good.info, good.config_overrides)
    result = train(TrainConfig(arch="rnn", tiny=True, epochs=3, batch_size=64, out=tmp_path, progress=False), data=data)
    assert result.stopped and result.stopped.startswith("non-finite")
    assert result.epochs_run == 0 and result.best_epoch == 0
    record = json.loads((Path(result.run_dir) / "model.json").read_text())
    assert record["metrics"]["epoch"] == 0  # the initial weights: the only good checkpoint there is
    from safetensors.torch import load_file

    weights = load_file(str(Path(result.run_dir) / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
