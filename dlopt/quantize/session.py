"""Everything one quantization needs, built once: the fp32 module, data, judge, the fp32 ONNX, a builder."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.quantize.calibrate import (
    Batches,
    Inputs,
    calibration_inputs,
    file_split,
    inputs_file,
    random_inputs,
    split_inputs,
)
from dlopt.quantize.config import Method, QuantizeConfig
from dlopt.quantize.judge import Judge
from dlopt.quantize.recipe import Built, Recipe, backend

FAST_CALIBRATION = 64  # samples used while ranking layers (the final build uses all of them)
PROBE_SAMPLES = 256
HELD_SAMPLES = 1024
SAMPLE_ELEMENTS = 3 * 32 * 32  # the counts above are for samples this size; larger ones get proportionally fewer
MIN_RANDOM_SAMPLES = 32


@dataclass
class Session:
    target: Any  # dlopt.contract.target.Target
    cfg: QuantizeConfig
    work: Path  # scratch directory outside the run: candidates are not variants
    module: Any = None
    judge: Judge | None = None
    calib: Inputs | None = None
    fp32: Any = None  # ort_quant.Fp32Onnx
    notes: list[str] = field(default_factory=list)
    _count: Any = field(default_factory=itertools.count)

    @property
    def spec(self) -> Any:
        return self.target.spec

    @property
    def model_cfg(self) -> Any:
        return self.target.config

    def example(self, batch: int = 1) -> tuple[Any, ...]:
        from dlopt.models.registry import make_inputs

        return make_inputs(self.spec, self.model_cfg, batch, seed=self.cfg.seed)

    def build(self, recipe: Recipe, fast: bool = False) -> Built:
        """Build `recipe` into a scratch file of its backend's format (dlopt.quantize.recipe.BACKENDS)."""
        from dlopt.runtime.formats import FORMAT_SUFFIX

        batches = self.calib.batches
        if fast:
            keep = max(1, FAST_CALIBRATION // max(1, batches.sizes[0]))
            batches = batches[:keep]
        found = backend(recipe.backend)
        dst = self.work / f"c{next(self._count)}" / f"model{FORMAT_SUFFIX[found.writes]}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        return found.build(self, recipe, batches, dst)

    def has_int8(self, built: Built) -> bool:
        return backend(built.recipe.backend).has_int8(built)


def _fits(module: Any, batches: Batches | None) -> Batches | None:
    """The batches if the module runs on them (the data may not fit an untrained, resized model), else None."""
    import torch

    if not batches:
        return None
    try:
        with torch.inference_mode():
            module(*batches[0])
    except Exception:  # shapes or vocabulary out of range: random valid inputs instead (the report says so)
        return None
    return batches


def head_mismatch(module: Any, spec: Any, evaluator: Any, batches: Any) -> str | None:
    """Why the data's task metric means nothing for this model, when a classifier's head has another number of
    classes than the data (a torchvision model's 1000 on digits' 10); None when they match or cannot be told."""
    import torch

    from dlopt.models.spec import Task

    classes = (getattr(evaluator.data, "info", None) or {}).get("num_classes") if evaluator is not None else None
    if spec.task != Task.CLASSIFICATION or not isinstance(classes, int) or not batches:
        return None
    with torch.inference_mode():  # one sample tells the head's width (a 224x224 batch of 32 took seconds)
        out = module(*(t[:1] for t in batches[0]))
    out = out[0] if isinstance(out, tuple | list) else out
    width = out.shape[-1] if isinstance(out, torch.Tensor) and out.ndim >= 2 else None
    if width is None or width == classes or (classes == 2 and width == 1):
        return None
    name = (getattr(evaluator.data, "info", None) or {}).get("name") or "run's"
    return f"no task metric: the model's head has {width} classes and the {name} data has {classes}"


def random_samples(wanted: int, example: tuple[Any, ...]) -> int:
    """How many random probe samples to judge on: `wanted` for samples up to 3x32x32 values, proportionally fewer
    for larger ones (at least MIN_RANDOM_SAMPLES): a 224x224 model judged on 1024 random images took minutes of
    eager and int8 runs per candidate on two cores, for agreement figures no more telling than 32 give."""
    values = sum(t[0].numel() for t in example if hasattr(t, "numel") and t.ndim > 0) or 1
    return max(min(wanted, MIN_RANDOM_SAMPLES), min(wanted, wanted * SAMPLE_ELEMENTS // values))


def open_session(target: Any, cfg: QuantizeConfig, work: Path, needs_calibration: bool,
                 progress: Callable[[str], None]) -> Session:
    from dlopt.models.registry import entry_module
    from dlopt.tasks.evaluator import evaluator_for

    s = Session(target, cfg, work)
    s.module = entry_module(target.model, target.spec).eval()
    progress("loading data")
    evaluator = evaluator_for(target.run, target.spec, target.config)
    spec, mcfg, seed = target.spec, target.config, cfg.seed
    few = _fits(s.module, split_inputs(evaluator, spec, "val", 2, seed))
    if evaluator is not None and few is None and spec.entry is None:
        s.notes.append(f"the {spec.dataset} data does not fit this model's inputs: judged on "
                       f"{'your inputs file' if inputs_file() else 'random valid inputs'}")
        evaluator = None
    mismatch = head_mismatch(s.module, spec, evaluator, few)
    probe = split_inputs(evaluator, spec, "val", PROBE_SAMPLES, seed)
    held = split_inputs(evaluator, spec, "test", HELD_SAMPLES, seed)
    run_dir, basis = target.run.path, ""
    # no data of its own, or data without a metric for this head (digits for a 1000-class model): the user's file
    if inputs_file() is not None and (mismatch or not (probe and held)):
        probe = held = None
        split = file_split(inputs_file(), spec, mcfg, cfg.calibration_samples, (PROBE_SAMPLES, HELD_SAMPLES), run_dir)
        s.calib, probe, held, basis = split.calib, split.probe, split.held, split.basis
        s.notes.append(split.note)
    else:
        s.calib = calibration_inputs(evaluator, spec, mcfg, cfg.calibration_samples, seed, needs_calibration,
                                     run_dir)
    probe = probe or random_inputs(spec, mcfg, random_samples(PROBE_SAMPLES, s.example()), seed + 1)
    held = held or random_inputs(spec, mcfg, random_samples(HELD_SAMPLES, s.example()), seed + 2)
    s.judge = Judge(evaluator, spec, target.model, s.module, probe, held, basis=basis)
    if mismatch:  # the metric would be a number about nothing (a 1000-class head scored on digits' 10 classes)
        s.judge.metric_broken = mismatch
        s.notes.append(f"{mismatch}; judged by agreement with the fp32 model instead (top-1 agreement, error)")
    flat = s.judge.flat_inputs_note() if not s.judge.uses_metric else None
    s.notes += [flat] if flat else []
    if _reads_fp32_onnx(cfg):
        from dlopt.quantize.ort_quant import Fp32Onnx

        exported = verified_export(target, str(cfg.exporter))
        s.notes += [f"int8 built from the run's verified fp32 export {exported.name} (not exported again)"] \
            if exported else []
        s.fp32 = Fp32Onnx(s.module, spec, mcfg, work, s.notes, cfg.exporter, exported)
    return s


def _reads_fp32_onnx(cfg: QuantizeConfig) -> bool:
    """Whether a backend the config may build on quantizes the fp32 ONNX export, for a method it builds."""
    for name in (cfg.backend, *cfg.auto_backends):
        found = backend(name)
        if found.reads_fp32_onnx and (cfg.method == Method.AUTO or cfg.method in found.offers()):
            return True
    return False


def verified_export(target: Any, exporter: str) -> Path | None:
    """The run's model.onnx when the export stage made it from this very checkpoint (its sha256 as recorded) with
    this exporter, dynamic batch, the default opset, weights inline, verified it, and vouches for it still (the
    run's trust rule, `Run.artifact_status`): an export of the same module the quantizer would repeat (resnet50 at
    224: ~25 s); else None."""
    from dlopt.core.fileio import sha256_file
    from dlopt.models.spec import ExportFormat
    from dlopt.runtime.formats import file_name

    run = target.run
    stages = run.manifest().get("stages", {})  # schema-checked; the quantize stage has just read it too
    stage = stages.get("export") or {}
    config, onnx = stage.get("config") or {}, (stage.get("metrics") or {}).get(str(ExportFormat.ONNX)) or {}
    details, model = onnx.get("details") or {}, run.path / file_name(ExportFormat.ONNX)
    if target.spec.entry is not None or stage.get("status") != "done" or not onnx.get("verified") or \
            details.get("exporter") != exporter or details.get("external_data") or not config.get("dynamic") or \
            config.get("opset") is not None or not model.is_file():
        return None
    status = run.artifact_status(model, stages)
    checkpoint = Path(target.checkpoint).resolve()
    if not status.trusted or status.stage != "export" or not checkpoint.is_relative_to(run.path.resolve()):
        return None
    recorded = {str(f.get("path")): f.get("sha256") for f in stage.get("inputs", [])}
    return model if recorded.get(str(checkpoint.relative_to(run.path.resolve()))) == sha256_file(checkpoint) else None
