"""What a stage works on: an architecture name, a checkpoint, a run directory, or the latest run.

Every stage resolves its target the same way (`resolve_target`), so `dlopt export resnet18`,
`dlopt export --checkpoint ck.json`, `dlopt export artifacts/lenet5/<run>` and a bare `dlopt export`
(the latest run) all give a model, its spec and config, and the run the stage records into.
A new run always stores the model it starts from (`model.safetensors` + `model.json`), so every later
stage on that run sees the very same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.checkpoint import load_checkpoint, save_checkpoint
from dlopt.errors import InputFileError, UsageError
from dlopt.fileio import inside, within
from dlopt.options import config_dict
from dlopt.registry import create_model, get_spec, make_model_config, spec_for
from dlopt.runs import DEFAULT_ROOT, MANIFEST, Run, resolve_run
from dlopt.spec import ArchSpec

MODEL_RECORD = "model.json"


@dataclass(frozen=True)
class TargetOptions:
    name: str | None = None  # architecture name, checkpoint file, or run directory; None = latest run
    checkpoint: Path | None = None
    run: Path | None = None
    root: Path = DEFAULT_ROOT
    sets: dict[str, Any] | None = None
    input_size: int | None = None
    input_shape: tuple[int, ...] | None = None
    tiny: bool = False
    seed: int = 0
    trust_pickle: bool = False
    # A checkpoint record inside the run to start from instead of the run's model (e.g. "pruned/model.json"):
    # how a later stage works on an earlier stage's variant without starting a new run.
    variant: str | None = None
    # --weights for a model built by name: torchvision weights (DEFAULT, IMAGENET1K_V1) or a state dict file
    weights: Path | str | None = None
    # A run the caller already holds open (the pipeline's): the target is that run itself, not a path to re-resolve
    open_run: Run | None = None


@dataclass(frozen=True)
class Target:
    model: Any  # nn.Module in eval mode
    spec: ArchSpec
    config: Any
    run: Run
    checkpoint: Path  # the record the model was loaded from (inside the run for new runs)


def _start_run(opts: TargetOptions, model: Any, spec: ArchSpec, cfg: Any, source: str, metrics: dict | None = None,
               weights: dict[str, Any] | None = None) -> Target:
    loaded = {"weights_source": weights} if weights else {}  # the weights loaded: name or path, and sha256
    run = Run.create(opts.root, spec.name, {"arch": spec.name, "config": config_dict(cfg), "source": source,
                                             "checkpoint": MODEL_RECORD, **loaded})
    record = save_checkpoint(model, spec, cfg, run.path / MODEL_RECORD, metrics=metrics,
                             extra={"source": source, **loaded})
    return Target(model, spec, cfg, run, record)


def _from_run(run: Run, opts: TargetOptions) -> Target:
    manifest = run.manifest()  # schema-checked: model.checkpoint is a string
    if opts.variant:  # the caller's own words: a name that leaves the run is an unsafe output name (exit 5)
        record = inside(run.path, run.path / opts.variant)
    else:  # the manifest's words: data, followed only inside the run
        record = within(run.path, manifest.get("model", {}).get("checkpoint", MODEL_RECORD), "the run's checkpoint")
    ck = load_checkpoint(record, trust_pickle=opts.trust_pickle)
    return Target(ck.model, ck.spec, ck.config, run, record)


def resolve_target(opts: TargetOptions) -> Target:
    """Resolve the stage's target; builds with seed `opts.seed` so a fresh model is reproducible."""
    name = opts.name
    if opts.open_run is not None and opts.weights is None:
        return _from_run(opts.open_run, opts)
    if opts.weights is not None and (opts.checkpoint is not None or not name or Path(name).is_dir()
                                     or Path(name).suffix in {".json", ".safetensors"}):
        raise UsageError("--weights loads into a model built by name (an architecture, torchvision:NAME or "
                         "file.py:fn); a checkpoint or run already has its weights")
    if name and Path(name).is_dir() and (Path(name) / MANIFEST).exists():
        return _from_run(Run.open(Path(name)), opts)
    if name and Path(name).suffix in {".json", ".safetensors"} and opts.checkpoint is None:
        opts = TargetOptions(**{**opts.__dict__, "name": None, "checkpoint": Path(name)})
        name = None
    if opts.checkpoint is not None:
        ck = load_checkpoint(opts.checkpoint, expected_arch=name, trust_pickle=opts.trust_pickle)
        return _start_run(opts, ck.model, ck.spec, ck.config, f"checkpoint {opts.checkpoint}", ck.record.get("metrics"))
    if name:
        import torch

        spec = get_spec(name)
        cfg = make_model_config(spec, opts.sets, input_size=opts.input_size, input_shape=opts.input_shape, tiny=opts.tiny)
        spec = spec_for(spec, cfg)  # a user model's --input-shape NAME:DTYPE:DIMS,... picks its spec
        torch.manual_seed(opts.seed)
        if opts.weights is not None:
            from dlopt.weights import build_with_weights

            model, cfg, info = build_with_weights(spec, cfg, opts.weights)
            return _start_run(opts, model, spec, cfg, info.source, weights=info.to_dict())
        return _start_run(opts, create_model(spec, cfg), spec, cfg, f"built with seed {opts.seed} (untrained)")
    if opts.sets or opts.input_size or opts.input_shape:
        raise InputFileError("build options need an architecture name; the latest run's model is already built")
    return _from_run(resolve_run(opts.root, opts.run), opts)
