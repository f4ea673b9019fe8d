"""What a prune learns from the run's data: the evaluator, the training batches that rank residual blocks, the
Taylor loss, fine-tuning after each step (distilled where PruneConfig.distill says) and the --target-speedup loop.
Every function here takes the evaluator or None (a run with no data to learn from) and does nothing without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlopt.contract.target import Target
from dlopt.core.errors import ConfigError
from dlopt.core.warn import count
from dlopt.prune.config import PruneConfig

Progress = Callable[[str], None]


def score(evaluator: Any, model: Any) -> float | None:
    return None if evaluator is None else round(evaluator.score(model), 6)


def finetune_hook(cfg: PruneConfig, evaluator: Any, log: list[dict[str, Any]], progress: Progress,
                  teacher: Any = None) -> Any:
    """Fine-tuning spread over the iterative steps (the last step gets the remainder)."""
    if evaluator is None or cfg.finetune_epochs == 0:
        return None
    from dlopt.prune.finetune import finetune

    share = cfg.finetune_epochs // cfg.iterative_steps

    def hook(model: Any, step: int) -> None:
        epochs = share + (cfg.finetune_epochs % cfg.iterative_steps if step == cfg.iterative_steps else 0)
        if epochs:
            progress(f"fine-tuning after step {step}/{cfg.iterative_steps} ({count(epochs, 'epoch')})")
            log.append({"step": step, **finetune(model, evaluator, epochs, cfg.finetune_lr, cfg.seed, teacher)})

    return hook


def metric_after_prune(cfg: PruneConfig, evaluator: Any, spec: Any, example: tuple, target: Target) -> float | None:
    """The metric right after pruning, before any fine-tuning (a second, untrained prune of the same copy)."""
    if evaluator is None or cfg.finetune_epochs == 0:
        return None
    from dlopt.prune.model import prune_model

    plain, _ = prune_model(target.model, spec, cfg, example, loss_fn=taylor(cfg, evaluator),
                           probe=probe(cfg, evaluator))
    return score(evaluator, plain)


def to_speedup(target: Target, cfg: PruneConfig, evaluator: Any, example: tuple, log: list[dict[str, Any]],
               say: Progress) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """--target-speedup: steps of pruning and fine-tuning until the latency target or the --max-drop budget."""
    from dlopt.prune.finetune import finetune
    from dlopt.prune.speedup import prune_to_speedup, timer_for

    def tune(model: Any, step: int) -> None:
        say(f"fine-tuning after step {step} ({count(cfg.finetune_epochs, 'epoch')})")
        log.append({"step": step, **finetune(model, evaluator, cfg.finetune_epochs, cfg.finetune_lr, cfg.seed,
                                             target.model if cfg.distill else None)})

    timer = timer_for(target.spec, target.config, cfg.target_runtime, cfg.target_batch)
    pruned, info, path = prune_to_speedup(
        target.model, target.spec, cfg, example, timer, lambda m: score(evaluator, m),
        evaluator.higher_is_better if evaluator else True, tune if evaluator and cfg.finetune_epochs else None, say)
    if not info:
        raise ConfigError(f"the first step (keeping {path[1]['channels_kept']:g} of the channels) already loses "
                          f"{path[1]['drop_points']:g} points, over --max-drop {cfg.max_drop:g}; nothing was saved: "
                          "raise --max-drop or fine-tune longer (--finetune-epochs)")
    return pruned, info, path


def taylor(cfg: PruneConfig, evaluator: Any) -> Any:
    from dlopt.prune.config import Importance
    from dlopt.prune.finetune import taylor_loss

    return taylor_loss(evaluator) if cfg.importance == Importance.TAYLOR and evaluator is not None else None


def blocks_found(target: Target, cfg: PruneConfig, example: tuple) -> int:
    """The model's residual blocks, where some are to go and the fine-tuning epochs are dlopt's to choose."""
    if not cfg.drop_blocks or cfg.finetune_epochs is not None:
        return 0
    from dlopt.models.registry import entry_module
    from dlopt.prune.depth import residual_blocks

    return len(residual_blocks(target.model, entry_module(target.model, target.spec), example))


PROBE_BATCHES = 2  # training batches that rank the residual blocks --drop-blocks removes


def probe(cfg: PruneConfig, evaluator: Any) -> list[tuple[Any, ...]]:
    """The whole model's inputs of a few training batches (no labels needed), or none without data / blocks."""
    if not cfg.drop_blocks or evaluator is None:
        return []
    from dlopt.prune.finetune import training_family

    out: list[tuple[Any, ...]] = []
    for (x, _y), _ in training_family(evaluator, cfg.seed).epoch_batches(0):
        out.append(x if isinstance(x, tuple) else (x,))
        if len(out) >= PROBE_BATCHES:
            break
    return out


def evaluator(target: Target, cfg: PruneConfig) -> tuple[Any, str]:
    """The run's evaluator, or None and why: no dataset for this family, or a dataset the model cannot read (a
    fresh --tiny model evaluated on the spec's default data, whose vocabulary is larger than the tiny one)."""
    from dlopt.tasks.evaluator import evaluator_for

    evaluator = evaluator_for(target.run, target.spec, target.config, limit=cfg.data_limit)
    if evaluator is None:
        return None, "this family trains without a dataset"
    needs = dict(getattr(evaluator.data, "config_overrides", {}) or {})
    misfit = {k: v for k, v in needs.items() if hasattr(target.config, k) and getattr(target.config, k) != v}
    if misfit:
        got = ", ".join(f"{k}={getattr(target.config, k)} (the data needs {v})" for k, v in misfit.items())
        return None, f"the model ({got}) cannot read the spec's default data; train it first (dlopt train)"
    return evaluator, ""
