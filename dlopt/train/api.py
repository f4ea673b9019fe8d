"""`train(cfg)`: resolve the spec, data, model and run, then hand the loop to the engine."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Any

from dlopt.core.errors import ConfigError, InputFileError, UnsupportedError, UsageError
from dlopt.core.results import TrainResult, write_result
from dlopt.core.runs import Run, StageRecord
from dlopt.models.options import config_dict
from dlopt.models.spec import ArchSpec
from dlopt.train.config import RESULT, HParams, TrainConfig, build_defaults, resolve_hparams
from dlopt.train.engine import METRICS, MODEL_RECORD, EpochHook, Loop, fit


def _model_config(spec: ArchSpec, cfg: TrainConfig, data: Any) -> Any:
    """spec defaults < train_defaults build options < tiny < --set < what the data needs (contradictions fail)."""
    from dlopt.models.registry import make_model_config

    overrides = {**build_defaults(spec.train_defaults), **(dict(spec.tiny) if cfg.tiny else {}), **dict(cfg.sets)}
    first = make_model_config(spec, overrides)
    needed = dict(getattr(data, "config_overrides", {}) or {}) if data is not None else {}
    final = make_model_config(spec, {**overrides, **needed})
    for key in needed:
        if key in cfg.sets and getattr(first, key) != getattr(final, key):
            raise ConfigError(f"--set {key}={cfg.sets[key]} contradicts the data, which needs {key}="
                              f"{getattr(final, key)}; drop --set {key}")
    return final


def _load_data(spec: ArchSpec, cfg: TrainConfig, family: Any) -> Any:
    if not family.uses_data:
        if cfg.data or cfg.data_path:
            raise ConfigError(f"{spec.name} trains in its environment ({spec.dataset}); drop --data/--data-path")
        return None
    from dlopt.data import load_data

    probe = _model_config(spec, cfg, None)
    return load_data(spec, probe, cfg.data, path=cfg.data_path, seed=cfg.seed, limit=cfg.limit,
                     value_range=family.value_range)


def _data_summary(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    info = dict(getattr(data, "info", {}) or {})
    info.setdefault("sizes", {s: len(getattr(data, s)) for s in ("train", "val", "test")})
    return json.loads(json.dumps(info, default=str))


# Options a resumed run keeps from its start: changing one would make a run that is neither the old one nor a
# new one. (--epochs is the exception: see _resumed_epochs.)
KEPT_ON_RESUME = ("arch", "data", "data_path", "batch_size", "lr", "optimizer", "limit", "sets", "tiny")


def _check_kept(cfg: TrainConfig, old: TrainConfig, run: Run) -> None:
    for name in KEPT_ON_RESUME:
        new, was = getattr(cfg, name), getattr(old, name)
        if new in (None, "", False) or (name == "sets" and not new) or new == was:
            continue  # not given, or the same as the run's
        flag = "NAME" if name == "arch" else f"--{name.replace('_', '-')}"
        raise UsageError(f"{flag} cannot change when resuming {run.path} (it was started with {name} "
                         f"{was if was not in (None, {}) else 'default'}); drop {flag}, or start a new run")


def _resumed_epochs(cfg: TrainConfig, old: TrainConfig, run: Run, stage: dict[str, Any]) -> int | None:
    """`--resume RUN --epochs N` trains on until N epochs in all (the LR schedule is stretched to N); when the
    run cannot get there, one line says why, instead of the option being ignored."""
    from dlopt.train.state import saved_progress

    if cfg.epochs is None:
        return old.epochs
    progress = saved_progress(run.path)
    done = progress.epoch if progress else 0
    if cfg.epochs <= done:
        raise UsageError(f"{run.path} has already trained {done} epoch(s), so --epochs {cfg.epochs} leaves nothing "
                         f"to train; give --epochs above {done} to train on, or start a new run")
    patience = (stage.get("config", {}).get("hparams") or {}).get("patience") or 0
    if progress and patience and progress.bad_epochs >= patience:
        raise UsageError(f"{run.path} stopped early after epoch {done} (no better validation metric for {patience} "
                         f"epochs), so it would stop again after one more epoch unless that one improves; start a "
                         f"new run with --epochs {cfg.epochs}")
    return cfg.epochs


def _resumed_config(cfg: TrainConfig) -> TrainConfig:
    """A resumed run continues with the options it was started with (so it ends as if never stopped); an
    option given that would change them is refused, except --epochs, which trains on to that total."""
    run = Run.open(cfg.resume)
    stage = run.manifest().get("stages", {}).get("train")
    if not stage or "train" not in stage.get("config", {}):
        raise InputFileError(f"{cfg.resume} has no dlopt train stage to resume; give a run made by dlopt train")
    from dlopt.core.user_code import require_trusted_name  # the manifest's arch is data, not code to import

    stored = stage["config"]["train"]
    require_trusted_name(stored.get("arch") if isinstance(stored, dict) else None, run.manifest_path)
    old = TrainConfig.from_json(stage["config"]["train"])
    _check_kept(cfg, old, run)
    return dataclasses.replace(old, epochs=_resumed_epochs(cfg, old, run, stage), resume=run.path, run_dir=run.path,
                               progress=cfg.progress, nproc_per_node=cfg.nproc_per_node,
                               torchrun_args=cfg.torchrun_args, amp=cfg.amp)


def train(cfg: TrainConfig, data: Any = None, on_epoch: EpochHook | None = None) -> TrainResult:
    """Train `cfg.arch` into a new run (or continue `cfg.resume`); `data` (a DataSplits) skips the data layer."""
    from dlopt.tasks.runtime import world

    if cfg.resume is not None:
        cfg = _resumed_config(cfg)
    if (cfg.nproc_per_node > 1 or cfg.torchrun_args) and world()[1] == 1:  # not yet inside a torchrun worker
        from dlopt.train.distributed import launch

        return launch(cfg)
    return _train_here(cfg, data, on_epoch)


def _setup(cfg: TrainConfig, data: Any) -> tuple[Any, Any, Any, HParams, Any, Any]:
    import torch

    from dlopt.models.registry import create_model, get_spec
    from dlopt.tasks.runtime import Runtime
    from dlopt.train.families import get_family

    spec = get_spec(cfg.arch)
    if not spec.supports("train"):
        raise UnsupportedError(f"{spec.name} cannot be trained: {spec.why_not('train')}")
    family_cls = get_family(spec)
    hp = resolve_hparams(family_cls.defaults, spec.train_defaults, cfg.user_hparams())
    rt = Runtime.create(hp.clip_norm, cfg.amp)
    if rt.world_size > 1 and not family_cls.distributed:
        raise UnsupportedError(f"the {family_cls.name} loop trains in one process; use --nproc-per-node 1")
    data = data if data is not None else _load_data(spec, cfg, family_cls)
    model_cfg = _model_config(spec, cfg, data)
    torch.manual_seed(cfg.seed)
    model = create_model(spec, model_cfg).to(rt.device)
    family = family_cls(spec, model_cfg, data, hp, rt, cfg.seed)
    return spec, model_cfg, model, hp, family, rt


def _open_run(cfg: TrainConfig, spec: ArchSpec, model_cfg: Any, model: Any) -> Run:
    from dlopt.models.checkpoint import save_checkpoint

    if cfg.run_dir is not None:
        run = Run.open(cfg.run_dir)
    else:
        run = Run.create(cfg.out, spec.name, {"arch": spec.name, "checkpoint": MODEL_RECORD},
                         stages={"train": {"status": "starting", "config": {"train": cfg.recorded()}}})  # resumable
    if cfg.resume is None or not (run.path / MODEL_RECORD).is_file():  # the initial weights: a run always has a model
        save_checkpoint(model, spec, model_cfg, run.path / MODEL_RECORD, metrics={"epoch": 0})

    def change(m: dict[str, Any]) -> None:
        m["model"].update({"arch": spec.name, "config": config_dict(model_cfg), "checkpoint": MODEL_RECORD,
                           "source": f"dlopt train (seed {cfg.seed})"})

    run.update(change)
    return run


def _train_here(cfg: TrainConfig, data: Any, on_epoch: EpochHook | None) -> TrainResult:
    spec, model_cfg, model, hp, family, rt = _setup(cfg, data)
    try:
        run = _open_run(cfg, spec, model_cfg, model) if rt.main else None
        stage_cfg = {"train": cfg.recorded(), "hparams": {k: str(v) if k == "optimizer" else v
                                                         for k, v in dataclasses.asdict(hp).items()},
                     "world_size": rt.world_size, "device": str(rt.device), "amp": str(rt.amp) if rt.amp else None}
        stage = run.stage("train", stage_cfg) if run else contextlib.nullcontext(StageRecord())
        with stage as rec:
            result = _run_loop(cfg, spec, model, family, run, on_epoch, rec)
        return result
    finally:
        rt.close()


def _run_loop(cfg: TrainConfig, spec: ArchSpec, model: Any, family: Any, run: Run | None, on_epoch: Any,
              rec: StageRecord) -> TrainResult:
    from dlopt.train.progress import TrainProgress

    t0 = time.perf_counter()
    bar = TrainProgress(f"train {spec.name}", spec.metric) if cfg.progress and family.rt.main else None
    loop = Loop(family, model, run.path if run else None, bar, on_epoch)
    try:
        fit(loop, cfg.resume)
    finally:
        if bar:
            bar.close()
    family.rt.barrier()
    if run is None:
        return _result(cfg, spec, family, loop, {}, time.perf_counter() - t0, "")
    test = _finish(run, spec, model, family, loop)
    result = _result(cfg, spec, family, loop, test, time.perf_counter() - t0, str(run.path))
    if loop.bn:
        result = dataclasses.replace(result, bn_stats=loop.bn.note)
    rec.metrics.update({f"test_{k}": v for k, v in test.items()})
    rec.metrics.update(best_epoch=loop.state.best_epoch, epochs_run=loop.state.epoch, stopped=loop.stopped,
                       **{f"best_val_{spec.metric}": loop.state.best})
    if loop.bn:
        rec.metrics["bn_stats"] = loop.bn.note
    write_result(dataclasses.replace(result, run_dir="."), run.path / RESULT)  # paths in run files are run-relative
    rec.outputs.extend(sorted(p for p in run.path.iterdir() if p.is_file() and not p.name.startswith(".")
                              and p.name != "manifest.json"))
    return result


def _finish(run: Run, spec: ArchSpec, model: Any, family: Any, loop: Loop) -> dict[str, float]:
    """Reload the best weights, measure the test split, and leave the curves and samples."""
    from dlopt.core.plotting import learning_curve
    from dlopt.models.checkpoint import load_weights, save_checkpoint

    load_weights(model, run.path / MODEL_RECORD, device=str(family.rt.device))
    test = family.evaluate(model, "test")
    metrics = {"epoch": loop.state.best_epoch, f"val_{spec.metric}": loop.state.best,
               **{f"test_{k}": v for k, v in test.items()}}
    save_checkpoint(model, spec, family.model_cfg, run.path / MODEL_RECORD, metrics=metrics, extra={"source": "dlopt train"})
    if loop.state.history:
        learning_curve(loop.state.history, spec.metric, run.path / "learning_curve.png", f"{spec.name}: {spec.trainer}")
    family.artifacts(model, run.path)
    return test


def _result(cfg: TrainConfig, spec: ArchSpec, family: Any, loop: Loop, test: dict, seconds: float, run_dir: str) -> TrainResult:
    hp = {k: str(v) if k == "optimizer" else v for k, v in dataclasses.asdict(family.hp).items()}
    return TrainResult(run_dir=run_dir, arch=spec.name, metric=spec.metric, test=test, best_epoch=loop.state.best_epoch,
                       epochs_run=loop.state.epoch, stopped=loop.stopped, seconds=round(seconds, 2), hparams=hp,
                       data=_data_summary(family.data), world_size=family.rt.world_size, device=str(family.rt.device),
                       history=tuple(loop.state.history))
