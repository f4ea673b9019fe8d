"""What loading a TorchScript (.ts) or torch.export (.pt2) file will do, judged the way torch's loaders read it.

Member names say little: torch.export.load (torch/export/pt2_archive/_package.py) unpickles a weight or
constant whose payload config says `use_pickle: true`, a `custom_obj_` / `opaque_obj_` constant, a legacy
`data/weights/<model>.pt`, and retries sample inputs with full unpickling when `weights_only` fails; it loads
AOTInductor shared libraries from `data/aotinductor/`, and a zip with a top-level `version` member may take its
legacy loader, which unpickles too. torch.jit.load always unpickles and compiles the archive's code.
`load_module` is the one door every load of such a file goes through: bounded (zip bombs are refused first),
then trusted (see `check_trusted`), then loaded.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError

MAX_UNCOMPRESSED_ENV = "DLOPT_MAX_UNCOMPRESSED"  # bytes; raises the ceiling for a trusted, very large archive
MAX_RATIO = 8  # torch stores members uncompressed: a real archive expands ~1x
RATIO_FLOOR = 256 << 20  # small archives may expand more than MAX_RATIO without harm
MAX_MEMBERS = 100_000
MAX_CONFIG_BYTES = 64 << 20


def check_bomb(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse an archive whose members would expand far beyond its size, before anything is extracted."""
    infos = zf.infolist()
    size = max(Path(path).stat().st_size, 1)
    total = sum(i.file_size for i in infos)
    override = os.environ.get(MAX_UNCOMPRESSED_ENV, "")
    ceiling = int(override) if override.isdigit() else max(RATIO_FLOOR, MAX_RATIO * size)
    if len(infos) > MAX_MEMBERS or total > ceiling:
        raise InputFileError(f"{path} would expand to {total} bytes in {len(infos)} members ({total / size:.0f}x its "
                             f"size), over the {ceiling}-byte ceiling: refusing a likely zip bomb; if you trust it, "
                             f"set {MAX_UNCOMPRESSED_ENV}=BYTES")


def _what(fmt: str) -> str:
    return "TorchScript archive" if fmt == "torchscript" else "torch.export program"


def _open_zip(path: Path, fmt: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputFileError(f"{path} is not a loadable {_what(fmt)} (not a zip archive: {exc})") from None


def _records(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Members by the names torch's stream reader uses: without the archive's top-level folder."""
    return {info.filename.split("/", 1)[1]: info for info in zf.infolist() if "/" in info.filename}


def _config(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, Any]:
    if info.file_size > MAX_CONFIG_BYTES:
        raise InputFileError(f"{path}: {info.filename} is {info.file_size} bytes; not a torch.export payload config")
    try:
        data = json.loads(zf.read(info).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InputFileError(f"{path}: {info.filename} is not valid JSON ({str(exc)[:80]}); the file is corrupt") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise InputFileError(f"{path}: {info.filename} is not a torch.export payload config; the file is corrupt")
    return config


def _sample_inputs_unpickle(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """torch loads sample inputs with weights_only=True and, if that fails, again with full unpickling."""
    import torch

    raw = zf.read(info)
    if not raw:
        return False
    try:
        torch.load(io.BytesIO(raw), weights_only=True)
    except Exception:  # noqa: BLE001 - any failure here is what sends torch to its unsafe retry
        return True
    return False


def _model_reasons(path: Path, zf: zipfile.ZipFile, records: dict[str, zipfile.ZipInfo], model: str) -> list[str]:
    from torch.export.pt2_archive import constants as c

    reasons = []
    for kind, legacy, config_name in (("weight", f"{c.WEIGHTS_DIR}{model}.pt", c.WEIGHTS_CONFIG_FILENAME_FORMAT),
                                      ("constant", f"{c.CONSTANTS_DIR}{model}.pt", c.CONSTANTS_CONFIG_FILENAME_FORMAT)):
        if legacy in records:
            reasons.append(f"its {kind}s are a legacy pickle ({legacy})")
        config = records.get(config_name.format(model))
        for fqn, meta in (_config(path, zf, config) if config else {}).items():
            name = str(meta.get("path_name", ""))
            if meta.get("use_pickle") or name.startswith((c.CUSTOM_OBJ_FILENAME_PREFIX, c.OPAQUE_OBJ_FILENAME_PREFIX)):
                reasons.append(f"{kind} {fqn!r} is stored as a pickle")
    sample = records.get(c.SAMPLE_INPUTS_FILENAME_FORMAT.format(model))
    if sample is not None and _sample_inputs_unpickle(zf, sample):
        reasons.append("its sample inputs are not plain tensors, so torch would unpickle them in full")
    return reasons


def pickle_reasons(path: Path, fmt: str) -> list[str]:
    """Why loading this file would unpickle or run code ([] when it would not). A zip bomb is refused here."""
    import stat

    path = Path(path)
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open below; a device never ends
        raise InputFileError(f"{path} is not a regular file (a FIFO, device or directory); dlopt reads only regular files")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:1] == b"\x80":
        return ["it is a raw pickle"]
    with _open_zip(path, fmt) as zf:
        check_bomb(path, zf)
        if fmt == "torchscript":
            return ["torch.jit.load always unpickles a TorchScript archive and compiles its code"]
        from torch.export.pt2_archive import constants as c

        records = _records(zf)
        reasons = []
        if "version" in zf.namelist():
            reasons.append("it has a top-level 'version' member, which sends torch to its legacy loader (pickle)")
        if any(name.startswith(c.AOTINDUCTOR_DIR) for name in records):
            reasons.append("it holds AOTInductor compiled code, a shared library that runs when loaded")
        models = [n[len(c.MODELS_DIR):-len(".json")] for n in records if n.startswith(c.MODELS_DIR) and n.endswith(".json")]
        for model in models:
            reasons += _model_reasons(path, zf, records, model)
        return reasons


def recorded_by_dlopt(path: Path) -> bool:
    """True when a manifest in the artifact's directory (or its parent) records this exact file's sha256.
    A manifest that is not a valid one (dlopt.core.schema) vouches for nothing."""
    from dlopt.core.fileio import sha256_file
    from dlopt.core.runs import MANIFEST
    from dlopt.core.schema import read_manifest

    path = Path(path).resolve()
    digest = sha256_file(path)
    for folder in (path.parent, path.parent.parent):
        if not (folder / MANIFEST).exists():
            continue
        try:
            manifest = read_manifest(folder / MANIFEST)
        except InputFileError:
            continue
        for stage in manifest.get("stages", {}).values():  # a failed rerun keeps its last done record as previous
            for record in (stage, stage.get("previous") or {}):
                if isinstance(record, dict) and any(isinstance(out, dict) and out.get("sha256") == digest
                                                    for out in record.get("outputs") or []):
                    return True
    return False


def register_quantized_ops() -> None:
    """Quantized .pt2 programs (dlopt.quantize's torch path) call ops that are registered on import: the PT2E
    quantized_decomposed ops (cheap) here, torchao's own ops only when a load needs them (slow import)."""
    import contextlib

    with contextlib.suppress(ImportError):
        import torch.ao.quantization.fx._decomposed  # noqa: F401


def check_trusted(path: Path, fmt: str, trust_pickle: bool = False,
                  remedy: str = "pass --trust-pickle only if you trust its source") -> None:
    """Refuse a file that would unpickle or run code, unless the user trusts it or a dlopt manifest records it.
    `remedy` ends the line: what this command lets the user do about it."""
    from dlopt.core.errors import UnsafeFileError

    reasons = pickle_reasons(path, fmt)
    if not reasons or trust_pickle or recorded_by_dlopt(path):
        return
    raise UnsafeFileError(f"{path} holds pickled data or code ({reasons[0]}) and no dlopt run manifest records its "
                          f"sha256, so dlopt did not write it (or it changed since); {remedy}")


def _quiet_torch_export() -> Any:
    """torch.export.load logs a traceback (as a warning) before its fallback path; the user gets our one line."""
    import logging

    from dlopt.core.warn import logger_level

    return logger_level("torch.export", logging.CRITICAL)


def load_module(path: Path, fmt: str, *, trust_pickle: bool = False, device: str = "cpu") -> Any:
    """The module in a .ts or .pt2 file, past the bomb and trust checks; every load of these formats comes here."""
    import torch

    path = Path(path)
    check_trusted(path, fmt, trust_pickle)
    try:
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location=device)
        register_quantized_ops()
        with _quiet_torch_export():
            return torch.export.load(str(path)).module()  # an ExportedProgram's module runs where it was exported
    except (RuntimeError, ValueError, KeyError, OSError, AssertionError, zipfile.BadZipFile) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputFileError(f"{path} is not a loadable {_what(fmt)} ({line})") from None
