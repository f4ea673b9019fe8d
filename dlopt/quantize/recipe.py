"""A quantization recipe (what to build) and what building it gives (the artifact and how to run it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
        if self.method == Method.STATIC and self.backend == QBackend.ONNXRUNTIME:
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
        weights = self.path.with_suffix(".bin") if self.path.suffix == ".xml" else None  # an IR's weights file
        return self.path.stat().st_size + (weights.stat().st_size if weights else 0)
