"""The openvino export format: the ONNX export (same exporter, opset, dynamic axes) converted to OpenVINO IR.

The writer sits with the other writers in dlopt.export; dlopt.runtime.openvino (the runtime: convert, compile, run)
imports no export code, so the artifact runtime stays below export and verify (tests/test_import_cycles.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dlopt.export.onnx import export_onnx
from dlopt.runtime.openvino import convert_onnx, require_openvino


def export_openvino(module: Any, example: tuple[Any, ...], spec: Any, cfg: Any, path: Path, *, exporter: str,
                    opset: int | None, dynamic: bool, metadata: dict[str, str],
                    onnx: Path | None = None) -> dict[str, Any]:
    """dlopt.export's openvino format: the ONNX export (same exporter, opset, dynamic axes) converted to IR.
    `onnx`: that export, already written by this same export call (converted instead of exporting again)."""
    ov = require_openvino()  # before the ONNX export: a missing runtime costs nothing
    about = {"weights": path.with_suffix(".bin").name, "openvino": ov.__version__}
    if onnx is not None:
        convert_onnx(onnx, path, metadata)
        return {**about, "via": f"{Path(onnx).name} of this export"}
    with tempfile.TemporaryDirectory(prefix=".openvino-onnx.") as tmp:
        details = export_onnx(module, example, spec, cfg, Path(tmp) / "model.onnx", exporter=exporter, opset=opset,
                              dynamic=dynamic, metadata=metadata)
        convert_onnx(Path(tmp) / "model.onnx", path, metadata)
    return {**details, **about, "via": "onnx export"}
