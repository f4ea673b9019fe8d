"""The environment fingerprint recorded in every manifest and benchmark result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "torchao", "torch-pruning", "numpy")
_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "f16c")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {"model": model, "flags": sorted(f for f in _FLAGS if f in flags), "cores": os.cpu_count()}


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=cwd or Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def fingerprint() -> dict[str, Any]:
    """Versions, CPU, threads and git commit. Reads torch's thread count only if torch is loaded."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    cuda = None
    if torch is not None and torch.cuda.is_available():
        cuda = {"device": torch.cuda.get_device_name(0), "version": torch.version.cuda}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "dlopt": _version("dlopt"),
        "cpu": cpu_info(),
        "threads": threads,
        "cuda": cuda,
        "git_commit": git_commit(),
    }
