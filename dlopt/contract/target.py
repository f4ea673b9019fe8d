"""What a stage works on: an architecture name, a checkpoint, a run directory, a model folder, or the latest run.

This module alone decides what a name is (`locate`): a run directory (manifest.json), a checkpoint record, an
exported file, a Hugging Face model folder (config.json, no manifest.json; an architecture built from the folder),
an architecture, or nothing (the latest run). A stage never re-parses names: its caller resolves the target once
(`resolve_target(opts, check)`, or `Target.of_run` for a run it already holds open) and passes the `Target` in.
`check(spec)` is the stage's support check; it runs on the spec `locate` read (the registry's, or a checkpoint
record's, read without its weights) before any run directory is created.
A new run always stores the model it starts from (`model.safetensors` + `model.json`), so every later
stage on that run sees the very same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UsageError
from dlopt.core.fileio import inside, within
from dlopt.core.runs import DEFAULT_ROOT, MANIFEST, Run, resolve_run
from dlopt.models.checkpoint import load_checkpoint, read_record, record_spec, save_checkpoint
from dlopt.models.options import config_dict
from dlopt.models.registry import create_model, get_spec, make_model_config, spec_for
from dlopt.models.spec import ArchSpec
from dlopt.runtime.formats import is_artifact

MODEL_RECORD = "model.json"
RECORD_SUFFIXES = (".json", ".safetensors")
Check = Callable[[ArchSpec], None]  # a stage's support check: raises (UnsupportedError) when the spec rules it out


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
    max_length: int | None = None  # --max-length: a text model's example length (its seq_len build option)


class Kind(StrEnum):
    RUN = "run"  # a run directory (or the run the caller holds open)
    CHECKPOINT = "checkpoint"  # a checkpoint record (.json / .safetensors): a new run starts from it
    ARTIFACT = "artifact"  # an exported file (.onnx, .ts, .pt2, .xml): bench and verify take these
    ARCH = "arch"  # an architecture name: a new run with a fresh model
    LATEST = "latest"  # nothing named: the latest run under the root (or --run)


@dataclass(frozen=True)
class Located:
    kind: Kind
    path: Path | None = None  # the run directory, checkpoint record or artifact file
    name: str | None = None  # ARCH: the architecture; CHECKPOINT: the architecture the record must be of
    spec: ArchSpec | None = None  # ARCH / CHECKPOINT: known before any run directory is created
    run: Run | None = None  # RUN / LATEST: the run, opened


@dataclass(frozen=True)
class Target:
    model: Any  # nn.Module in eval mode
    spec: ArchSpec
    config: Any
    run: Run
    checkpoint: Path  # the record the model was loaded from (inside the run for new runs)

    @classmethod
    def of_run(cls, run: Run, variant: str | None = None, trust_pickle: bool = False) -> Target:
        """The model of a run the caller holds open (the pipeline's), or its `variant` record (pruned/model.json)."""
        return _from_run(run, variant, trust_pickle)


def _record_spec(path: Path, expected: str | None, trust_pickle: bool) -> ArchSpec:
    """A checkpoint's spec from its record (schema-checked), without loading the weights."""
    record, weights = read_record(path, trust_pickle)
    if expected and record["arch"] != expected:
        raise InputFileError(f"checkpoint is for {record['arch']}, not {expected}; pass a {expected} checkpoint")
    return record_spec(record, weights.with_suffix(".json"))


def locate(opts: TargetOptions) -> Located:
    """What the options name. The one place that decides it: no run directory is created, no weights are loaded."""
    name = opts.name
    if opts.open_run is not None and opts.weights is None:
        return Located(Kind.RUN, opts.open_run.path, run=opts.open_run)
    path = Path(name) if name else None
    is_record = path is not None and path.suffix in RECORD_SUFFIXES
    if opts.weights is not None and (opts.checkpoint is not None or path is None or path.is_dir() or is_record):
        raise UsageError("--weights loads into a model built by name (an architecture, torchvision:NAME or "
                         "file.py:fn); a checkpoint or run already has its weights")
    if path is not None and path.is_dir() and (path / MANIFEST).exists():
        return Located(Kind.RUN, path, run=Run.open(path))
    if name and (name.startswith("hf:") or (path is not None and path.is_dir())):
        return _model_folder(name, opts)
    if opts.checkpoint is not None or is_record:
        record, expected = (opts.checkpoint, name) if opts.checkpoint is not None else (path, None)
        return Located(Kind.CHECKPOINT, record, expected, _record_spec(record, expected, opts.trust_pickle))
    if name and is_artifact(name):
        return Located(Kind.ARTIFACT, path)
    if name and _looks_like_path(name) and path is not None and not path.exists():  # not an unknown architecture
        raise InputFileError(f"{name}: no such file or directory; give a run directory, a checkpoint (.json), an "
                             "exported file, or an architecture name (dlopt list)")
    if name:
        return Located(Kind.ARCH, name=name, spec=get_spec(name))
    if opts.sets or opts.input_size or opts.input_shape or opts.max_length:
        raise InputFileError("build options need an architecture name; the latest run's model is already built")
    run = resolve_run(opts.root, opts.run)
    return Located(Kind.LATEST, run.path, run=run)


def _looks_like_path(name: str) -> bool:
    """A path rather than a name: it has a separator or starts like one, and is no model reference (file.py:fn,
    torchvision:NAME, hf:ORG/NAME)."""
    if ":" in name:
        return False
    return "/" in name or name.startswith((".", "~")) or "\\" in name


def _model_folder(name: str, opts: TargetOptions) -> Located:
    """A directory that is not a run: a Hugging Face model folder (config.json), refused now if its weights are
    pickled and not trusted; any other directory is no target."""
    from dlopt.models.hf import folder_ref, hf_spec
    from dlopt.models.hf_folder import CONFIG

    folder = folder_ref(name)
    if folder.is_dir() and not (folder / CONFIG).is_file():
        raise InputFileError(f"{folder} is neither a dlopt run (no {MANIFEST}) nor a Hugging Face model folder (no "
                             f"{CONFIG}); give a run directory, a folder saved with save_pretrained, or a name")
    return Located(Kind.ARCH, name=name, spec=hf_spec(name, trust_pickle=opts.trust_pickle))


def _start_run(opts: TargetOptions, model: Any, spec: ArchSpec, cfg: Any, source: str, metrics: dict | None = None,
               weights: dict[str, Any] | None = None) -> Target:
    loaded = {"weights_source": weights} if weights else {}  # the weights loaded: name or path, and sha256
    run = Run.create(opts.root, spec.name, {"arch": spec.name, "config": config_dict(cfg), "source": source,
                                             "checkpoint": MODEL_RECORD, **loaded})
    record = save_checkpoint(model, spec, cfg, run.path / MODEL_RECORD, metrics=metrics,
                             extra={"source": source, **loaded})
    return Target(model, spec, cfg, run, record)


def _from_run(run: Run, variant: str | None, trust_pickle: bool) -> Target:
    manifest = run.manifest()  # schema-checked: model.checkpoint is a string
    if variant:  # the caller's own words: a name that leaves the run is an unsafe output name (exit 5)
        record = inside(run.path, run.path / variant)
    else:  # the manifest's words: data, followed only inside the run
        record = within(run.path, manifest.get("model", {}).get("checkpoint", MODEL_RECORD), "the run's checkpoint")
    ck = load_checkpoint(record, trust_pickle=trust_pickle)
    return Target(ck.model, ck.spec, ck.config, run, record)


def _build(opts: TargetOptions, spec: ArchSpec) -> Target:
    """A fresh model of `spec`, seeded with `opts.seed` so it is reproducible (or with --weights loaded)."""
    import torch

    sets = {**(opts.sets or {}), **({"pickle_weights": True} if spec.kind == "hf" and opts.trust_pickle else {})}
    cfg = make_model_config(spec, sets, input_size=opts.input_size, input_shape=opts.input_shape, tiny=opts.tiny,
                            max_length=opts.max_length)
    spec = spec_for(spec, cfg)  # a user model's --input-shape NAME:DTYPE:DIMS,... picks its spec
    torch.manual_seed(opts.seed)
    if opts.weights is not None:
        from dlopt.models.weights import build_with_weights

        model, cfg, info = build_with_weights(spec, cfg, opts.weights)
        return _start_run(opts, model, spec, cfg, info.source, weights=info.to_dict())
    if spec.kind == "hf":  # the folder's own weights
        from dlopt.models.weights import WeightsInfo

        folder = type(cfg).folder  # absolute; the build options hold the sha256s of its config and weights
        info = WeightsInfo("hf-folder", folder, folder, cfg.weights_sha256)
        return _start_run(opts, create_model(spec, cfg), spec, cfg, info.source, weights=info.to_dict())
    return _start_run(opts, create_model(spec, cfg), spec, cfg, f"built with seed {opts.seed} (untrained)")


def open_located(found: Located, opts: TargetOptions, check: Check | None = None) -> Target:
    """The target `locate` found: `check` runs on the spec known up front, before any run directory is created,
    and again on the model's own spec (a run's model, or a user model's spec picked by its input shape)."""
    if check is not None and found.spec is not None:
        check(found.spec)
    if found.kind == Kind.ARTIFACT:
        raise UsageError(f"{found.path} is an exported file; this command takes an architecture, a checkpoint "
                         "(.json) or a run directory (dlopt bench and dlopt verify take exported files)")
    if found.run is not None:
        target = _from_run(found.run, opts.variant, opts.trust_pickle)
    elif found.kind == Kind.CHECKPOINT:
        assert found.path is not None
        ck = load_checkpoint(found.path, expected_arch=found.name, trust_pickle=opts.trust_pickle)
        target = _start_run(opts, ck.model, ck.spec, ck.config, f"checkpoint {found.path}", ck.record.get("metrics"))
    else:
        assert found.spec is not None
        target = _build(opts, found.spec)
    if check is not None:
        check(target.spec)
    return target


def resolve_target(opts: TargetOptions, check: Check | None = None) -> Target:
    """Locate and open the stage's target; `check` (the stage's support check) runs before a run is created."""
    return open_located(locate(opts), opts, check)


def as_target(target: Target | TargetOptions, check: Check | None = None) -> Target:
    """A stage's argument as a Target: one given is checked; options (the library's older call) are resolved."""
    if isinstance(target, TargetOptions):
        return resolve_target(target, check)
    if check is not None:
        check(target.spec)
    return target
