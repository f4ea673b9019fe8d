"""Fine-tuning after pruning: the architecture's own training loop (dlopt.train's family and engine) on
the data the run was trained on, keeping the weights of the best validation epoch."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from dlopt.core.warn import count
from dlopt.prune.config import PruneConfig
from dlopt.tasks.evaluator import Evaluator

LR_FACTOR = 0.5  # fine-tuning starts at half the training learning rate (then the same warm-up + cosine)
DEFAULT_EPOCHS = 3  # fine-tuning when --finetune-epochs is not given and the run was trained on data


def resolve_finetune(cfg: PruneConfig, evaluator: Evaluator | None, no_data: str = "") -> tuple[PruneConfig, str]:
    """The config with finetune_epochs decided (None: DEFAULT_EPOCHS where the run has training data, else 0),
    and one line for the report saying whether and why the model was fine-tuned."""
    asked = cfg.finetune_epochs
    if evaluator is None:
        why = f"not fine-tuned: no data to train on ({no_data or 'none found'})"
        return dataclasses.replace(cfg, finetune_epochs=0), why
    if asked is None:
        if evaluator.data_options.get("source") != "run":
            return dataclasses.replace(cfg, finetune_epochs=0), (
                "not fine-tuned: the model was not trained in this run, so there is no training data to recover "
                "on (pass --finetune-epochs N to train it on the spec's default dataset)")
        return dataclasses.replace(cfg, finetune_epochs=DEFAULT_EPOCHS), (
            f"fine-tuned {count(DEFAULT_EPOCHS, 'epoch')} on the run's training data by default "
            "(--finetune-epochs 0 skips it)")
    if asked == 0:
        return cfg, "not fine-tuned (--finetune-epochs 0)"
    return cfg, f"fine-tuned {count(asked, 'epoch')} (--finetune-epochs {asked}) on {_source(evaluator)}"


def _source(evaluator: Evaluator) -> str:
    return "the run's training data" if evaluator.data_options.get("source") == "run" else \
        "the spec's default dataset (the run has no training data)"


def finetune(model: nn.Module, evaluator: Evaluator, epochs: int, lr: float | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Train `model` (whole model, in place) for `epochs`; loads the best validation epoch's weights back."""
    from dlopt.train.engine import Loop, fit

    base = training_family(evaluator, evaluator.task.seed)
    hp = dataclasses.replace(base.hp, epochs=epochs, lr=lr if lr is not None else base.hp.lr * LR_FACTOR,
                             patience=0)
    family = type(base)(base.spec, base.model_cfg, base.data, hp, base.rt, seed)
    best: dict[str, Any] = {}

    def keep_best(epoch: int, _row: dict[str, Any]) -> None:
        if loop.state.best_epoch == epoch:
            best["state"] = copy.deepcopy(model.state_dict())

    loop = Loop(family, model, None, None, keep_best)
    fit(loop)
    if "state" in best:
        model.load_state_dict(best["state"])
    model.eval()
    return {"epochs": loop.state.epoch, "best_epoch": loop.state.best_epoch, "lr": hp.lr,
            "stopped": loop.stopped, "history": loop.state.history}


def taylor_loss(evaluator: Evaluator) -> Any:
    """A loss on one training batch for Taylor importance, or None when the family has no plain loss (GAN)."""
    from dlopt.train.family import Family

    family = training_family(evaluator, evaluator.task.seed)
    if type(family).loss is Family.loss:
        return None
    (x, y), _ = next(iter(family.epoch_batches(0)))

    def loss(model: nn.Module) -> torch.Tensor:
        return family.loss(model, x, y)

    return loss


def training_family(evaluator: Evaluator, seed: int) -> Any:
    """The spec's training loop (dlopt.train's family) on the evaluator's data and device, with the family's
    default hyperparameters: fine-tuning is training, the one part of pruning that imports dlopt.train."""
    from dlopt.train.config import resolve_hparams
    from dlopt.train.families import get_family

    task = evaluator.task
    family_cls = get_family(task.spec)
    hp = resolve_hparams(family_cls.defaults, task.spec.train_defaults, {})
    rt = dataclasses.replace(task.rt, clip_norm=hp.clip_norm)
    return family_cls(task.spec, task.model_cfg, task.data, hp, rt, seed)
