"""timm models by name: `timm:convnext_atto`, beside `torchvision:NAME` (the optional `timm` extra).

Built with `timm.create_model(name, pretrained=False)`: nothing is downloaded; `--weights PATH` loads a state dict
(.safetensors, or .pth/.pt read with weights_only=True, dlopt.models.weights). The default input size is the
model's own declaration (`pretrained_cfg["input_size"]`), as timm's generic code reads it; a model whose size is
fixed by its layers (ViT's position table: `fixed_input_size`) is built for the size asked with `img_size`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from dlopt.core.errors import ConfigError, MissingDependencyError, UnknownArchError
from dlopt.models.spec import BATCH, ArchSpec, PruneMethod, Task, TensorSpec

PREFIX = "timm:"
INSTALL = "pip install 'dlopt[timm]'"
MAX_LISTED = 2000

# Structured pruning (Torch-Pruning) limits by model family, measured by benchmarks/model_sources.py: the family's
# prefix -> why. Other families are pruned, and Torch-Pruning's own failures still end in one line (exit 4).
PRUNE_LIMITS: dict[str, str] = {
    "vit_": ("timm's ViT attention reshapes its fused qkv projection into (3, num_heads, head_dim), which the "
             "dependency graph does not follow: pruned widths break the reshape (vit_tiny_patch16_224: \"shape "
             "[1, 197, 3, 3, 64] is invalid\"); prune it with --method unstructured"),
}


@dataclass(frozen=True)
class TimmConfig:
    in_channels: int = 3  # timm's in_chans
    input_size: int = 224  # the model's pretrained_cfg input_size (height = width)
    num_classes: int = 1000


def require_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise MissingDependencyError(f"timm is not installed: {INSTALL} to build timm:NAME models") from None
    return timm


def list_timm(pattern: str = "") -> list[str]:
    """timm's model names matching a shell-style pattern ('' or '*': all), as `timm:NAME`."""
    timm = require_timm()
    return [PREFIX + n for n in timm.list_models(pattern or "*")]


def _pretrained_cfg(timm: Any, name: str) -> dict[str, Any]:
    cfg = timm.get_pretrained_cfg(name)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})


@functools.cache
def timm_spec(model_name: str) -> ArchSpec:
    import difflib

    timm = require_timm()
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"did you mean {' or '.join(PREFIX + c for c in close)}? " if close else ""
        raise UnknownArchError(f"unknown timm model {model_name!r}; {hint}(dlopt list --timm PATTERN lists them)")
    pretrained = _pretrained_cfg(timm, model_name)
    channels, height, width = tuple(pretrained.get("input_size") or (3, 224, 224))
    fixed = bool(pretrained.get("fixed_input_size"))
    config = dataclasses.make_dataclass(
        "TimmConfig", [("in_channels", int, dataclasses.field(default=int(channels))),
                       ("input_size", int, dataclasses.field(default=int(max(height, width)))),
                       ("num_classes", int, dataclasses.field(default=int(pretrained.get("num_classes") or 1000)))],
        bases=(TimmConfig,), frozen=True)

    def build(cfg: Any) -> Any:
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": cfg.num_classes, "in_chans": cfg.in_channels}
        if fixed:
            kwargs["img_size"] = cfg.input_size
        try:
            return require_timm().create_model(model_name, **kwargs)
        except (TypeError, AssertionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"timm cannot build {model_name} with these options ({str(exc).splitlines()[0][:160]})")\
                from None

    prune_limit = next((why for prefix, why in PRUNE_LIMITS.items() if model_name.startswith(prefix)), None)
    limits = {"prune:structured": prune_limit} if prune_limit else {}
    return ArchSpec(
        name=f"{PREFIX}{model_name}", summary=f"timm {model_name}, random weights unless --weights",
        builder=build, config=config,
        inputs=(TensorSpec("image", (BATCH, "in_channels", "input_size", "input_size")),),
        outputs=(TensorSpec("logits", (BATCH, "num_classes")),),
        task=Task.CLASSIFICATION, dataset="digits", metric="accuracy", kind="timm", trainer="classification",
        train_defaults={"input_size": 32, "num_classes": 10}, extra="timm",
        prune_methods=frozenset(PruneMethod) - ({PruneMethod.STRUCTURED} if prune_limit else set()), limits=limits,
    )
