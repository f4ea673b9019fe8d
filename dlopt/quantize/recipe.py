"""A quantization recipe (what to build), what building it gives (the artifact and how to run it), the backend
table, and the one rule for whether a spec can take a method (`supports` / `unsupported`).

The backend table follows NNCF's layout: a recipe's backend is looked up once in BACKENDS, and its code is the
module `dlopt.quantize.<module>`, which has the same entry points as every other backend module:
`build_for(session, recipe, batches, dst) -> Built`, and optionally `has_int8(built) -> bool` (default: the layers
the builder saw converted), `references(session) -> {name: fp32 call}` (timed beside its candidates) and
`search(session, built, before_val, progress)` (its own accuracy-aware search). The module also declares the methods
it builds (`METHODS`), those `auto` tries (`AUTO_METHODS`) and those that calibrate (`CALIBRATED_METHODS`), so a new
recipe on an existing backend is its QuantMethod member (dlopt/models/spec.py) and its code in that module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from dlopt.models.spec import ExportFormat
from dlopt.quantize.config import Method, QBackend, QuantFormat


@dataclass(frozen=True)
class Recipe:
    backend: QBackend
    method: Method  # static | dynamic | fp16 | bf16 (never auto)
    quant_format: QuantFormat = QuantFormat.QDQ
    per_channel: bool = True
    keep_float: tuple[str, ...] = ()  # layers (ONNX node or module names) left in floating point

    @property
    def label(self) -> str:
        parts = [str(self.backend), str(self.method)]
        if self.method == Method.STATIC and len(backend(self.backend).static_formats) > 1:
            parts.append(str(self.quant_format))
        if self.method in (Method.STATIC, Method.DYNAMIC):
            parts.append("per-channel" if self.per_channel else "per-tensor")
        return " ".join(parts)

    def keeping(self, layers: tuple[str, ...]) -> Recipe:
        return replace(self, keep_float=tuple(layers))

    def to_json(self) -> dict[str, Any]:
        return {"backend": str(self.backend), "method": str(self.method), "quant_format": str(self.quant_format),
                "per_channel": self.per_channel, "keep_float": list(self.keep_float), "label": self.label}


@dataclass
class Built:
    """One built candidate: its file, a callable(*tensors) -> tuple, and which layers were converted."""

    recipe: Recipe
    path: Path
    runner: Callable[..., tuple[Any, ...]]
    quantized_layers: tuple[str, ...]  # layers converted to int8 (or half)
    float_layers: tuple[str, ...]  # quantizable layers left in float (by keep_float or by the tool)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        from dlopt.runtime.formats import artifact_bytes

        return artifact_bytes(self.path)  # with the files that ship with it (an IR's weights)


def unsupported(spec: Any, method: Method | str) -> str | None:
    """Why `spec` cannot be quantized with `method` (auto: with any method it allows), or None when it can. The
    stage's check, the recipe list and the pipeline's plan all ask this, so they cannot disagree."""
    if not spec.supports("quantize"):
        return spec.why_not("quantize")
    if str(method) != Method.AUTO and not spec.supports(f"quantize:{method}"):
        return spec.why_not(f"quantize:{method}")
    return None


def supports(spec: Any, method: Method | str) -> bool:
    return unsupported(spec, method) is None


@dataclass(frozen=True)
class QuantBackend:
    """One quantization toolkit: its module's entry points and what the stage needs to know before building."""

    module: str  # dlopt.quantize.<module>
    writes: ExportFormat  # the artifact format its candidates are written in
    static_formats: tuple[QuantFormat, ...] = ()  # static int8 graph formats auto tries (one: the config's)
    reads_fp32_onnx: bool = False  # it quantizes the fp32 ONNX export (made once per session, or the run's own)
    fp32_reference: bool = False  # its candidates are timed and sized against that fp32 ONNX file
    requires: tuple[str, ...] = ()  # modules `auto` needs importable to measure it (their pip names too)
    label: str = ""  # how notes name it ("OpenVINO"); "" = the QBackend value

    def code(self) -> ModuleType:
        return importlib.import_module(f"dlopt.quantize.{self.module}")  # by name: it imports this module

    def offers(self, which: str = "METHODS") -> tuple[Method, ...]:
        return tuple(getattr(self.code(), which, ()))

    def build(self, session: Any, recipe: Recipe, batches: Any, dst: Path) -> Built:
        return self.code().build_for(session, recipe, batches, dst)

    def has_int8(self, built: Built) -> bool:
        count = getattr(self.code(), "has_int8", None)
        return count(built) if count is not None else bool(built.quantized_layers)

    def references(self, session: Any) -> dict[str, Callable[[], Any]]:
        refs = getattr(self.code(), "references", None)
        return refs(session) if refs is not None and self.fp32_reference else {}

    def search(self, session: Any, built: Built, before_val: float | None, progress: Any) -> Any:
        own = getattr(self.code(), "search", None)
        return own(session, built, before_val, progress) if own is not None else None


BACKENDS: dict[QBackend, QuantBackend] = {
    QBackend.ONNXRUNTIME: QuantBackend("ort_quant", ExportFormat.ONNX, (QuantFormat.QDQ, QuantFormat.QOPERATOR),
                                       reads_fp32_onnx=True, fp32_reference=True),
    QBackend.OPENVINO: QuantBackend("ov_quant", ExportFormat.OPENVINO, reads_fp32_onnx=True,
                                    requires=("openvino", "nncf"), label="OpenVINO"),
    QBackend.TORCH: QuantBackend("torch_quant", ExportFormat.PT2),
}


def backend(name: QBackend | str) -> QuantBackend:
    return BACKENDS[QBackend(str(name))]
