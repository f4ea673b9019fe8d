"""Training options: the user's config, and the hyperparameters resolved from family, spec and user.

No torch here: the CLI builds these before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dlopt.core.layout import DEFAULT_ROOT

RESULT = "train_result.json"  # a TrainResult (dlopt.core.results), which train() also returns and the launcher reads


class OptimizerName(StrEnum):
    ADAMW = "adamw"
    SGD = "sgd"


@dataclass(frozen=True)
class HParams:
    """The loop's knobs. Each family declares defaults; a spec's train_defaults and the user override them."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: OptimizerName = OptimizerName.ADAMW
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    warmup: float = 0.05  # fraction of all steps with a linear LR warm-up, then cosine decay
    min_lr_ratio: float = 0.02  # cosine decays to lr * this
    clip_norm: float = 1.0  # global gradient norm clip; 0 disables
    patience: int = 5  # epochs without a better validation metric before stopping; 0 disables
    augment: bool = True  # the family's training transforms (image classification: small random affine)


HPARAM_KEYS = frozenset(f.name for f in dataclasses.fields(HParams))


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    data: str | None = None  # dataset name; None = the spec's default dataset
    data_path: Path | None = None  # the user's files (ImageFolder, MNIST raw files, .npz, CSV)
    epochs: int | None = None  # None: the family's / spec's default
    batch_size: int | None = None  # global batch: split across workers when distributed
    lr: float | None = None
    optimizer: OptimizerName | None = None
    seed: int = 0
    out: Path = DEFAULT_ROOT
    resume: Path | None = None  # a run directory whose training state to continue
    sets: Mapping[str, Any] = field(default_factory=dict)  # --set build options (raw strings or values)
    tiny: bool = False
    limit: int | None = None  # cap on samples per split (quick runs)
    amp: bool = False
    nproc_per_node: int = 1
    torchrun_args: tuple[str, ...] = ()  # passed through to torchrun (multi-node options)
    progress: bool = True
    run_dir: Path | None = None  # set by the distributed launcher: the run it already created

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """The one rule set for `dlopt train` options and the [train] table of pipeline.toml (0 there = None)."""
        from dlopt.models.options import check_float, check_int, check_seed

        check_int("train", "epochs", self.epochs, 1, 1_000_000, optional=True)
        check_int("train", "batch_size", self.batch_size, 1, 1 << 24, optional=True)
        check_float("train", "lr", self.lr, 0.0, 1000.0, low_open=True, optional=True)
        check_seed("train", self.seed)
        check_int("train", "limit", self.limit, 1, optional=True)
        check_int("train", "nproc_per_node", self.nproc_per_node, 1, 4096)
        self._check_data()
        if self.optimizer is not None and str(self.optimizer) not in OptimizerName._value2member_map_:
            from dlopt.core.errors import ConfigError

            choices = ", ".join(o.value for o in OptimizerName)
            raise ConfigError(f"unknown --optimizer {self.optimizer!r:.60}; choose one of {choices} (train.optimizer)")

    def _check_data(self) -> None:
        """A dataset name that cannot load fails here, not after a pipeline's run has begun."""
        from dlopt.core.errors import ConfigError
        from dlopt.data import ENVIRONMENTS, list_datasets

        known = [*list_datasets(), *ENVIRONMENTS]
        if self.data is not None and (not isinstance(self.data, str) or self.data.lower() not in known):
            raise ConfigError(f"unknown dataset {self.data!r:.60} (train.data, --data); valid: {', '.join(known)}")

    def user_hparams(self) -> dict[str, Any]:
        given = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "optimizer": self.optimizer}
        return {k: v for k, v in given.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sets"] = dict(self.sets)
        for key in ("data_path", "out", "resume", "run_dir"):
            out[key] = None if out[key] is None else str(out[key])
        out["optimizer"] = None if self.optimizer is None else str(self.optimizer)
        out["torchrun_args"] = list(self.torchrun_args)
        return out

    def recorded(self) -> dict[str, Any]:
        """to_json() as the manifest keeps it: where the run lives (out, resume, run_dir) is not recorded, so a
        run reads the same wherever it is opened from or moved to; --resume supplies them again."""
        return {**self.to_json(), "out": None, "resume": None, "run_dir": None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainConfig:
        data = dict(data)
        for key in ("data_path", "out", "resume", "run_dir"):
            data[key] = None if data.get(key) is None else Path(data[key])
        if data.get("optimizer") is not None:
            data["optimizer"] = OptimizerName(data["optimizer"])
        data["torchrun_args"] = tuple(data.get("torchrun_args", ()))
        if data.get("out") is None:  # not recorded (see recorded()): the default root
            data["out"] = DEFAULT_ROOT
        return cls(**data)


def resolve_hparams(defaults: HParams, spec_defaults: Mapping[str, Any], user: Mapping[str, Any]) -> HParams:
    """Family defaults < the spec's train_defaults (hyperparameter keys only) < the user's options."""
    from dlopt.core.errors import ConfigError

    merged = {k: v for k, v in spec_defaults.items() if k in HPARAM_KEYS}
    merged.update(user)
    hp = dataclasses.replace(defaults, **merged)
    if hp.epochs < 1 or hp.batch_size < 1 or hp.lr <= 0:
        raise ConfigError(f"epochs and batch size must be >= 1 and lr > 0 (got {hp.epochs}, {hp.batch_size}, {hp.lr})")
    return dataclasses.replace(hp, optimizer=OptimizerName(hp.optimizer))


def build_defaults(spec_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's train_defaults that are build options (everything that is not a hyperparameter)."""
    return {k: v for k, v in spec_defaults.items() if k not in HPARAM_KEYS}
