"""torch.export: a `.pt2` ExportedProgram with the spec's dynamic batch and seq axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.export.shapes import dynamic_shapes
from dlopt.fileio import torch_archive
from dlopt.spec import ArchSpec


def export_pt2(module: Any, example: tuple, spec: ArchSpec, cfg: Any, path: Path, dynamic: bool = True,
               metadata: dict[str, str] | None = None) -> dict[str, Any]:
    import torch

    from dlopt.export.rnn_loops import rnn_while_loops

    module, notes = _savable(module, example)
    shapes = dynamic_shapes(spec, cfg, dynamic)
    if notes and shapes is not None:
        shapes = (shapes,)  # the flattening forward(*inputs): torch.export groups the inputs into one argument
    with rnn_while_loops():  # keeps the seq axis of recurrent layers dynamic
        program = torch.export.export(module, example, dynamic_shapes=shapes)
    with torch_archive(path) as buffer:
        torch.export.save(program, buffer, extra_files=metadata or {})
    return {"dynamic_axes": spec.dynamic_axes() if dynamic else {}, **({"notes": notes} if notes else {})}


def _savable(module: Any, example: tuple) -> tuple[Any, list[str]]:
    """A program torch.export can save and dlopt load without the user's classes: an output held in a namedtuple (or
    any class of its own) is returned as a flat tuple instead, and a note names the order."""
    import torch

    from dlopt import outputs

    with torch.no_grad():
        out = module(*example)
    if outputs.plain_containers(out):
        return module, []
    order = ", ".join(outputs.names(out))
    return outputs.flat_module(module), [
        f"pt2: the model returns a {outputs.structure(out)}, whose class torch.export cannot save; the .pt2 program "
        f"returns its tensors as a flat tuple, in this order: {order}"]
