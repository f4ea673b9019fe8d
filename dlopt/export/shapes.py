"""Shared by the exporters: the spec's batch and seq axes as torch.export Dims, and the graph's output names."""

from __future__ import annotations

from typing import Any

from dlopt.models.spec import BATCH, SEQ, ArchSpec


def dims(spec: ArchSpec, cfg: Any) -> dict[str, Any]:
    """One torch.export Dim per symbolic axis, shared by every input that uses it."""
    from torch.export import Dim

    max_len = getattr(cfg, "max_len", None)  # positional tables bound the sequence length
    return {BATCH: Dim(BATCH, min=1), SEQ: Dim(SEQ, min=1, max=max_len) if max_len else Dim(SEQ, min=1)}


def dynamic_shapes(spec: ArchSpec, cfg: Any, dynamic: bool = True) -> tuple[dict[int, Any], ...] | None:
    """torch.export's dynamic_shapes: a tuple (one dict per input) of axis -> Dim; None when static."""
    if not dynamic:
        return None
    table = dims(spec, cfg)
    shapes = tuple({axis: table[name] for axis, name in t.dynamic_axes.items()} for t in spec.inputs)
    return shapes if any(shapes) else None


def module_dynamic_shapes(module: Any, spec: ArchSpec, cfg: Any, dynamic: bool = True) -> Any:
    """`dynamic_shapes` for torch.export of `module`: a forward(*inputs) module (dlopt.models.outputs.flat_module) takes
    them grouped into one tuple, as torch.export groups such inputs into one argument."""
    shapes = dynamic_shapes(spec, cfg, dynamic)
    return (shapes,) if getattr(module, "varargs", False) and shapes is not None else shapes


def output_names(module: Any, example: tuple[Any, ...], spec: ArchSpec) -> tuple[str, ...]:
    """The names the exported graph's outputs get: one per output tensor (dict keys and nested paths for dict or
    nested outputs, the spec's names for a tensor or flat tuple; dlopt.models.outputs). Refuses non-tensor outputs."""
    import torch

    from dlopt.models import outputs

    with torch.no_grad():
        out = module(*example)
    outputs.flatten(out)
    return outputs.names(out, spec.output_names)


def recorded_output_names(module: Any, example: tuple[Any, ...], spec: ArchSpec) -> tuple[str, ...]:
    """output_names for an artifact's metadata; () when the model cannot run the example at all (each exporter then
    records that failure itself). A non-tensor output is refused here, before any exporter starts."""
    from dlopt.core.errors import DloptError

    try:
        return output_names(module, example, spec)
    except DloptError:
        raise
    except Exception:  # user code may raise anything; the exporters report it per format
        return ()
