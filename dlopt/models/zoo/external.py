"""Specs made on demand for models outside the zoo: torchvision classifiers and user builders.

A user builder (`file.py:fn`) is code and runs as such when dlopt resolves it: only name files you trust.
A name read from a file (a checkpoint record) reaches here only past `dlopt.core.user_code.require_trusted`.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import ConfigError, InputFileError, UnknownArchError
from dlopt.models.spec import BATCH, ArchSpec, Stage, Task, TensorSpec


@dataclass(frozen=True)
class TorchvisionConfig:
    in_channels: int = 3  # torchvision classifiers take RGB
    input_size: int = 224
    num_classes: int = 1000
    # The torchvision weights (e.g. "ResNet18_Weights.IMAGENET1K_V1") whose layout the model is built in. Set by
    # --weights, which then loads them (dlopt.models.weights); the builder itself never loads or downloads weights.
    pretrained: str = ""


@dataclass(frozen=True)
class UserConfig:
    input_shape: tuple[int, ...] = ()  # one float32 input "input": per-sample shape, from --input-shape 3,32,32
    # Several inputs or other dtypes, from --input-shape ids:int64:16,mask:bool:16 (canonical text, see
    # parse_signature); it picks the spec (names, dtypes, ranges), so a record rebuilds the same signature.
    inputs: str = ""

    def validate(self) -> str | None:
        if self.inputs:
            if self.input_shape:
                return "give --input-shape either as dims (3,32,32) or as NAME:DTYPE:DIMS inputs, not both"
            try:
                parse_signature(self.inputs)
            except ConfigError as exc:
                return str(exc)
            return None
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            return "a user model needs --input-shape with positive sizes, without the batch (e.g. --input-shape 3,32,32)"
        return None


# -- --input-shape NAME:DTYPE:DIMS[:LOW-HIGH],... : a user model's inputs ----------------------------------------
SIGNATURE_FORM = ("give NAME:DTYPE:DIMS[:LOW-HIGH] per input, comma-separated, dims joined by x "
                  "(e.g. ids:int64:16:1-1000,mask:bool:16 or img:float32:3x32x32,tab:float32:8), "
                  "or dims alone for one float32 input (e.g. 3,32,32)")
INPUT_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
# Integer inputs are drawn from [1, 100) unless a range is given: 0 is the padding id of most vocabularies (a
# model that masks `ids == 0` would see an all-padding row and give NaN), and 100 stays inside any embedding table
# of 100 rows or more while still varying the ids; give :1-V for a smaller vocabulary V (V itself excluded).
DEFAULT_INT_RANGE = (1, 100)
# bool inputs are all False unless a range is given (:0-2 random, :1-2 all True): False in a PyTorch
# key_padding_mask / src_key_padding_mask means "not padding", so the default attends everywhere.
DEFAULT_BOOL_RANGE = (0, 1)
_DTYPE_BOUNDS = {"int64": (-2**63, 2**63), "int32": (-2**31, 2**31), "int16": (-2**15, 2**15), "int8": (-128, 128),
                 "uint8": (0, 256), "bool": (0, 2)}


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"--input-shape {text!r}: {why}; {SIGNATURE_FORM}")


def _parse_one(part: str, whole: str) -> TensorSpec:
    import re

    fields = part.strip().split(":")
    if len(fields) not in (3, 4):
        raise _bad(whole, f"{part.strip()!r} is not NAME:DTYPE:DIMS")
    name, dtype, dims_text = (f.strip() for f in fields[:3])
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise _bad(whole, f"input name {name!r} is not an identifier")
    if dtype not in INPUT_DTYPES:
        raise _bad(whole, f"unknown dtype {dtype!r} (one of {', '.join(INPUT_DTYPES)})")
    dims = tuple(int(d) for d in dims_text.split("x")) if re.fullmatch(r"\d{1,9}(x\d{1,9}){0,7}", dims_text) else ()
    if not dims or min(dims) < 1:
        raise _bad(whole, f"dims {dims_text!r} of {name} are not positive sizes joined by x")
    low, high = DEFAULT_BOOL_RANGE if dtype == "bool" else DEFAULT_INT_RANGE if dtype in _DTYPE_BOUNDS else (None, None)
    if len(fields) == 4:
        match = re.fullmatch(r"(-?\d{1,19})-(-?\d{1,19})", fields[3].strip())
        if dtype not in _DTYPE_BOUNDS or not match:
            raise _bad(whole, f"range {fields[3]!r} of {name}: a LOW-HIGH range of integers is for int and bool inputs")
        low, high = int(match[1]), int(match[2])
        lo_ok, hi_ok = _DTYPE_BOUNDS[dtype]
        if not lo_ok <= low < high <= hi_ok:
            raise _bad(whole, f"range {low}-{high} of {name} is empty or outside {dtype} (HIGH is excluded)")
    return TensorSpec(name, (BATCH, *dims), dtype, low, high)


def parse_signature(text: str) -> tuple[TensorSpec, ...]:
    """'ids:int64:16:1-1000,mask:bool:16' -> the inputs' TensorSpecs (batch axis first, dynamic)."""
    if len(text) > 2000:
        raise ConfigError(f"--input-shape is {len(text)} characters long; {SIGNATURE_FORM}")
    specs = tuple(_parse_one(p, text) for p in text.split(",") if p.strip())
    if not specs:
        raise _bad(text, "no input given")
    names = [t.name for t in specs]
    if len(set(names)) != len(names):
        raise _bad(text, "input names repeat")
    return specs


def signature_text(specs: tuple[TensorSpec, ...]) -> str:
    """The canonical text of a signature (the spec cache key and what a record stores)."""
    def one(t: TensorSpec) -> str:
        dims = "x".join(str(d) for d in t.shape[1:])
        return f"{t.name}:{t.dtype}:{dims}" + (f":{t.low}-{t.high}" if t.low is not None else "")

    return ",".join(one(t) for t in specs)


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

    from dlopt.core.errors import UnsafeFileError
    from dlopt.core.fileio import read_regular

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


_loaded = functools.lru_cache(maxsize=None)(_load_callable)


def user_spec(ref: str, file: str | None = None, sha256: str | None = None, inputs: str = "") -> ArchSpec:
    """The spec of a user builder taking `inputs` (a signature, see parse_signature; "" = one float32 "input" of
    UserConfig.input_shape). A relative file is resolved now, so the same words from another directory are
    another model (and the code source recorded for it is the file that really ran)."""
    target = ref.rpartition(":")[0]
    if file is None and target.endswith(".py"):
        file = str(Path(target).expanduser().resolve())
    signature = signature_text(parse_signature(inputs)) if inputs else ""
    return _user_spec(ref, file, sha256, signature)


def with_inputs(spec: ArchSpec, cfg: Any) -> ArchSpec:
    """The user spec whose inputs are the config's signature (the same spec when they already are)."""
    wanted = getattr(cfg, "inputs", "")
    if spec.kind != "user" or wanted == _SIGNATURES.get(id(spec), ""):
        return spec
    source = code_source(spec)
    return user_spec(spec.name, *((source["file"], source["sha256"]) if source else (None, None)), inputs=wanted)


_SIGNATURES: dict[int, str] = {}  # id(spec) -> the signature text a user spec was made for


@functools.lru_cache(maxsize=None)
def _user_spec(ref: str, file: str | None, sha256: str | None, signature: str = "") -> ArchSpec:
    fn, source = _loaded(ref, file, sha256)  # one signature or another: the code runs once

    def build(cfg: UserConfig) -> Any:
        from torch import nn

        model = fn()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    spec = ArchSpec(
        name=ref, summary=f"user model from {ref}", builder=build, config=UserConfig,
        inputs=parse_signature(signature) if signature else (TensorSpec("input", (BATCH, "*input_shape")),),
        outputs=(TensorSpec("output", (BATCH,)),),  # only the batch axis is known
        task=Task.CUSTOM, dataset="none", metric="none", kind="user",
        stages=frozenset(Stage) - {Stage.TRAIN},
        limits={"train": "a user model declares no task or data; train it in your code, then pass --checkpoint"},
    )
    if source:
        _SOURCES[id(spec)] = source
    _SIGNATURES[id(spec)] = signature
    return spec
