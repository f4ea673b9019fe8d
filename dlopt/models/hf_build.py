"""Building a Hugging Face folder's model: transformers imported here only, the folder read by dlopt.models.hf_folder.

    build = builder(folder_path, auto, output="logits", names=("input_ids", "attention_mask"), encoder=False,
                    call_kwargs={"use_cache": False})
    module = build(cfg)   # HF model -> positional tensors in, {"logits": tensor} out, eval mode

`cfg.pickle_weights` (set from --trust-pickle) is the only way a folder's pickled .bin weights are read, and then
with torch.load(weights_only=True). On the meta device (dlopt's size check) only the skeleton is built.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from dlopt.core.errors import ConfigError, InputFileError, MissingDependencyError, UnsupportedError
from dlopt.models.hf_folder import Folder, read_folder, refuse_pickled

INSTALL = "pip install 'dlopt[hf]'"


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(f"transformers is not installed: {INSTALL} to build Hugging Face model "
                                     "folders") from None
    transformers.utils.logging.set_verbosity_error()  # its advice and progress bars are not the user's business
    transformers.utils.logging.disable_progress_bar()
    # raised whenever a tracer reads every attribute of a transformers module: noise, not the user's code
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    return transformers


def hf_config(folder: Folder) -> Any:
    """transformers' config object for the folder, made from the dict dlopt read and checked (not re-read)."""
    transformers = require_transformers()
    data = folder.config
    known = data["model_type"] in transformers.CONFIG_MAPPING  # a lazy mapping: .get() answers None
    cls = transformers.CONFIG_MAPPING[data["model_type"]] if known else None
    if cls is None:
        raise UnsupportedError(f"transformers {transformers.__version__} does not know model_type "
                               f"{data['model_type']!r} ({folder.path / 'config.json'}); dlopt builds transformers' "
                               "own architectures only")
    try:
        return cls.from_dict(dict(data))
    except (TypeError, ValueError, KeyError) as exc:
        raise InputFileError(f"{folder.path / 'config.json'} does not make a {data['model_type']} config "
                             f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None


@functools.lru_cache(maxsize=1)
def _entry_classes() -> dict[int, type]:
    """The deployed module: positional tensors in, {output: tensor} out. One class per input count, so that every
    tracer sees a plain signature (torch.export binds dynamic shapes to the forward's parameters)."""
    import torch

    class HFEntry(torch.nn.Module):
        def __init__(self, model: Any, names: tuple[str, ...], output: str, kwargs: dict[str, Any]) -> None:
            super().__init__()
            self.model, self.names, self.output, self.kwargs = model, names, output, dict(kwargs)

        def run(self, *inputs: Any) -> dict[str, Any]:
            out = self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True, **self.kwargs)
            return {self.output: out[self.output]}

    class Entry1(HFEntry):
        def forward(self, x0: Any) -> dict[str, Any]:
            return self.run(x0)

    class Entry2(HFEntry):
        def forward(self, x0: Any, x1: Any) -> dict[str, Any]:
            return self.run(x0, x1)

    class Entry3(HFEntry):
        def forward(self, x0: Any, x1: Any, x2: Any) -> dict[str, Any]:
            return self.run(x0, x1, x2)

    class Entry4(HFEntry):
        def forward(self, x0: Any, x1: Any, x2: Any, x3: Any) -> dict[str, Any]:
            return self.run(x0, x1, x2, x3)

    return {1: Entry1, 2: Entry2, 3: Entry3, 4: Entry4}


def _on_meta() -> bool:
    import torch

    return torch.empty(0).device.type == "meta"  # dlopt's size check builds under torch.device("meta")


def _load(folder: Folder, auto: Any, cfg: Any) -> Any:
    """The model from the folder's weights (safetensors; pickled .bin only when trusted, read weights_only)."""
    import torch

    if folder.pickled and not cfg.pickle_weights:
        refuse_pickled(folder, False)
    pickled = {"weights_only": True} if folder.pickled else {}
    try:
        model, info = auto.from_pretrained(str(folder.path), config=hf_config(folder), local_files_only=True,
                                           trust_remote_code=False, use_safetensors=not folder.pickled,
                                           dtype=torch.float32, output_loading_info=True, **pickled)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # transformers' errors for a bad or partial folder
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputFileError(f"transformers could not load {folder.path} ({line})") from None
    missing = list(info.get("missing_keys") or [])
    if missing:  # a base model's weights under a new head: the head starts random
        warnings.warn(f"{len(missing)} weight(s) of {folder.architecture} are not in {folder.path} and start "
                      f"random ({', '.join(sorted(missing)[:3])}{', ...' if len(missing) > 3 else ''})", stacklevel=2)
    return model


def builder(folder_path: str, auto: Any, output: str, names: tuple[str, ...], encoder: bool,
            call_kwargs: dict[str, Any]) -> Any:
    """The spec's builder: cfg -> the deployed module (the encoder alone when `encoder`)."""
    def build(cfg: Any) -> Any:
        folder = read_folder(Path(folder_path))
        model = auto.from_config(hf_config(folder)) if _on_meta() else _load(folder, auto, cfg)  # meta: no file read
        if encoder:
            model = model.get_encoder()
        inputs = _names(cfg) or names
        if not 1 <= len(inputs) <= len(_entry_classes()):
            raise ConfigError(f"a Hugging Face model takes 1 to {len(_entry_classes())} inputs here, not {len(inputs)}")
        return _entry_classes()[len(inputs)](model, inputs, output, call_kwargs).eval()

    return build


def _names(cfg: Any) -> tuple[str, ...]:
    if not getattr(cfg, "inputs", ""):
        return ()
    from dlopt.models.zoo.external import parse_signature

    return tuple(t.name for t in parse_signature(cfg.inputs))


