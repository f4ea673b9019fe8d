"""Weights for a model built by name: `--weights DEFAULT|NAME` (torchvision's own weights) or `--weights PATH`.

    model, cfg, info = build_with_weights(spec, cfg, "DEFAULT")       # torchvision:resnet18, from the hub cache
    model, cfg, info = build_with_weights(spec, cfg, "my_model.pth")  # a state dict: .safetensors, .pth, .pt

Nothing is downloaded: torchvision weights must already be in torch's hub cache (`torch.hub.get_dir()`), else
one line says where the file should be. A `.pth`/`.pt` file is read with `torch.load(weights_only=True)`,
PyTorch's safe loader, so a file that needs full unpickling is refused (exit 6) without running it. Names and
shapes are checked against the model like a checkpoint's before anything is loaded.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UnsafeFileError, UsageError
from dlopt.models.spec import ArchSpec

# Keys under which training scripts commonly nest the state dict in a .pth file.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass(frozen=True)
class WeightsInfo:
    kind: str  # "torchvision" (a torchvision weights enum, read from the hub cache) or "file"
    name: str  # e.g. "ResNet18_Weights.IMAGENET1K_V1", or the path as given
    path: str  # the file read, absolute
    sha256: str

    @property
    def source(self) -> str:
        return f"weights {self.name} (sha256 {self.sha256[:12]})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_with_weights(spec: ArchSpec, cfg: Any, ref: str | Path) -> tuple[Any, Any, WeightsInfo]:
    """Build the model and load `ref` into it: a torchvision weights name (DEFAULT, IMAGENET1K_V1,
    ResNet18_Weights.IMAGENET1K_V1) for torchvision: models, else a state dict file. Fails before building
    when the weights are missing or unsafe."""
    from dlopt.models.registry import create_model

    text = str(ref)
    if spec.kind == "torchvision" and not _looks_like_path(text):
        weights, info = torchvision_weights(spec, text)
        cfg = replace(cfg, pretrained=str(weights))  # torchvision's builder uses another layout for some weights
        state = _torchvision_state(spec, weights)
    else:
        if not _looks_like_path(text):
            raise UsageError(f"--weights {text!r}: named weights exist only for torchvision: models; for "
                             f"{spec.name} give a state dict file (.safetensors, .pth or .pt)")
        state, info = read_state_file(Path(text))
    model = create_model(spec, cfg)
    load_state(model, state, f"weights {info.name} do not fit {spec.name}")
    return model.eval(), cfg, info


def _looks_like_path(text: str) -> bool:
    return Path(text).exists() or "/" in text or "\\" in text or Path(text).suffix.lower() in {
        ".safetensors", ".pth", ".pt", ".bin", ".ckpt"}


def torchvision_weights(spec: ArchSpec, ref: str) -> tuple[Any, WeightsInfo]:
    """The weights enum member `ref` names, checked to be in the local hub cache and loadable without code."""
    import torchvision

    model_name = spec.name.removeprefix("torchvision:")
    try:
        enum = torchvision.models.get_model_weights(model_name)
    except (ValueError, KeyError):
        raise UsageError(f"torchvision publishes no weights for {model_name}; pass a state dict file") from None
    prefix, _, member = ref.rpartition(".")
    choices = ", ".join(["DEFAULT", *(w.name for w in enum)])  # iterating skips the DEFAULT alias
    if (prefix and prefix != enum.__name__) or member not in enum.__members__:
        raise UsageError(f"unknown weights {ref!r} for {spec.name}; choose {choices}, or give a state dict file")
    weights = enum[member]
    cached = cache_file(weights)
    if not cached.is_file():
        raise InputFileError(
            f"{weights} is not in the local torch hub cache ({cached} is missing) and dlopt does not download; "
            f"copy {Path(weights.url).name} from {weights.url} into {cached.parent} (or set TORCH_HOME), "
            "or pass --weights FILE")
    _safe_torch_load(cached)  # refuse a cache file that needs full unpickling before torchvision reads it
    from dlopt.core.fileio import sha256_file

    return weights, WeightsInfo("torchvision", str(weights), str(cached.resolve()), sha256_file(cached))


def cache_file(weights: Any) -> Path:
    """Where torch.hub.load_state_dict_from_url looks for these weights before downloading them."""
    from urllib.parse import urlparse

    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _torchvision_state(spec: ArchSpec, weights: Any) -> dict[str, Any]:
    """The state dict as torchvision's own builder loads it (it remaps old key names for some models)."""
    import torchvision

    pretrained = torchvision.models.get_model(spec.name.removeprefix("torchvision:"), weights=weights, progress=False)
    return pretrained.state_dict()


def read_state_file(path: Path) -> tuple[dict[str, Any], WeightsInfo]:
    """A state dict (name -> tensor) from .safetensors, or .pth/.pt read with weights_only=True."""
    from dlopt.core.fileio import sha256_file

    if not path.is_file():
        raise InputFileError(f"weights file {path} not found; give a .safetensors, .pth or .pt state dict")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputFileError(f"{path} is not a readable safetensors file ({exc})") from None
    else:
        state = _safe_torch_load(path)
    info = WeightsInfo("file", str(path), str(path.resolve()), sha256_file(path))
    return _as_state_dict(state, path), info


def _safe_torch_load(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL [\w.]+", str(exc))  # a class or function the safe loader would have to import
        if found:
            raise UnsafeFileError(
                f"{path} needs full unpickling, which can run arbitrary code (it names {found.group(0)}); save only "
                "the weights (torch.save(model.state_dict(), path)) or convert them to safetensors") from None
        raise InputFileError(f"{path} is not a readable torch file ({_last_line(exc)})") from None
    except Exception as exc:  # torch.load raises many types (KeyError, RuntimeError, EOFError...) for a non-torch file
        raise InputFileError(f"{path} is not a readable torch file ({_last_line(exc)})") from None


def _last_line(exc: Exception) -> str:
    """torch's load errors explain weights_only at length; the cause is the line naming what failed."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "documentation" not in ln]
    return " ".join((lines[-1] if lines else type(exc).__name__).split())[:160]


def _as_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = [obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)]
        obj = nested[0] if nested else obj
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise InputFileError(f"{path} holds no state dict (names -> tensors); save torch.save(model.state_dict(), "
                             "path) or a safetensors file")
    return obj  # as read: a torch.save'd state dict keeps its `_metadata` (layout versions some loaders need)


def load_state(model: Any, state: dict[str, Any], what: str) -> None:
    """Check every name and shape against the model (as checkpoints are checked), then load."""
    import torch

    from dlopt.models.checkpoint import check_state_shapes, with_versions

    check_state_shapes(model, {k: tuple(v.shape) for k, v in state.items()}, what)
    with torch.no_grad():  # names checked above; tied weights may be stored once
        model.load_state_dict(with_versions(state, None, model), strict=False)
