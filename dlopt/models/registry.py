"""The architecture registry: zoo specs, torchvision models by name, and user models.

Name forms accepted everywhere a model is named:
  resnet18                        a zoo architecture (`dlopt list`)
  torchvision:mobilenet_v3_small  any torchvision classification model, random weights
  timm:convnext_atto              any timm model (the `timm` extra), random weights unless --weights
  ./my-model  or  hf:./my-model   a Hugging Face model folder (config.json + model.safetensors; the `hf` extra)
  path/to/file.py:build_fn        a user's builder function (needs --input-shape)
  package.module:build_fn         the same, importable
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from dlopt.core.errors import ConfigError, UnknownArchError
from dlopt.models.options import make_config
from dlopt.models.spec import BATCH, SEQ, ArchSpec, Stage, Task
from dlopt.models.zoo.table import SPECS as _REGISTRY  # noqa: F401  (register: public here too)
from dlopt.models.zoo.table import register  # noqa: F401  (public here too)

DEFAULT_SEQ_LEN = 16

# Every kind of target a command takes, one row each (`dlopt list` prints them under the zoo; docs/models.md).
TARGET_KINDS: tuple[tuple[str, str], ...] = (
    ("resnet18", "a zoo architecture (the table above)"),
    ("torchvision:NAME", "any torchvision classifier, random weights unless --weights DEFAULT|NAME|PATH"),
    ("timm:NAME", ("any timm model (extra `timm`; names: dlopt list --timm 'resnet*'), random weights unless "
                   "--weights PATH")),
    ("./folder  or  hf:./folder", "a Hugging Face model folder (config.json + model.safetensors; extra `hf`)"),
    ("model.onnx", "an ONNX file made elsewhere: quantize, verify --reference B.onnx, bench"),
    ("path/to/file.py:fn", "your own builder (with --input-shape; its code runs: see --trust-code)"),
    ("CHECKPOINT.json", "a dlopt checkpoint record: a new run from those weights"),
    ("RUN_DIR  or  nothing", "a run directory (manifest.json), or the latest run"),
)


def _ensure_zoo() -> None:
    importlib.import_module("dlopt.models.zoo")


def list_specs(task: str | None = None, stage: str | None = None) -> list[ArchSpec]:
    """Zoo specs in registration order, optionally filtered by task and supported stage."""
    _ensure_zoo()
    specs = list(_REGISTRY.values())
    if task:
        specs = [s for s in specs if s.task == task]
    if stage:
        specs = [s for s in specs if s.supports(stage)]
    return specs


def list_names() -> list[str]:
    return [s.name for s in list_specs()]


def get_spec(name: str, input_shape: tuple[int, ...] | None = None) -> ArchSpec:
    """Resolve any accepted name form to a spec; unknown zoo names suggest the closest ones."""
    _ensure_zoo()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("torchvision:"):
        from dlopt.models.zoo.external import torchvision_spec

        return torchvision_spec(name.split(":", 1)[1])
    if name.startswith("timm:"):
        from dlopt.models.timm_models import timm_spec

        return timm_spec(name.split(":", 1)[1])
    from dlopt.models.hf_folder import is_model_folder

    if name.startswith("hf:") or is_model_folder(name):
        from dlopt.models.hf import hf_spec

        return hf_spec(name)
    if ":" in name:
        from dlopt.models.zoo.external import user_spec

        return user_spec(name)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UnknownArchError(f"unknown architecture {name!r}; {hint}(dlopt list shows all)")


def make_model_config(
    spec: ArchSpec,
    sets: dict[str, Any] | None = None,
    *,
    input_size: int | None = None,
    input_shape: tuple[int, ...] | str | None = None,
    tiny: bool = False,
    max_length: int | None = None,
) -> Any:
    """The spec's config with, in order, its tiny overrides, --input-size/--input-shape/--max-length, then --set.
    A str input_shape is a user model's signature (NAME:DTYPE:DIMS,...): it sets the `inputs` build option;
    `spec_for(spec, cfg)` is then the spec with those inputs."""
    overrides: dict[str, Any] = dict(spec.tiny) if tiny else {}
    field_names = set(spec.config.__dataclass_fields__)
    shape_key = "inputs" if isinstance(input_shape, str) else "input_shape"
    for flag, key, value in (("--input-size", "input_size", input_size), ("--input-shape", shape_key, input_shape),
                             ("--max-length", "seq_len", max_length)):
        if value is None:
            continue
        if key not in field_names:
            raise ConfigError(f"{spec.name} takes no {flag}; its build options: {', '.join(sorted(field_names))}")
        overrides[key] = value
    overrides.update(sets or {})
    defaults = {f.name: f.default for f in spec.config.__dataclass_fields__.values()}
    # a recorded empty list is the empty default (a user model's input_shape when its `inputs` are named)
    overrides = {k: v for k, v in overrides.items()
                 if not (isinstance(v, (list, tuple)) and not v and defaults.get(k) == ())}
    return make_config(spec.config, overrides)


def spec_for(spec: ArchSpec, cfg: Any) -> ArchSpec:
    """The spec a config builds: a user model's inputs come from its `inputs` build option (--input-shape
    NAME:DTYPE:DIMS,...), and each signature is its own spec; a Hugging Face folder's from --input-shape too; any
    other spec is returned as it is."""
    if spec.kind == "hf":
        from dlopt.models.hf import with_inputs as hf_inputs

        return hf_inputs(spec, cfg)
    if spec.kind != "user":
        return spec
    from dlopt.models.zoo.external import with_inputs

    return with_inputs(spec, cfg)


def _builder(spec: ArchSpec) -> Callable[[Any], Any]:
    if callable(spec.builder):
        return spec.builder
    module, _, attr = spec.builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_model(spec: ArchSpec, cfg: Any) -> Any:
    """Build the nn.Module for a spec and config, in eval mode (refused first if it would pass the size ceiling)."""
    from dlopt.models.options import check_model_size

    check_model_size(spec.name, _builder(spec), cfg)
    try:
        model = _builder(spec)(cfg)
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"cannot build {spec.name} with these options: {exc}") from None
    return model.eval()


def build_model(name: str, sets: dict[str, Any] | None = None, *, tiny: bool = False, **opts: Any) -> tuple[Any, ArchSpec, Any]:
    """Convenience: name -> (model, spec, config)."""
    spec = get_spec(name)
    cfg = make_model_config(spec, sets, tiny=tiny, **opts)
    spec = spec_for(spec, cfg)
    return create_model(spec, cfg), spec, cfg


def entry_module(model: Any, spec: ArchSpec) -> Any:
    """The submodule that deployment stages work on (the GAN's generator, say)."""
    for attr in (spec.entry or "").split("."):
        if attr:
            model = getattr(model, attr)
    return model


def resolve_dims(shape: tuple[int | str, ...], cfg: Any, batch: int, seq_len: int) -> tuple[int, ...]:
    """Turn a TensorSpec shape into ints. '*field' splats a tuple-valued config field."""
    dims: list[int] = []
    for d in shape:
        if d == BATCH:
            dims.append(batch)
        elif d == SEQ:
            dims.append(seq_len)
        elif isinstance(d, str) and d.startswith("*"):
            dims.extend(getattr(cfg, d[1:]))
        elif isinstance(d, str):
            dims.append(getattr(cfg, d))
        else:
            dims.append(d)
    return tuple(dims)


def default_seq_len(cfg: Any) -> int:
    return int(getattr(cfg, "seq_len", DEFAULT_SEQ_LEN))


def make_inputs(spec: ArchSpec, cfg: Any, batch_size: int = 2, seq_len: int | None = None, seed: int = 0) -> tuple[Any, ...]:
    """Example inputs for the entry module: valid dtypes and ranges (token ids int64 < vocab)."""
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    seq = default_seq_len(cfg) if seq_len is None else seq_len
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in spec.inputs:
        shape = resolve_dims(t.shape, cfg, batch_size, seq)
        low = getattr(cfg, t.low) if isinstance(t.low, str) else t.low
        high = getattr(cfg, t.high) if isinstance(t.high, str) else t.high
        dtype = getattr(torch, t.dtype)
        if t.dtype.startswith(("int", "uint", "bool")):  # [low, high): bool 0-1 is all False, 1-2 all True
            out.append(torch.randint(int(low or 0), int(high), shape, generator=gen).to(dtype))
        elif low is not None and high is not None:
            out.append((torch.rand(shape, generator=gen) * (high - low) + low).to(dtype))
        else:
            out.append(torch.randn(shape, generator=gen).to(dtype))
    return tuple(out)


def stage_names() -> list[str]:
    return [s.value for s in Stage]


def task_names() -> list[str]:
    return [t.value for t in Task]
