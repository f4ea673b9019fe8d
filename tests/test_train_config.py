"""Training options without torch work: hyperparameter precedence, config JSON round trip, torchrun command."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlopt.core.errors import ConfigError
from dlopt.train.config import HParams, OptimizerName, TrainConfig, build_defaults, resolve_hparams
from dlopt.train.distributed import node_rank, torchrun_command


def test_user_beats_spec_beats_family():
    family = HParams(epochs=10, lr=1e-3, batch_size=32)
    hp = resolve_hparams(family, {"epochs": 5, "lr": 2e-3, "input_size": 32}, {"lr": 0.1, "optimizer": "sgd"})
    assert (hp.epochs, hp.lr, hp.batch_size, hp.optimizer) == (5, 0.1, 32, OptimizerName.SGD)
    assert build_defaults({"epochs": 5, "input_size": 32}) == {"input_size": 32}


def test_bad_hyperparameters_are_config_errors():
    with pytest.raises(ConfigError, match="epochs and batch size"):
        resolve_hparams(HParams(), {}, {"epochs": 0})


def test_config_json_round_trip():
    cfg = TrainConfig(arch="lenet5", data_path=Path("x/y"), optimizer=OptimizerName.SGD, sets={"a": "1"},
                      torchrun_args=("--nnodes", "2"), resume=Path("r"))
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_torchrun_command_passes_multi_node_options_through(tmp_path: Path):
    cfg = TrainConfig(arch="cnn", nproc_per_node=4, torchrun_args=("--nnodes", "2", "--node-rank", "1"))
    cmd = torchrun_command(cfg, tmp_path / "c.json")
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "4" and "--nnodes" in cmd
    assert cmd[-3:] == ["-m", "dlopt.train.worker", str(tmp_path / "c.json")]
    assert node_rank(cfg.torchrun_args) == 1 and node_rank(("--node_rank=3",)) == 3 and node_rank(()) == 0
