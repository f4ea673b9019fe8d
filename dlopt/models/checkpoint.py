"""Checkpoints without pickle: `<stem>.safetensors` (weights) + `<stem>.json` (what to rebuild).

The JSON record holds the architecture name and build options, so `load_checkpoint` rebuilds the
model and then loads the weights, checking architecture and every tensor shape first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt import __version__
from dlopt.core.errors import InputFileError
from dlopt.core.fileio import atomic_path, refuse_pickle, sha256_file, write_json_atomic
from dlopt.core.schema import read_record as read_record_file
from dlopt.models.options import config_dict
from dlopt.models.registry import create_model, get_spec, make_model_config, spec_for
from dlopt.models.spec import ArchSpec

RECORD_FORMAT = "dlopt-checkpoint"
RECORD_SCHEMA = 1


@dataclass(frozen=True)
class Checkpoint:
    model: Any
    spec: ArchSpec
    config: Any
    record: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _paths(path: Path) -> tuple[Path, Path]:
    """Accept the .json, the .safetensors, their stem, or a directory holding model.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    stem = path.with_suffix("") if path.suffix in {".json", ".safetensors"} else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def save_checkpoint(model: Any, spec: ArchSpec, config: Any, path: Path, metrics: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write weights then record, each atomically; returns the record's path."""
    from safetensors.torch import save_model

    record_path, weights_path = _paths(path)
    with atomic_path(weights_path) as tmp:
        save_model(model, str(tmp))
    record = {
        "format": RECORD_FORMAT, "schema": RECORD_SCHEMA, "dlopt_version": __version__,
        "arch": spec.name, "config": config_dict(config), "weights": weights_path.name,
        "sha256": sha256_file(weights_path), "metrics": metrics or {}, **(extra or {}),
        "state_versions": state_versions(model),
    }
    code = _code_source(spec)
    if code:  # a user model: where its code is and what it was, so a later load finds it and sees a change
        record["code"] = code
    write_json_atomic(record_path, record)
    return record_path


def read_record(path: Path, trust_pickle: bool = False) -> tuple[dict[str, Any], Path]:
    path = Path(path)
    if path.is_file() and path.suffix not in {".json", ".safetensors"}:
        refuse_pickle(path, trust_pickle)
    record_path, weights_path = _paths(path)
    if not record_path.exists():  # a FIFO or device exists too: read_record_file names it and never opens it
        raise InputFileError(f"checkpoint record {record_path} not found; give the .json written by dlopt")
    record = read_record_file(record_path)
    if not weights_path.is_file():
        raise InputFileError(f"weights file {weights_path} is missing beside {record_path.name}")
    refuse_pickle(weights_path, trust_pickle=False)
    return record, weights_path


def _code_source(spec: ArchSpec) -> dict[str, str] | None:
    if spec.kind != "user":
        return None
    from dlopt.models.zoo.external import code_source

    return code_source(spec)


def record_spec(record: dict[str, Any], record_path: Path) -> ArchSpec:
    """The spec a record names. A record is data: a zoo or torchvision name is looked up; user model code runs
    only if this invocation trusts it (dlopt.core.user_code), from the recorded file, and only if its sha256 matches."""
    arch = record["arch"]
    from dlopt.core.user_code import is_user_ref, require_trusted

    if not is_user_ref(arch):
        return get_spec(arch)
    code = record.get("code")
    require_trusted(arch, code, record_path)
    from dlopt.models.zoo.external import user_spec

    return user_spec(arch, *((code["file"], code["sha256"]) if code else ()))


def _check_shapes(model: Any, weights_path: Path, arch: str) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            stored = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFileError(f"{weights_path} is corrupt or truncated ({exc})") from None
    check_state_shapes(model, stored, f"checkpoint does not fit {arch}")


def check_state_shapes(model: Any, stored: dict[str, tuple[int, ...]], what: str) -> None:
    """Stored names/shapes against the model's (tied weights may be stored once); else InputFileError `what: ...`."""
    state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"{k}: file {stored[k]} vs model {expected[k]}" for k in expected if k in stored and stored[k] != expected[k]]
    groups: dict[int, list[str]] = {}  # tied weights are saved once, under one of their names
    for k, v in state.items():
        groups.setdefault(v.data_ptr() if v.numel() else id(v), []).append(k)
    missing = sorted(names[0] for names in groups.values() if not any(n in stored for n in names))
    unexpected = sorted(set(stored) - set(expected))
    if problems or missing or unexpected:
        detail = "; ".join(problems[:3] + [f"missing {m}" for m in missing[:3]] + [f"unexpected {u}" for u in unexpected[:3]])
        raise InputFileError(f"{what}: {detail}")


def state_versions(model: Any) -> dict[str, int]:
    """Each submodule's state-dict layout version (`state_dict()._metadata`), which safetensors cannot store.

    Some loaders read it: torchvision's MNASNet refuses a state without it ("version should be set to 1 or 2
    instead of None"), BatchNorm uses it to tell old layouts apart. The record keeps it beside the weights."""
    meta = getattr(model.state_dict(), "_metadata", None) or {}
    return {prefix: int(m["version"]) for prefix, m in meta.items() if m.get("version") is not None}


def with_versions(state: dict[str, Any], versions: dict[str, int] | None, model: Any) -> dict[str, Any]:
    """`state` with the `_metadata` load_state_dict hands each submodule's loader: `versions` as recorded, or
    (a file that kept none: safetensors, older records) the versions of the model just built by this code."""
    from collections import OrderedDict

    kept = getattr(state, "_metadata", None)
    out: Any = OrderedDict(state)
    if kept is not None:  # a torch.save'd state dict keeps its own
        out._metadata = kept
        return out
    chosen = versions if versions is not None else state_versions(model)
    out._metadata = {prefix: {"version": v} for prefix, v in chosen.items()}
    return out


def load_checkpoint(path: Path, expected_arch: str | None = None, trust_pickle: bool = False) -> Checkpoint:
    """Rebuild the model from the record, check it, then load the weights (eval mode)."""
    record, weights_path = read_record(path, trust_pickle)
    arch = record["arch"]
    if expected_arch and arch != expected_arch:
        raise InputFileError(f"checkpoint is for {arch}, not {expected_arch}; pass a {expected_arch} checkpoint")
    if record.get("sha256") and sha256_file(weights_path) != record["sha256"]:
        raise InputFileError(f"{weights_path} does not match the sha256 in its record: corrupt or replaced")
    spec = record_spec(record, _paths(path)[0])
    cfg = make_model_config(spec, record.get("config", {}))
    spec = spec_for(spec, cfg)  # a user model's recorded signature (build option `inputs`) picks its spec
    model = create_model(spec, cfg)
    if record.get("structure"):  # a pruned model: reshape the built model to the recorded widths first
        from dlopt.models.structure import apply

        apply(model, record["structure"])
    _load_into(model, record, weights_path)
    return Checkpoint(model=model.eval(), spec=spec, config=cfg, record=record, path=_paths(path)[0])


def load_weights(model: Any, path: Path, device: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint's weights into a model already built for it (training reloads its best epoch this way);
    returns the record. Every shape is checked and each submodule gets its recorded layout version."""
    record, weights_path = read_record(path)
    _load_into(model, record, weights_path, device)
    return record


def _load_into(model: Any, record: dict[str, Any], weights_path: Path, device: str = "cpu") -> None:
    from safetensors.torch import load_file

    _check_shapes(model, weights_path, record["arch"])  # every name and shape, tied weights included: strict=False
    state = with_versions(load_file(str(weights_path), device=device), record.get("state_versions"), model)
    model.load_state_dict(state, strict=False)
