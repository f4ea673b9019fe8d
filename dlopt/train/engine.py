"""The loop every family shares: epochs, LR schedule, validation, early stopping, best checkpoint,
metrics.jsonl, and a resumable state written atomically after every epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlopt.core.fileio import atomic_path, remove_stale_temps
from dlopt.core.warn import count
from dlopt.models.checkpoint import save_checkpoint, with_versions
from dlopt.train.bn_stats import BNRefresh, plan, refresh
from dlopt.train.family import Family, NonFiniteLoss, warmup_cosine
from dlopt.train.state import TrainState, has_state, load_state, rng_state, save_state, set_rng_state

MODEL_RECORD = "model.json"
METRICS = "metrics.jsonl"
EpochHook = Callable[[int, dict[str, Any]], None]


@dataclass
class Loop:
    family: Family
    model: torch.nn.Module
    run_dir: Path | None  # None on workers other than rank 0: they write nothing
    progress: Any = None  # a rich Progress task updater, or None
    on_epoch: EpochHook | None = None
    state: TrainState = field(default_factory=TrainState)
    stopped: str | None = None
    bn: BNRefresh | None = None  # set by fit where BatchNorm statistics are re-estimated before validating

    @property
    def writes(self) -> bool:
        return self.run_dir is not None


def _objects(loop: Loop, opts: dict, scheds: dict) -> dict[str, Any]:
    tensors, meta = loop.family.extra_state()
    return {"model": loop.model.state_dict(), "optimizers": {k: o.state_dict() for k, o in opts.items()},
            "schedulers": {k: s.state_dict() for k, s in scheds.items()}, "rng": rng_state(),
            "family": {"tensors": tensors, "meta": meta}}


def _restore(loop: Loop, opts: dict, scheds: dict, resume_dir: Path) -> None:
    objects, loop.state = load_state(resume_dir)
    loop.model.load_state_dict(with_versions(objects["model"], None, loop.model))  # safetensors keeps no versions
    for k, o in opts.items():
        o.load_state_dict(objects["optimizers"][k])
    for k, s in scheds.items():
        s.load_state_dict(objects["schedulers"][k])
    set_rng_state(objects["rng"])
    loop.family.load_extra_state(objects["family"]["tensors"], objects["family"]["meta"])


def _better(mode: str, value: float, best: float | None, loss: float | None, best_loss: float | None) -> bool:
    """A better metric, or the same metric (accuracy on a small split ties often) at a lower validation loss."""
    if mode == "last" or best is None:
        return True
    if value == best and loss is not None and best_loss is not None:
        return loss < best_loss
    return value > best if mode == "max" else value < best


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import json

    with atomic_path(run_dir / METRICS) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in history))


def _end_epoch(loop: Loop, epoch: int, train_stats: dict, val: dict, seconds: float, opts: dict, scheds: dict) -> None:
    fam, st = loop.family, loop.state
    metric = fam.spec.metric
    lr = next(iter(opts.values())).param_groups[0]["lr"] if opts else fam.hp.lr
    row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items()},
           **{f"val_{k}": v for k, v in val.items()}, "lr": lr, "seconds": round(seconds, 3),
           **({"bn_batches": loop.bn.batches} if loop.bn else {})}
    st.history.append(row)
    if _better(fam.mode, val[metric], st.best, val.get("loss"), st.best_loss):
        st.best, st.best_epoch, st.bad_epochs, st.best_loss = val[metric], epoch + 1, 0, val.get("loss")
        if loop.writes:
            save_checkpoint(loop.model, fam.spec, fam.model_cfg, loop.run_dir / MODEL_RECORD,
                            metrics={"epoch": epoch + 1, f"val_{metric}": val[metric]}, extra={"source": "dlopt train"})
    else:
        st.bad_epochs += 1
    st.epoch = epoch + 1
    if loop.writes:  # the state goes last: it is the commit point a resume starts from
        _write_metrics(loop.run_dir, st.history)
        save_state(loop.run_dir, _objects(loop, opts, scheds), st)


def fit(loop: Loop, resume_dir: Path | None = None) -> Loop:
    """Train from epoch 0, or from the state saved in `resume_dir`; returns the loop with its history."""
    fam, hp = loop.family, loop.family.hp
    opts = fam.optimizers(loop.model)
    total_steps = hp.epochs * fam.steps_per_epoch()
    scheds = {k: warmup_cosine(o, hp, total_steps) for k, o in opts.items()}
    if resume_dir is not None:
        if loop.writes:  # a killed process leaves its temporary files; they were never the real ones
            remove_stale_temps(Path(resume_dir))
        if has_state(resume_dir):  # else it was stopped before its first epoch ended: start from epoch 0
            _restore(loop, opts, scheds, resume_dir)
    on_step = loop.progress.step if loop.progress else (lambda stats: None)
    loop.bn = plan(fam, loop.model, total_steps)
    if loop.progress:
        loop.progress.start(total_steps, loop.state.epoch * fam.steps_per_epoch())
        if loop.bn:
            loop.progress.note(loop.bn.note)
    for epoch in range(loop.state.epoch, hp.epochs):
        t0 = time.perf_counter()
        try:
            train_stats = fam.run_epoch(loop.model, opts, list(scheds.values()), epoch, on_step)
        except NonFiniteLoss as exc:
            loop.stopped = f"non-finite loss: {exc}; kept the checkpoint of epoch {loop.state.best_epoch}"
            break
        fam.rt.sync_buffers(loop.model)
        if loop.bn:  # the best checkpoint, saved next, keeps these statistics: the test and exports see them
            refresh(loop.bn, fam, loop.model)
        val = fam.evaluate(loop.model, "val")
        _end_epoch(loop, epoch, train_stats, val, time.perf_counter() - t0, opts, scheds)
        if loop.progress:
            loop.progress.epoch_done(epoch + 1, val.get(fam.spec.metric))
        if loop.on_epoch:
            loop.on_epoch(epoch + 1, loop.state.history[-1])
        if fam.mode != "last" and hp.patience and loop.state.bad_epochs >= hp.patience:
            loop.stopped = f"early stop: no better validation {fam.spec.metric} for {count(hp.patience, 'epoch')}"
            break
    return loop
