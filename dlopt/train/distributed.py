"""`--nproc-per-node N`: run N workers through torchrun (gloo on CPU, NCCL on CUDA).

The launcher creates the run (node 0 only), writes the config to a JSON file in it, and starts
`python -m torch.distributed.run --nproc-per-node N [torchrun's multi-node options] -m dlopt.train.worker CONFIG`.
Every worker builds the same model from the same seed and trains on its contiguous piece of each global
batch; rank 0 writes the run and `train_result.json`, which the launcher reads back.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError
from dlopt.core.fileio import write_json_atomic
from dlopt.core.runs import Run
from dlopt.train.config import RESULT, TrainConfig

WORKER_CONFIG = "train_config.json"


class WorkerFailedError(DloptError):
    """A distributed worker exited non-zero."""

    exit_code = 1


def node_rank(torchrun_args: tuple[str, ...]) -> int:
    args = list(torchrun_args)
    for i, arg in enumerate(args):
        for flag in ("--node-rank", "--node_rank"):
            if arg == flag and i + 1 < len(args):
                return int(args[i + 1])
            if arg.startswith(flag + "="):
                return int(arg.split("=", 1)[1])
    return 0


def torchrun_command(cfg: TrainConfig, config_path: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(cfg.nproc_per_node),
            *cfg.torchrun_args, "-m", "dlopt.train.worker", str(config_path)]


def launch(cfg: TrainConfig) -> Any:
    """Start the workers, wait, and return rank 0's TrainResult."""
    from dlopt.core.results import TrainResult, read_result

    if node_rank(cfg.torchrun_args) != 0:  # other nodes only compute: node 0's run holds everything
        return _launch_other_node(cfg)
    run = Run.open(cfg.run_dir) if cfg.run_dir else Run.create(cfg.out, cfg.arch, {"arch": cfg.arch})
    worker_cfg = dataclasses.replace(cfg, run_dir=run.path, nproc_per_node=1)
    config_path = run.path / WORKER_CONFIG
    write_json_atomic(config_path, worker_cfg.to_json())
    _run_torchrun(cfg, config_path)
    result = read_result(TrainResult, run.path / RESULT)  # the record rank 0 wrote, type-checked
    return dataclasses.replace(result, run_dir=str(run.path))  # the file says "." (run-relative)


def _launch_other_node(cfg: TrainConfig) -> Any:
    import tempfile

    from dlopt.core.results import TrainResult

    with tempfile.TemporaryDirectory(prefix="dlopt-train-") as tmp:
        config_path = Path(tmp) / WORKER_CONFIG
        write_json_atomic(config_path, dataclasses.replace(cfg, run_dir=None, nproc_per_node=1).to_json())
        _run_torchrun(cfg, config_path)
    return TrainResult(run_dir="", arch=cfg.arch, metric="", test={}, best_epoch=0, epochs_run=0,
                       stopped="this node only computed; node 0 holds the run", seconds=0.0, hparams={}, data={})


def _run_torchrun(cfg: TrainConfig, config_path: Path) -> None:
    # The workers share this terminal: rank 0's progress bar and any worker's error line show as they happen.
    # torchrun sets OMP_NUM_THREADS=1 for each worker when it is unset, and prints a banner saying so: set the same
    # value ourselves so the user's terminal shows dlopt's output only.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(torchrun_command(cfg, config_path), check=False, env=env)
    if proc.returncode != 0:
        raise WorkerFailedError(f"distributed training failed (torchrun exit {proc.returncode}); the workers' "
                                "messages are above; rerun with --nproc-per-node 1 to debug")
