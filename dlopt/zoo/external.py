"""Specs made on demand for models outside the zoo: torchvision classifiers and user builders.

A user builder (`file.py:fn`) is code and runs as such when dlopt resolves it: only name files you trust.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError, InputFileError, UnknownArchError
from dlopt.spec import BATCH, ArchSpec, Stage, Task, TensorSpec


@dataclass(frozen=True)
class TorchvisionConfig:
    in_channels: int = 3  # torchvision classifiers take RGB
    input_size: int = 224
    num_classes: int = 1000


@dataclass(frozen=True)
class UserConfig:
    input_shape: tuple[int, ...] = ()  # per-sample input shape, from --input-shape (e.g. 3,32,32)

    def validate(self) -> str | None:
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            return "a user model needs --input-shape with positive sizes, without the batch (e.g. --input-shape 3,32,32)"
        return None


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


@functools.lru_cache(maxsize=None)
def torchvision_spec(model_name: str) -> ArchSpec:
    import difflib

    names = _torchvision_names()
    if model_name not in names:
        close = difflib.get_close_matches(model_name, names, n=3)
        hint = f"did you mean {' or '.join('torchvision:' + c for c in close)}? " if close else ""
        raise UnknownArchError(f"unknown torchvision classification model {model_name!r}; {hint}"
                               "(torchvision.models.list_models() shows all)")

    def build(cfg: TorchvisionConfig) -> Any:
        import torchvision

        return torchvision.models.get_model(model_name, weights=None, num_classes=cfg.num_classes)

    return ArchSpec(
        name=f"torchvision:{model_name}", summary=f"torchvision {model_name}, random weights",
        builder=build, config=TorchvisionConfig,
        inputs=(TensorSpec("image", (BATCH, "in_channels", "input_size", "input_size")),),
        outputs=(TensorSpec("logits", (BATCH, "num_classes")),),
        task=Task.CLASSIFICATION, dataset="digits", metric="accuracy", kind="torchvision", trainer="classification",
        train_defaults={"input_size": 32, "num_classes": 10},
    )


def _load_callable(ref: str) -> Any:
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputFileError(f"model file {target} not found; give path/to/file.py:build_fn")
        mod_name = f"dlopt_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # user code: any failure is reported, not ours to type
            raise InputFileError(f"importing {target} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise InputFileError(f"cannot import module {target!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{target} has no callable {attr!r}; give file.py:build_fn or package.module:build_fn")
    return fn


@functools.lru_cache(maxsize=None)
def user_spec(ref: str) -> ArchSpec:
    fn = _load_callable(ref)

    def build(cfg: UserConfig) -> Any:
        from torch import nn

        model = fn()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    return ArchSpec(
        name=ref, summary=f"user model from {ref}", builder=build, config=UserConfig,
        inputs=(TensorSpec("input", (BATCH, "*input_shape")),),
        outputs=(TensorSpec("output", (BATCH,)),),  # only the batch axis is known
        task=Task.CUSTOM, dataset="none", metric="none", kind="user",
        stages=frozenset(Stage) - {Stage.TRAIN},
        limits={"train": "a user model declares no task or data; train it in your code, then pass --checkpoint"},
    )
