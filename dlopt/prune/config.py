"""What `dlopt prune` is asked to do. No torch here: the CLI builds and checks this before heavy imports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dlopt.contract.names import check_stage_name
from dlopt.core.errors import ConfigError
from dlopt.models.options import check_float, check_int, check_seed
from dlopt.models.spec import PruneMethod

__all__ = ["Importance", "PruneConfig", "PruneMethod", "parse_importance", "parse_method"]


MAX_RATIO = 0.95  # a ratio closer to 1 leaves layers of zero or one channel: a typo, not a smaller model


class Importance(StrEnum):
    L1 = "l1"  # sum of |w| over the whole dependency group (Torch-Pruning GroupMagnitudeImportance p=1)
    L2 = "l2"  # the same with squares (p=2)
    TAYLOR = "taylor"  # |w * dL/dw| on one batch of the training data (first-order Taylor)
    BN_SCALE = "bn-scale"  # |gamma| of the BatchNorm after each channel (network slimming); needs BatchNorm


DEFAULT_EPOCHS = 3  # fine-tuning when --finetune-epochs is not given and the run was trained on data
DEPTH_EPOCHS = 6  # added in proportion to the residual blocks removed: all of them would add 6 (mobilenet_v2 at
# 96x96 with 8 of its 10 blocks gone stayed >1 point down after 3 epochs and recovered to 0.74 after 8)

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
    # classifiers fine-tune against the unpruned model's softened logits too (KL, T=4); off by default because
    # benchmarks/distill.py measured no gain (cnn, resnet18, vit on digits at 0.5 / 0.7; vit lost 2.2 points at 0.7)
    distill: bool = False
    global_pruning: bool = False  # rank channels across layers instead of per layer
    drop_blocks: int = 0  # depth: this many residual blocks removed whole before the widths are pruned, the ones
    # whose removal alone changes the outputs least (dlopt.prune.depth); 0 = none. With it, ratio may be 0
    round_to: int | None = None  # None: layers keeping >= 16 channels keep the nearest multiple of 16 (under 64)
    # or 8 (fast CPU kernels; never moving a layer's share over 10 points from the ratio), narrower ones the exact
    # ratio (dlopt.prune.widths); 1: exact; N: rounded down to N
    width_table: bool = True  # at the default widths, choose each wide layer's width inside that 10-point window
    # from a measured per-layer latency table of target_runtime at target_batch (dlopt.prune.width_table, cached
    # per machine); False: the nearest-multiple rule alone (deterministic, nothing measured)
    seed: int = 0
    name: str = "pruned"  # the stage name in the manifest and the run's sub-directory the checkpoint goes to
    bench: bool = False  # measure latency before/after (eager and ONNX Runtime, batch 1 and 8) via dlopt.bench
    speedup: bool = True  # without `bench` or a target: the speed-up at batch 1 on ONNX Runtime (else eager), one
    # thread, before/after interleaved for about a second (dlopt.prune.latency.quick_speedup); False: not measured
    bench_budget_s: float = 4.0  # bench time per shape when `bench`
    data_limit: int | None = None  # cap on samples per split for evaluation and fine-tuning (quick runs)
    target_speedup: float | None = None  # prune in steps (fine-tuning between) until this speed-up, or the budget
    target_runtime: str = "onnxruntime"  # where --target-speedup is measured: onnxruntime or eager (one thread)
    target_batch: int = 8  # the batch size --target-speedup is measured at
    max_drop: float = 1.0  # --target-speedup's budget: metric points (x100) lost, or percent for lower-is-better

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_method(self.method))
        object.__setattr__(self, "importance", parse_importance(self.importance))
        self.validate()
        self._check_target()

    def _check_target(self) -> None:
        """--target-speedup and its options (checked here, beside validate)."""
        check_float("prune", "target_speedup", self.target_speedup, 1.0, 1000.0, low_open=True, optional=True)
        check_float("prune", "max_drop", self.max_drop, 0.0, 100.0)
        check_int("prune", "target_batch", self.target_batch, 1, 65_536)
        if self.target_runtime not in ("onnxruntime", "eager"):
            raise ConfigError(f"prune.target_runtime = {self.target_runtime!r}: choose onnxruntime or eager")
        if self.target_speedup and self.method != PruneMethod.STRUCTURED:
            raise ConfigError("--target-speedup needs --method structured: unstructured pruning does not change speed")
        if self.target_speedup and self.drop_blocks:
            raise ConfigError("--drop-blocks with --target-speedup is not supported: drop the blocks in one prune, "
                              "then run --target-speedup on its result (dlopt prune RUN --variant pruned/model.json)")

    def validate(self) -> None:
        """The one rule set for `dlopt prune` options and the [prune] table of pipeline.toml."""
        check_int("prune", "drop_blocks", self.drop_blocks, 0, 10_000, flag="--drop-blocks")
        if self.drop_blocks and self.method != PruneMethod.STRUCTURED:
            raise ConfigError("--drop-blocks needs --method structured: removing blocks changes the model's structure")
        check_float("prune", "ratio", self.ratio, 0.0, MAX_RATIO, low_open=not self.drop_blocks,
                    rule=f"--ratio must be between 0 and 1: above 0 and at most {MAX_RATIO:g}, so every layer keeps "
                         f"at least {1 - MAX_RATIO:.0%} of its channels (e.g. 0.3); 0 only with --drop-blocks")
        check_int("prune", "iterative_steps", self.iterative_steps, 1, 1000)
        check_int("prune", "finetune_epochs", self.finetune_epochs, 0, 100_000, optional=True)
        check_float("prune", "finetune_lr", self.finetune_lr, 0.0, 1000.0, low_open=True, optional=True)
        check_int("prune", "round_to", self.round_to, 1, 4096, optional=True)
        check_seed("prune", self.seed)
        check_stage_name("prune", self.name, others=("int8", "pruned-int8"))  # quantize's default variants
        check_float("prune", "bench_budget_s", self.bench_budget_s, 0.0, 86_400.0, low_open=True)
        check_int("prune", "data_limit", self.data_limit, 1, flag="--limit", optional=True)
        for key in ("global_pruning", "bench", "width_table", "distill", "speedup"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"prune.{key} = {getattr(self, key)!r} has the wrong type: expected true or false")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method"], out["importance"] = str(self.method), str(self.importance)
        if not self.drop_blocks:  # as before depth pruning existed: the same prune keeps its cache key and config
            del out["drop_blocks"]
        elif self.finetune_epochs is None:  # the default grows with the blocks removed: its own cache key, so a
            # model cached under the flat 3-epoch default is not reused for it
            out["finetune_default"] = f"{DEFAULT_EPOCHS} + {DEPTH_EPOCHS} x share of blocks removed"
        return out


def parse_method(value: Any) -> PruneMethod:
    if str(value) not in PruneMethod._value2member_map_:
        raise ConfigError(f"unknown pruning method {value!r}; choose from {', '.join(m.value for m in PruneMethod)}")
    return PruneMethod(str(value))


def parse_importance(value: Any) -> Importance:
    if str(value) not in Importance._value2member_map_:
        raise ConfigError(f"unknown importance {value!r}; choose from {', '.join(i.value for i in Importance)}")
    return Importance(str(value))
