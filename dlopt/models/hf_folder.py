"""A Hugging Face model folder read as hostile input: config.json bounded and schema-checked, weights found and hashed.

Nothing here imports transformers or torch. `read_folder(path)` is what dlopt.models.hf builds a spec from:

    folder = read_folder(Path("./my-model"))   # InputFileError / UnsupportedError / UnsafeFileError, one line each
    folder.config, folder.config_sha256, folder.weights, folder.weights_sha256, folder.pickled
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UnsafeFileError, UnsupportedError
from dlopt.core.fileio import read_json, sha256_file

CONFIG = "config.json"
MANIFEST = "manifest.json"  # a dlopt run directory has one; a model folder does not
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kilobytes; 1 MB bounds a hostile one
MAX_SIDE_JSON_BYTES = 16 << 20  # other JSON transformers reads from the folder (generation config, shard index)
SIDE_JSON = ("generation_config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
SAFE_WEIGHTS = "*.safetensors"
PICKLED_WEIGHTS = ("pytorch_model*.bin",)  # transformers' pickled weight names (torch.save)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_LABELS = 100_000


@dataclass(frozen=True)
class Folder:
    path: Path  # absolute, resolved
    config: dict[str, Any]  # config.json, schema-checked
    config_sha256: str
    weights: tuple[Path, ...]  # the files transformers will read the weights from
    weights_sha256: str  # over every weight file (name and sha256), in name order
    pickled: bool  # the weights are pickled .bin files only (no safetensors)

    @property
    def architecture(self) -> str:
        return self.config["architectures"][0]


def is_model_folder(path: Path | str) -> bool:
    """A directory holding config.json and no manifest.json (a run directory has the manifest)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and not (p / MANIFEST).exists()


def _check_config(data: Any, where: Path) -> dict[str, Any]:
    """The keys dlopt relies on, typed; anything else is left to transformers' own config class."""
    def bad(why: str) -> InputFileError:
        return InputFileError(f"{where} is not a usable model config: {why}; give the config.json written by "
                              "save_pretrained")

    if not isinstance(data, dict):
        raise bad("it is not a JSON object")
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not _IDENT.fullmatch(model_type):
        raise bad(f"model_type is {model_type!r}, not a name")
    archs = data.get("architectures")
    if not isinstance(archs, list) or not archs or len(archs) > 8 or \
            not all(isinstance(a, str) and _IDENT.fullmatch(a) for a in archs):
        raise bad("`architectures` must list the model class, e.g. [\"BertForSequenceClassification\"]")
    if "auto_map" in data:  # its own modelling code, which transformers would import from the folder
        raise UnsupportedError(f"{where} maps {archs[0]} to code shipped in the folder (auto_map); dlopt builds "
                               "only transformers' own classes and never runs a model folder's code "
                               "(no trust_remote_code)")
    labels = data.get("id2label")
    if labels is not None and (not isinstance(labels, dict) or len(labels) > MAX_LABELS or not all(
            isinstance(k, str) and k.isdigit() and isinstance(v, str) and len(v) <= 200 for k, v in labels.items())):
        raise bad("id2label must map class numbers to names")
    for key, value in data.items():  # sizes transformers builds tables from: positive and bounded
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**40:
            raise bad(f"{key} = {value} is out of range")
    return data


def _weights(folder: Path) -> tuple[tuple[Path, ...], bool]:
    safe = tuple(sorted(p for p in folder.glob(SAFE_WEIGHTS) if p.is_file()))
    if safe:
        return safe, False
    pickled = tuple(sorted(p for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern) if p.is_file()))
    if pickled:
        return pickled, True
    raise InputFileError(f"{folder} has no weights (model.safetensors); save the model with "
                         "model.save_pretrained(folder, safe_serialization=True)")


def _digest(paths: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def _stamp(path: Path) -> tuple[Any, ...]:
    """What changes when a file in the folder changes: the cache key of a read (hashing gigabytes once)."""
    entries = []
    for p in sorted(path.iterdir()):
        if p.is_file():
            st = p.stat()
            entries.append((p.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(entries)


def read_folder(path: Path | str) -> Folder:
    """The folder's config (bounded, schema-checked) and weights (found and hashed); one line on anything wrong."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputFileError(f"model folder {folder} not found; give a directory saved with save_pretrained")
    if not (folder / CONFIG).is_file():
        raise InputFileError(f"{folder} has no {CONFIG}; a Hugging Face model folder holds config.json and "
                             "model.safetensors (model.save_pretrained(folder))")
    folder = folder.resolve()
    return _read(folder, _stamp(folder))


@functools.lru_cache(maxsize=32)
def _read(folder: Path, _stamp_key: tuple[Any, ...]) -> Folder:
    config_path = folder / CONFIG
    data = _check_config(read_json(config_path, "model config", limit=MAX_CONFIG_BYTES), config_path)
    for name in SIDE_JSON:
        side = folder / name
        if side.exists():
            read_json(side, name, limit=MAX_SIDE_JSON_BYTES)  # bounded and well-formed before transformers reads it
    weights, pickled = _weights(folder)
    return Folder(folder, data, sha256_file(config_path), weights, _digest(weights), pickled)


def refuse_pickled(folder: Folder, trust_pickle: bool) -> None:
    """Pickled weights only: refused (exit 6) unless the user trusts them (then read with weights_only=True)."""
    if folder.pickled and not trust_pickle:
        names = ", ".join(p.name for p in folder.weights[:2])
        raise UnsafeFileError(f"{folder.path} holds only pickled weights ({names}), which can run code when "
                              "loaded; convert them to safetensors (model.save_pretrained(folder, "
                              "safe_serialization=True)), or pass --trust-pickle if you trust the folder")


def labels_of(config: dict[str, Any]) -> tuple[str, ...]:
    """id2label as a tuple indexed by class number ("" where config.json names none)."""
    raw = config.get("id2label") or {}
    if not raw:
        return ()
    count = max(int(k) for k in raw) + 1
    return tuple(raw.get(str(i), "") for i in range(min(count, MAX_LABELS)))
