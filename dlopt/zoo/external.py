"""Specs made on demand for models outside the zoo: torchvision classifiers and user builders.

A user builder (`file.py:fn`) is code and runs as such when dlopt resolves it: only name files you trust.
A name read from a file (a checkpoint record) reaches here only past `dlopt.codetrust.require_trusted`.
"""

from __future__ import annotations

import functools
import importlib
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
    # The torchvision weights (e.g. "ResNet18_Weights.IMAGENET1K_V1") whose layout the model is built in. Set by
    # --weights, which then loads them (dlopt.weights); the builder itself never loads or downloads weights.
    pretrained: str = ""


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

        return torchvision.models.get_model(model_name, weights=None, num_classes=cfg.num_classes,
                                            **_pretrained_layout(model_name, cfg.pretrained))

    return ArchSpec(
        name=f"torchvision:{model_name}", summary=f"torchvision {model_name}, random weights unless --weights",
        builder=build, config=TorchvisionConfig,
        inputs=(TensorSpec("image", (BATCH, "in_channels", "input_size", "input_size")),),
        outputs=(TensorSpec("logits", (BATCH, "num_classes")),),
        task=Task.CLASSIFICATION, dataset="digits", metric="accuracy", kind="torchvision", trainer="classification",
        train_defaults={"input_size": 32, "num_classes": 10},
    )


MAX_MODEL_FILE_BYTES = 8 << 20
_SOURCES: dict[int, dict[str, str]] = {}  # id(spec) -> {"file", "sha256", "attr"} of the code that ran (specs are cached)


def code_source(spec: ArchSpec) -> dict[str, str] | None:
    """The file and sha256 of the code a user spec was built from (recorded in checkpoints); None for modules."""
    return _SOURCES.get(id(spec))


def _exec_file(path: Path, sha256: str | None) -> tuple[Any, dict[str, str]]:
    """Run a model file from the very bytes that were hashed, so what runs is what was checked."""
    import hashlib
    import types

    from dlopt.errors import UnsafeFileError
    from dlopt.fileio import read_regular

    if not path.is_file():
        raise InputFileError(f"model file {path} not found; give path/to/file.py:build_fn")
    source = read_regular(path, MAX_MODEL_FILE_BYTES, "model file")
    digest = hashlib.sha256(source).hexdigest()
    if sha256 and digest != sha256:
        raise UnsafeFileError(f"model file {path} changed since the run recorded it (sha256 {digest[:12]}..., recorded "
                              f"{sha256[:12]}...); restore it, or start a new run from it (e.g. dlopt export {path}:FN)")
    resolved = str(path.resolve())
    module = types.ModuleType(f"dlopt_user_{hashlib.sha256(resolved.encode()).hexdigest()[:16]}")
    module.__file__ = resolved
    sys.modules[module.__name__] = module  # dataclasses and pickling look the module up by name
    try:
        exec(compile(source, resolved, "exec"), module.__dict__)  # noqa: S102 - the caller trusts this code
    except Exception as exc:  # user code: any failure is reported, not ours to type
        raise InputFileError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module, {"file": resolved, "sha256": digest}


def _pretrained_layout(model_name: str, pretrained: str) -> dict[str, Any]:
    """Builder arguments that torchvision's builders set whenever they load weights (torchvision/models/googlenet.py,
    inception.py, vision_transformer.py, maxvit.py), so a model built for those weights has their layout."""
    if not pretrained:
        return {}
    import torchvision

    meta = torchvision.models.get_weight(pretrained).meta
    if model_name in ("googlenet", "inception_v3"):  # normalised input, auxiliary heads dropped after loading
        return {"transform_input": True, "aux_logits": False, "init_weights": False}
    if model_name.startswith("vit_"):
        return {"image_size": meta["min_size"][0]}
    if model_name == "maxvit_t":
        return {"input_size": meta["min_size"]}
    return {}


def _load_callable(ref: str, file: str | None = None, sha256: str | None = None) -> tuple[Any, dict[str, str] | None]:
    """The builder a user reference names. `file`/`sha256` come from a checkpoint record: the code is read from that
    absolute path (so a run is usable from any directory) and refused if it changed."""
    target, _, attr = ref.rpartition(":")
    source = None
    if file or target.endswith(".py"):
        module, source = _exec_file(Path(file or target), sha256)
        source["attr"] = attr
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise InputFileError(f"cannot import module {target!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{target} has no callable {attr!r}; give file.py:build_fn or package.module:build_fn")
    return fn, source


def user_spec(ref: str, file: str | None = None, sha256: str | None = None) -> ArchSpec:
    """The spec of a user builder. A relative file is resolved now, so the same words from another directory are
    another model (and the code source recorded for it is the file that really ran)."""
    target = ref.rpartition(":")[0]
    if file is None and target.endswith(".py"):
        file = str(Path(target).expanduser().resolve())
    return _user_spec(ref, file, sha256)


@functools.lru_cache(maxsize=None)
def _user_spec(ref: str, file: str | None, sha256: str | None) -> ArchSpec:
    fn, source = _load_callable(ref, file, sha256)

    def build(cfg: UserConfig) -> Any:
        from torch import nn

        model = fn()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    spec = ArchSpec(
        name=ref, summary=f"user model from {ref}", builder=build, config=UserConfig,
        inputs=(TensorSpec("input", (BATCH, "*input_shape")),),
        outputs=(TensorSpec("output", (BATCH,)),),  # only the batch axis is known
        task=Task.CUSTOM, dataset="none", metric="none", kind="user",
        stages=frozenset(Stage) - {Stage.TRAIN},
        limits={"train": "a user model declares no task or data; train it in your code, then pass --checkpoint"},
    )
    if source:
        _SOURCES[id(spec)] = source
    return spec
