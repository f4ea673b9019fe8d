"""TorchScript export: trace by default, script where the spec says control flow needs it; frozen when valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.fileio import torch_archive
from dlopt.spec import ArchSpec


def export_torchscript(module: Any, example: tuple, spec: ArchSpec, path: Path,
                       metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Write `path` (a TorchScript archive) atomically; returns the method and whether it was frozen."""
    import torch

    method = spec.torchscript
    with torch.no_grad():
        if method == "script":
            scripted = torch.jit.script(module)
        else:  # check_trace=False: verification compares at several shapes, which is the stronger check
            scripted = torch.jit.trace(module, example, check_trace=False)
    frozen, note = _freeze(scripted)
    with torch_archive(path) as buffer:
        torch.jit.save(frozen, buffer, _extra_files={k: v.encode() for k, v in (metadata or {}).items()})
    return {"method": method, "frozen": note is None, **({"note": note} if note else {})}


def _freeze(scripted: Any) -> tuple[Any, str | None]:
    """Freezing inlines weights and folds constants; a module it cannot handle stays unfrozen (and says so)."""
    import torch

    try:
        return torch.jit.freeze(scripted.eval()), None
    except (RuntimeError, AttributeError) as exc:  # freezing is an optimisation: the unfrozen module is valid
        return scripted, f"not frozen: {str(exc).splitlines()[0][:120]}"
