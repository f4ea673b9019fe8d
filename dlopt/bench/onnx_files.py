"""ONNX files bench times without a model of dlopt's: a stray .onnx, and a run made from one (`dlopt quantize
model.onnx` writes <root>/onnx-<stem>/<id>/int8/; `dlopt bench model.onnx` an onnx-<stem> run of its own).

Such a run holds no model record: its manifest names the fp32 file it was made from (model.source, with its
sha256 when quantize made it). `run_fp32(run)` is that file, checked to be the one the run recorded; `onnx_inputs`
draws inputs from a graph's declared inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError
from dlopt.core.runs import Run
from dlopt.models.spec import ExportFormat
from dlopt.runtime.formats import find_format, ort_session

ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32",
               "tensor(bool)": "bool", "tensor(double)": "float64"}
MODEL_RECORD = "model.json"  # dlopt.contract.target.MODEL_RECORD: a run with one is built from it, not from a file


def onnx_inputs(path: Path, batch: int, seq_len: int | None, seed: int = 0) -> tuple[Any, ...]:
    """Inputs for a bare ONNX graph: symbolic dims are batch (first) or seq (later); ints drawn from [0, 2)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    session = ort_session(path, threads=1, optimization="disable")  # read for its inputs only
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else (batch if i == 0 else (seq_len or 16)) for i, d in enumerate(inp.shape)]
        dtype = ONNX_DTYPES.get(inp.type)
        if dtype is None:
            raise InputFileError(f"{path.name}: input {inp.name} has type {inp.type}, which dlopt cannot generate")
        out.append(torch.randint(0, 2, shape, generator=gen, dtype=getattr(torch, dtype)) if dtype != "float32"
                   and dtype != "float64" else torch.randn(shape, generator=gen, dtype=getattr(torch, dtype)))
    return tuple(out)


def run_fp32(run: Run) -> Path | None:
    """The fp32 .onnx file a run was made from, when the run has no model of its own (else None); InputFileError
    when that file is gone or differs from the one the run recorded (its int8 copy was judged against that one)."""
    from dlopt.core.fileio import sha256_file

    model = run.manifest().get("model")
    source = model.get("source") if isinstance(model, dict) else None
    if not isinstance(source, str) or getattr(find_format(source), "format", None) != ExportFormat.ONNX \
            or "checkpoint" in model or (run.path / MODEL_RECORD).exists():
        return None
    path = Path(source)
    if not path.is_file():
        raise InputFileError(f"the run {run.path} was made from {path}, which is gone; restore it to bench the run "
                             "against it, or copy the int8 file out of the run and bench it alone")
    recorded = model.get("sha256")
    if isinstance(recorded, str) and sha256_file(path) != recorded:
        raise InputFileError(f"{path} changed since the run {run.path} recorded it (sha256 {recorded[:12]}...); "
                             f"restore it, or quantize the new file in a new run (dlopt quantize {path})")
    onnx_inputs(path, 1, None)  # a corrupt file fails here, before the bench stage is recorded
    return path
