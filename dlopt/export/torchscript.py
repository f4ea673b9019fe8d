"""TorchScript export: trace by default, script where the spec says control flow needs it; frozen when valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.core.fileio import torch_archive
from dlopt.models.spec import ArchSpec


def export_torchscript(module: Any, example: tuple, spec: ArchSpec, path: Path,
                       metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Write `path` (a TorchScript archive) atomically; returns the method and whether it was frozen."""
    import torch

    method = spec.torchscript
    notes: list[str] = []
    with torch.no_grad():
        if method == "script":
            scripted = torch.jit.script(module)
        else:
            scripted = trace_module(module, example, notes)
    frozen, note = _freeze(scripted)
    with torch_archive(path) as buffer:
        torch.jit.save(frozen, buffer, _extra_files={k: v.encode() for k, v in (metadata or {}).items()})
    return {"method": method, "frozen": note is None, **({"note": note} if note else {}),
            **({"notes": notes} if notes else {})}


def trace_module(module: Any, example: tuple, notes: list[str] | None = None) -> Any:
    """Trace with check_trace=False (verification compares at several shapes, the stronger check). A dict of tensors
    is traced with strict=False (its keys are fixed, not input-dependent); an output TorchScript cannot type (a
    nested or mixed structure) is traced flattened to a tuple, and a note names the order."""
    import torch

    from dlopt.models import outputs

    out = module(*example)
    if outputs.is_flat(out):
        return torch.jit.trace(module, example, check_trace=False)
    if outputs.is_tensor_dict(out):
        return torch.jit.trace(module, example, check_trace=False, strict=False)
    order = ", ".join(outputs.names(out))
    if notes is not None:
        notes.append(f"torchscript: the model returns a {outputs.structure(out)} (the tracer takes tensors, tuples and "
                     f"dicts of tensors); the .ts file returns its tensors as a flat tuple, in this order: {order}")
    return torch.jit.trace(outputs.flat_module(module), example, check_trace=False)


def _freeze(scripted: Any) -> tuple[Any, str | None]:
    """Freezing inlines weights and folds constants; a module it cannot handle stays unfrozen (and says so)."""
    import torch

    try:
        return torch.jit.freeze(scripted.eval()), None
    except (RuntimeError, AttributeError) as exc:  # freezing is an optimisation: the unfrozen module is valid
        return scripted, f"not frozen: {str(exc).splitlines()[0][:120]}"
