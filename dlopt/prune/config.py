"""What `dlopt prune` is asked to do. No torch here: the CLI builds and checks this before heavy imports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dlopt.errors import ConfigError
from dlopt.spec import PruneMethod

__all__ = ["Importance", "PruneConfig", "PruneMethod", "parse_method", "parse_importance"]


class Importance(StrEnum):
    L1 = "l1"  # sum of |w| over the whole dependency group (Torch-Pruning GroupMagnitudeImportance p=1)
    L2 = "l2"  # the same with squares (p=2)
    TAYLOR = "taylor"  # |w * dL/dw| on one batch of the training data (first-order Taylor)
    BN_SCALE = "bn-scale"  # |gamma| of the BatchNorm after each channel (network slimming); needs BatchNorm


@dataclass(frozen=True)
class PruneConfig:
    """The ratio is the share of output channels / neurons / attention heads removed from each prunable
    layer (with `global_pruning`, the same share of all of them, ranked together). Output layers keep their size."""

    ratio: float = 0.3
    method: PruneMethod = PruneMethod.STRUCTURED
    importance: Importance = Importance.L1
    iterative_steps: int = 1  # prune in K steps of ratio/K each, re-ranking (and fine-tuning, if asked) in between
    finetune_epochs: int | None = None  # epochs of training after pruning (spread over the steps); 0 = none;
    # None: 3 where the run was trained on data (the metric recovers), else none (the report says so)
    finetune_lr: float | None = None  # None: the family's training learning rate x 0.5
    global_pruning: bool = False  # rank channels across layers instead of per layer
    round_to: int | None = None  # None: layers keeping >= 16 channels keep the nearest multiple of 8 (fast CPU
    # kernels), narrower ones the exact ratio (dlopt.prune.widths); 1: exact everywhere; N: rounded down to N
    seed: int = 0
    name: str = "pruned"  # the stage name in the manifest and the run's sub-directory the checkpoint goes to
    bench: bool = False  # measure latency before/after (eager and ONNX Runtime, batch 1 and 8) via dlopt.bench
    bench_budget_s: float = 4.0  # bench time per shape when `bench`
    data_limit: int | None = None  # cap on samples per split for evaluation and fine-tuning (quick runs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_method(self.method))
        object.__setattr__(self, "importance", parse_importance(self.importance))
        if not 0.0 < float(self.ratio) < 1.0:
            raise ConfigError(f"--ratio must be between 0 and 1 (exclusive), got {self.ratio}; e.g. --ratio 0.3 "
                              "removes 30% of each layer's channels")
        if self.iterative_steps < 1:
            raise ConfigError(f"--iterative-steps must be at least 1, got {self.iterative_steps}")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise ConfigError(f"--finetune-epochs must be 0 or more, got {self.finetune_epochs}")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"--round-to must be at least 1, got {self.round_to}")
        if self.finetune_lr is not None and self.finetune_lr <= 0:
            raise ConfigError(f"--finetune-lr must be positive, got {self.finetune_lr}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"stage name {self.name!r} must be a plain directory name (e.g. pruned)")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method"], out["importance"] = str(self.method), str(self.importance)
        return out


def parse_method(value: Any) -> PruneMethod:
    if str(value) not in PruneMethod._value2member_map_:
        raise ConfigError(f"unknown pruning method {value!r}; choose from {', '.join(m.value for m in PruneMethod)}")
    return PruneMethod(str(value))


def parse_importance(value: Any) -> Importance:
    if str(value) not in Importance._value2member_map_:
        raise ConfigError(f"unknown importance {value!r}; choose from {', '.join(i.value for i in Importance)}")
    return Importance(str(value))
