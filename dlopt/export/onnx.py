"""ONNX export: dynamo (default) or legacy TorchScript-based exporter, then check, infer shapes, add metadata."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

from dlopt.core.errors import UsageError
from dlopt.core.fileio import atomic_path
from dlopt.export.shapes import dynamic_shapes, output_names
from dlopt.models.spec import ArchSpec

TWO_GB = 2**31 - 2**20  # protobuf's limit, less headroom: above it weights go to external data
DYNAMO_OPSETS = (18, 23)  # onnxscript translates from opset 18 up to torch's newest
LEGACY_OPSETS = (7, 20)  # the TorchScript-based exporter's range in this torch
LEGACY_DEFAULT_OPSET = 17
EXPORTERS = ("dynamo", "legacy")


def opset_range(exporter: str) -> tuple[int, int]:
    import torch.onnx._constants as c

    if exporter == "legacy":
        return c.ONNX_MIN_OPSET, getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", LEGACY_OPSETS[1])
    return DYNAMO_OPSETS[0], getattr(c, "ONNX_MAX_OPSET", DYNAMO_OPSETS[1])


def check_options(exporter: str, opset: int | None) -> None:
    """Refuse an unknown exporter or an opset it cannot produce, before any work is done."""
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown ONNX exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if opset is None:
        return
    low, high = opset_range(exporter)
    if not low <= opset <= high:
        other = "legacy" if exporter == "dynamo" else "dynamo"
        raise UsageError(f"the {exporter} exporter produces opsets {low}..{high}, not {opset}; "
                         f"choose --opset in that range or --exporter {other}")


class DynamoExportError(RuntimeError):
    """The dynamo exporter failed: one clean line (no ANSI codes, no graph dump) and what to try."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def dynamo_failure(exc: BaseException) -> str:
    """One line for a failed dynamo export: the root cause's first line (torch's own message is a multi-line
    guide with ANSI colour codes), and the other exporter to try."""
    cause = exc
    while cause.__cause__ is not None and cause.__cause__ is not cause:
        cause = cause.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(cause)).splitlines() if ln.strip()]
    first = " ".join((lines[0] if lines else type(cause).__name__).split())
    first = first if len(first) <= 200 else first[:199] + "…"
    return f"the dynamo ONNX exporter failed ({type(cause).__name__}: {first}); try --exporter legacy"


def _dynamo(module: Any, example: tuple, spec: ArchSpec, cfg: Any, opset: int | None, dynamic: bool,
            names: tuple[str, ...]) -> Any:
    import torch

    from dlopt.export.rnn_loops import rnn_while_loops

    chatter = io.StringIO()  # torch.export prints graph dumps on failure: the error line says what matters
    try:
        with rnn_while_loops(), contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
            program = torch.onnx.export(
                module, example, None, dynamo=True, verbose=False, input_names=list(spec.input_names),
                output_names=list(names), dynamic_shapes=dynamic_shapes(spec, cfg, dynamic),
                opset_version=opset, optimize=True, external_data=False,
            )
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # torch.onnx's error types are internal and many
        raise DynamoExportError(dynamo_failure(exc)) from exc
    return program.model_proto


def _legacy(module: Any, example: tuple, spec: ArchSpec, opset: int | None, dynamic: bool, scratch: Path,
            names: tuple[str, ...]) -> Any:
    import onnx
    import torch

    torch.onnx.export(
        module, example, str(scratch), dynamo=False, input_names=list(spec.input_names),
        output_names=list(names), dynamic_axes=_legacy_axes(spec, names) if dynamic else None,
        opset_version=opset or LEGACY_DEFAULT_OPSET, do_constant_folding=True,
    )
    return onnx.load(str(scratch))


def _legacy_axes(spec: ArchSpec, names: tuple[str, ...]) -> dict[str, dict[int, str]]:
    """The spec's dynamic axes; outputs named otherwise than the spec's (a dict's keys, nested paths) are left to
    the exporter's shape inference, which carries the inputs' dynamic axes through."""
    axes = spec.dynamic_axes()
    if tuple(names) != tuple(spec.output_names):
        axes = {k: v for k, v in axes.items() if k in spec.input_names}
    return axes


def static_axes(proto: Any, spec: ArchSpec) -> list[str]:
    """Axes the spec wants dynamic that the graph's inputs fixed to a number."""
    fixed = []
    dims = {i.name: i.type.tensor_type.shape.dim for i in proto.graph.input}
    for t in spec.inputs:
        for axis, name in t.dynamic_axes.items():
            if t.name in dims and axis < len(dims[t.name]) and dims[t.name][axis].HasField("dim_value"):
                fixed.append(f"{t.name}[{axis}] ({name})")
    return fixed


def _capture(module: Any, example: tuple, spec: ArchSpec, cfg: Any, exporter: str, opset: int | None,
             dynamic: bool, scratch: Path) -> tuple[Any, str, list[str]]:
    """The ONNX proto, the exporter that made it, and notes. If dynamo fixes a dynamic axis (it cannot keep
    some recurrent layers' time axis dynamic), the legacy exporter makes the file instead, and a note says so."""
    names = output_names(module, example, spec)
    if exporter == "legacy":
        return _legacy(module, example, spec, opset, dynamic, scratch, names), "legacy", []
    proto = _dynamo(module, example, spec, cfg, opset, dynamic, names)
    fixed = static_axes(proto, spec) if dynamic else []
    if not fixed or (opset is not None and opset > opset_range("legacy")[1]):
        return proto, "dynamo", []
    note = f"dynamo exporter fixed {', '.join(fixed)}; used the legacy exporter, which keeps it dynamic"
    return _legacy(module, example, spec, opset, dynamic, scratch, names), "legacy", [note]


def export_onnx(module: Any, example: tuple, spec: ArchSpec, cfg: Any, path: Path, *, exporter: str = "dynamo",
                opset: int | None = None, dynamic: bool = True,
                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `path` atomically; returns what was done (exporter, opset, external data, notes)."""
    import onnx

    check_options(exporter, opset)
    with atomic_path(path) as tmp:
        proto, used, notes = _capture(module, example, spec, cfg, exporter, opset, dynamic, tmp)
        for key, value in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
        external = proto.ByteSize() > TWO_GB
        if not external:
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True)
        onnx.save_model(proto, str(tmp), save_as_external_data=external,
                        location=f"{path.name}.data" if external else None)
        onnx.checker.check_model(str(tmp), full_check=True)  # full check: types and shape inference, by path
    domain_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"exporter": used, "opset": domain_opset, "external_data": external, "notes": notes,
            "dynamic_axes": spec.dynamic_axes() if dynamic else {}}
