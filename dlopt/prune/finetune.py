"""Fine-tuning after pruning: the architecture's own training loop (dlopt.train's family and engine) on
the data the run was trained on, keeping the weights of the best validation epoch. Classifiers learn from the
unpruned model too (knowledge distillation, `PruneConfig.distill`): the loss adds the KL divergence between the
teacher's and the student's logits softened by a temperature, to the family's own task loss."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from dlopt.core.warn import count
from dlopt.prune.config import DEFAULT_EPOCHS, DEPTH_EPOCHS, PruneConfig
from dlopt.tasks.evaluator import Evaluator

LR_FACTOR = 0.5  # fine-tuning starts at half the training learning rate (then the same warm-up + cosine)
TEMPERATURE = 4.0  # softened logits carry the teacher's ranking of the wrong classes (Hinton et al. use 2-20)
KL_WEIGHT = 0.5  # loss = (1 - w) * task loss + w * T^2 * KL(teacher || student)


def default_epochs(dropped: int = 0, found: int = 0) -> int:
    """Fine-tuning epochs when none are asked for: DEFAULT_EPOCHS, plus DEPTH_EPOCHS times the share of the
    model's residual blocks removed (rounded up), since a removed block's work has to be relearned elsewhere."""
    if not dropped or not found:
        return DEFAULT_EPOCHS
    return DEFAULT_EPOCHS + math.ceil(DEPTH_EPOCHS * min(dropped, found) / found - 1e-9)


def resolve_finetune(cfg: PruneConfig, evaluator: Evaluator | None, no_data: str = "",
                     blocks_found: int = 0) -> tuple[PruneConfig, str]:
    """The config with finetune_epochs decided (None: `default_epochs` where the run has training data, else 0;
    `blocks_found`: the model's residual blocks, of which cfg.drop_blocks go), and one line for the report saying
    whether and why the model was fine-tuned (and whether distilled)."""
    cfg, why = _resolve_epochs(cfg, evaluator, no_data, blocks_found)
    if not cfg.finetune_epochs or evaluator is None:
        return cfg, why
    if cfg.distill and distills(evaluator, nn.Identity()):
        return cfg, (f"{why}; distilled from the unpruned model (KL on logits at T={TEMPERATURE:g}, weight "
                     f"{KL_WEIGHT:g}; --no-distill: the task loss alone)")
    return cfg, why + ("; not distilled (--no-distill)" if not cfg.distill else "")


def _resolve_epochs(cfg: PruneConfig, evaluator: Evaluator | None, no_data: str,
                    blocks_found: int) -> tuple[PruneConfig, str]:
    asked = cfg.finetune_epochs
    if evaluator is None:
        why = f"not fine-tuned: no data to train on ({no_data or 'none found'})"
        return dataclasses.replace(cfg, finetune_epochs=0), why
    if asked is None:
        if evaluator.data_options.get("source") != "run":
            return dataclasses.replace(cfg, finetune_epochs=0), (
                "not fine-tuned: the model was not trained in this run, so there is no training data to recover "
                "on (pass --finetune-epochs N to train it on the spec's default dataset)")
        epochs = default_epochs(cfg.drop_blocks, blocks_found)
        depth = (f": {DEFAULT_EPOCHS}, plus {epochs - DEFAULT_EPOCHS} for the {cfg.drop_blocks} of "
                 f"{blocks_found} residual blocks removed" if epochs > DEFAULT_EPOCHS else "")
        return dataclasses.replace(cfg, finetune_epochs=epochs), (
            f"fine-tuned {count(epochs, 'epoch')} on the run's training data by default{depth} "
            "(--finetune-epochs N sets it, 0 skips it)")
    if asked == 0:
        return cfg, "not fine-tuned (--finetune-epochs 0)"
    return cfg, f"fine-tuned {count(asked, 'epoch')} (--finetune-epochs {asked}) on {_source(evaluator)}"


def _source(evaluator: Evaluator) -> str:
    return "the run's training data" if evaluator.data_options.get("source") == "run" else \
        "the spec's default dataset (the run has no training data)"


def distill_loss(task_loss: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor,
                 temperature: float = TEMPERATURE, weight: float = KL_WEIGHT) -> torch.Tensor:
    """(1 - w) * task loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T)), logits (B, C); the T^2
    keeps the KL term's gradients at the task loss's scale whatever the temperature."""
    import torch.nn.functional as F

    soft_s = F.log_softmax(student.float() / temperature, dim=-1)
    soft_t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)
    kl = F.kl_div(soft_s, soft_t, log_target=True, reduction="batchmean") * temperature ** 2
    return (1.0 - weight) * task_loss + weight * kl


class _Distilling:
    """Mixed in before a training family: its own loss on the student, plus the KL term against `teacher` on the
    very inputs the family fed the student (augmented batch, several inputs alike)."""

    teacher: nn.Module

    def loss(self, model: nn.Module, x: Any, y: Any) -> torch.Tensor:
        seen: dict[str, Any] = {}

        def student(*args: Any) -> Any:
            seen["args"], seen["out"] = args, model(*args)
            return seen["out"]

        task = super().loss(student, x, y)  # type: ignore[misc]
        out = seen.get("out")
        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            return task  # not logits: the task loss alone
        with torch.no_grad():
            logits = self.teacher(*seen["args"])
        if not isinstance(logits, torch.Tensor) or logits.shape != out.shape:
            return task
        return distill_loss(task, out, logits)


def distills(evaluator: Evaluator, teacher: nn.Module | None) -> bool:
    """Whether fine-tuning distils: a teacher was given and the task is classification (logits to soften)."""
    from dlopt.models.spec import Task

    return teacher is not None and evaluator.task.spec.task == Task.CLASSIFICATION


def tuning_family(evaluator: Evaluator, epochs: int, lr: float | None, seed: int,
                  teacher: nn.Module | None = None) -> Any:
    """The training family fine-tuning runs: the spec's own, at LR_FACTOR of its learning rate, no early stop;
    distilling from a copy of `teacher` where `distills` says so."""
    base = training_family(evaluator, evaluator.task.seed)
    hp = dataclasses.replace(base.hp, epochs=epochs, lr=lr if lr is not None else base.hp.lr * LR_FACTOR,
                             patience=0)
    cls = type(base)
    if distills(evaluator, teacher):
        cls = type(f"Distilling{cls.__name__}", (_Distilling, cls), {})
    family = cls(base.spec, base.model_cfg, base.data, hp, base.rt, seed)
    if distills(evaluator, teacher):
        family.teacher = copy.deepcopy(teacher).to(family.rt.device).eval().requires_grad_(False)  # type: ignore[union-attr]
    return family


def finetune(model: nn.Module, evaluator: Evaluator, epochs: int, lr: float | None = None,
             seed: int = 0, teacher: nn.Module | None = None) -> dict[str, Any]:
    """Train `model` (whole model, in place) for `epochs`; loads the best validation epoch's weights back. With a
    `teacher` (the unpruned model) a classifier is distilled from it as well (distill_loss)."""
    from dlopt.train.engine import Loop, fit

    family, distilled = tuning_family(evaluator, epochs, lr, seed, teacher), distills(evaluator, teacher)
    hp = family.hp
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
            "stopped": loop.stopped, "history": loop.state.history,
            "distill": {"teacher": "the unpruned model", "temperature": TEMPERATURE, "kl_weight": KL_WEIGHT}
            if distilled else None}


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
