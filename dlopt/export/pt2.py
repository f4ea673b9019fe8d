"""torch.export: a `.pt2` ExportedProgram with the spec's dynamic batch and seq axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.core.fileio import torch_archive
from dlopt.export.shapes import module_dynamic_shapes
from dlopt.models import outputs
from dlopt.models.spec import ArchSpec


def export_pt2(module: Any, example: tuple, spec: ArchSpec, cfg: Any, path: Path, dynamic: bool = True,
               metadata: dict[str, str] | None = None) -> dict[str, Any]:
    import torch

    from dlopt.export.rnn_loops import rnn_while_loops

    module, notes = outputs.savable(module, example)
    with rnn_while_loops():  # keeps the seq axis of recurrent layers dynamic
        program = torch.export.export(module, example, dynamic_shapes=module_dynamic_shapes(module, spec, cfg, dynamic))
    with torch_archive(path) as buffer:
        torch.export.save(program, buffer, extra_files=metadata or {})
    return {"dynamic_axes": spec.dynamic_axes() if dynamic else {}, **({"notes": notes} if notes else {})}

