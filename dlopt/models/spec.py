"""The architecture spec: everything generic code needs to know about a model, declared once.

This module must not import torch: `dlopt list` reads specs without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    TRAIN = "train"
    PRUNE = "prune"
    QUANTIZE = "quantize"
    EXPORT = "export"
    VERIFY = "verify"
    BENCH = "bench"


class ExportFormat(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    PT2 = "pt2"
    OPENVINO = "openvino"  # IR (.xml + .bin), converted from the ONNX export


class PruneMethod(StrEnum):
    STRUCTURED = "structured"  # channels, neurons and heads physically removed
    UNSTRUCTURED = "unstructured"  # weights zeroed (sparsity), shapes unchanged


class QuantMethod(StrEnum):
    """`dlopt quantize --method`, the [quantize] method of pipeline.toml and ArchSpec.quant_methods: one enum."""

    AUTO = "auto"  # build every int8 path the spec declares, measure latency and metric, keep the fastest in budget
    STATIC = "static"  # int8 weights and activations, calibrated
    DYNAMIC = "dynamic"  # int8 weights, activations quantized on the fly (Linear, LSTM, GRU, attention)
    FP16 = "fp16"
    BF16 = "bf16"


# The methods that make integer layers: their result must hold some (QuantizeConfig.is_int8). A new integer method
# is listed here, next to its member, so that no other module needs the list.
INTEGER_METHODS = frozenset({QuantMethod.AUTO, QuantMethod.STATIC, QuantMethod.DYNAMIC})


class QuantFormat(StrEnum):
    """How ONNX Runtime writes an int8 graph (`dlopt quantize --quant-format`)."""

    QDQ = "qdq"  # QuantizeLinear/DequantizeLinear pairs around float ops; ORT fuses them
    QOPERATOR = "qoperator"  # QLinearConv, QLinearMatMul...: integer operators in the graph


class Exporter(StrEnum):
    """The ONNX exporter (`--exporter` of export, quantize and bench; `exporter` in pipeline.toml)."""

    DYNAMO = "dynamo"  # torch.export based (the default)
    LEGACY = "legacy"  # TorchScript based: much faster to export, opset <= 20


class Backend(StrEnum):
    """A bench runtime (`--backend` of bench, `backends` in pipeline.toml); also each artifact format's runtime
    (dlopt.runtime.formats), which is why it lives here and not in dlopt.bench."""

    EAGER = "eager"  # fp32, torch.inference_mode
    TORCHSCRIPT = "torchscript"  # traced (or scripted), frozen, optimize_for_inference
    COMPILE = "compile"  # torch.compile(inductor) with freezing
    ONNXRUNTIME = "onnxruntime"  # CPU EP on cpu; CUDA EP on cuda
    TENSORRT = "tensorrt"  # ONNX Runtime's TensorRT EP (cuda only)
    OPENVINO = "openvino"  # OpenVINO CPU plugin, latency hint, f32 precision (dlopt.runtime.openvino)
    PT2 = "pt2"  # the run's torch.export (.pt2) files, run by torch: no live variant, only files the run holds


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    SEQ2SEQ = "seq2seq"
    GENERATION = "generation"
    RECONSTRUCTION = "reconstruction"
    REINFORCEMENT = "reinforcement"
    CUSTOM = "custom"


# Symbolic dimensions in TensorSpec shapes. Any other string names a field of the model's config.
BATCH = "batch"
SEQ = "seq"
DYNAMIC_DIMS = (BATCH, SEQ)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. `shape` mixes ints, BATCH/SEQ and config field names.

    For inputs, values are drawn from [low, high) (ints or config field names) for integer dtypes,
    from a standard normal for float dtypes unless low/high are given.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    low: int | float | str | None = None
    high: int | float | str | None = None

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if d in DYNAMIC_DIMS}


@dataclass(frozen=True)
class Tolerance:
    """Elementwise parity test |a - b| <= atol + rtol * |b| (b: the eager reference)."""

    atol: float = 1e-5
    rtol: float = 1e-4


ALL_STAGES = frozenset(Stage)
ALL_FORMATS = frozenset(ExportFormat)


@dataclass(frozen=True)
class ArchSpec:
    """What an architecture is, declared once and read by every stage, test and benchmark."""

    name: str
    summary: str
    # "module:attr" (imported lazily) or a callable; called as builder(config) -> nn.Module.
    builder: str | Callable[[Any], Any]
    config: type  # a dataclass whose defaults are the articles' sizes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    task: Task
    dataset: str
    metric: str
    tiny: Mapping[str, Any] = field(default_factory=dict)  # config overrides for tests
    stages: frozenset[Stage] = ALL_STAGES
    formats: frozenset[ExportFormat] = ALL_FORMATS
    # Which pruning / quantization methods apply (each method left out should have a limits entry
    # "prune:<method>" / "quantize:<method>" saying why).
    prune_methods: frozenset[PruneMethod] = frozenset(PruneMethod)
    quant_methods: frozenset[QuantMethod] = frozenset(QuantMethod)
    # Why a stage, a format or a method is not supported: key is a Stage or ExportFormat value, or
    # "prune:<method>" / "quantize:<method>".
    limits: Mapping[str, str] = field(default_factory=dict)
    tolerance: Tolerance = Tolerance()
    # Dotted attribute of the built model that deployment stages (export, verify, bench, prune,
    # quantize) work on; None means the whole model. Training always uses the whole model.
    entry: str | None = None
    torchscript: str = "trace"  # "trace" or "script": how the TorchScript export is made
    # Training: the name of the task family's loop (dlopt.train registry), and build options that
    # training uses by default (e.g. a reduced resolution); None = not trainable (limits says why).
    trainer: str | None = None
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # the articles (in shared/seeds) the facts come from
    extra: str | None = None  # optional dependency extra needed to build it
    kind: str = "zoo"  # zoo | torchvision | user

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def takes_sequences(self) -> bool:
        return any(SEQ in t.shape for t in self.inputs)

    @property
    def is_classifier(self) -> bool:
        return self.task == Task.CLASSIFICATION

    def supports(self, stage: Stage | ExportFormat | str) -> bool:
        key = str(stage)
        if key in Stage._value2member_map_:
            return Stage(key) in self.stages
        if key in ExportFormat._value2member_map_:
            return ExportFormat(key) in self.formats
        stage, _, method = key.partition(":")
        if stage == Stage.PRUNE and method:
            return Stage.PRUNE in self.stages and method in {str(m) for m in self.prune_methods}
        if stage == Stage.QUANTIZE and method:
            return Stage.QUANTIZE in self.stages and method in {str(m) for m in self.quant_methods}
        return key not in self.limits

    def why_not(self, stage: Stage | ExportFormat | str) -> str:
        key = str(stage)
        if key in self.limits:
            return self.limits[key]
        base = key.partition(":")[0]
        if base != key and base in self.limits:
            return self.limits[base]
        return f"{self.name} does not declare support for {stage}"

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX-style dynamic axes for every input and output."""
        return {t.name: t.dynamic_axes for t in (*self.inputs, *self.outputs) if t.dynamic_axes}
