"""What `dlopt quantize` is asked to do. No torch here: the CLI builds this before anything heavy loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from dlopt.contract.names import check_stage_name
from dlopt.core.errors import ConfigError
from dlopt.models.options import check_choice, check_float, check_int, check_seed, shown
from dlopt.models.spec import INTEGER_METHODS, Exporter, QuantFormat, QuantMethod

# The one enum for the quantization method (spec, config and CLI): `Method` is the same object under its old name.
Method = QuantMethod


class QBackend(StrEnum):
    ONNXRUNTIME = "onnxruntime"  # an int8 .onnx file the bench and verify stages pick up
    TORCH = "torch"  # torchao: PT2E + X86InductorQuantizer (static), quantize_ (dynamic); saved as .pt2
    OPENVINO = "openvino"  # NNCF static int8 of the fp32 ONNX file, or it marked bf16; saved as IR (.xml + .bin)


class CalibrationMethod(StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclass(frozen=True)
class QuantizeConfig:
    method: QuantMethod = QuantMethod.AUTO
    backend: QBackend = QBackend.ONNXRUNTIME  # auto may also try torch paths when backend is not forced
    calibration_samples: int = 256  # training samples fed through the model to fix activation ranges
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = True  # one weight scale per output channel (conv/linear)
    quant_format: QuantFormat = QuantFormat.QDQ
    max_drop: float = 1.0  # accuracy budget: points for fraction metrics (accuracy), else % relative change
    min_agreement: float = 0.95  # verification: top-1 agreement with fp32 on the held-out split (classifiers)
    max_rel_error: float = 0.1  # verification: relative L2 error of outputs (regression, generation, ...)
    max_fallback_layers: int = 8  # at most this many layers kept in float by the accuracy-aware search
    search_budget_s: float = 300.0  # wall-clock cap on the sensitivity search
    # backends auto measures together (OpenVINO when openvino and nncf import; "torch" if asked)
    auto_backends: tuple[QBackend, ...] = (QBackend.ONNXRUNTIME, QBackend.OPENVINO)
    timing_budget_s: float = 2.0  # interleaved batch-1 timing per auto comparison
    exporter: Exporter = Exporter.DYNAMO  # ONNX exporter tried first; the other is the fallback
    seed: int = 0
    name: str = "int8"  # the manifest stage name and the run sub-directory of the artifact

    def __post_init__(self) -> None:
        for key, enum in (("method", QuantMethod), ("backend", QBackend), ("calibration_method", CalibrationMethod),
                          ("quant_format", QuantFormat), ("exporter", Exporter)):
            value = getattr(self, key)
            if str(value) not in enum._value2member_map_:
                choices = ", ".join(e.value for e in enum)
                raise ConfigError(f"unknown --{key.replace('_', '-')} {shown(value)}; choose one of {choices} "
                                  f"(quantize.{key})")
            object.__setattr__(self, key, enum(str(value)))
        if isinstance(self.auto_backends, str) or not isinstance(self.auto_backends, (tuple, list)):
            raise ConfigError(f"quantize.auto_backends = {shown(self.auto_backends)} has the wrong type: "
                              f"expected a list from {', '.join(b.value for b in QBackend)}")
        for b in self.auto_backends:
            check_choice("quantize", "auto_backends", str(b), [b.value for b in QBackend], flag="--backend")
        object.__setattr__(self, "auto_backends", tuple(QBackend(str(b)) for b in self.auto_backends))
        self.validate()

    def validate(self) -> None:
        """The one rule set for `dlopt quantize` options and the [quantize] table of pipeline.toml."""
        check_int("quantize", "calibration_samples", self.calibration_samples, 1, 10_000_000)
        check_float("quantize", "max_drop", self.max_drop, 0.0, rule="--max-drop must be >= 0 (points), and finite")
        check_float("quantize", "min_agreement", self.min_agreement, 0.0, 1.0)
        check_float("quantize", "max_rel_error", self.max_rel_error, 0.0, low_open=True)
        check_int("quantize", "max_fallback_layers", self.max_fallback_layers, 0, 100_000)
        check_float("quantize", "search_budget_s", self.search_budget_s, 0.0, 86_400.0, low_open=True)
        check_float("quantize", "timing_budget_s", self.timing_budget_s, 0.0, 86_400.0, low_open=True)
        check_seed("quantize", self.seed)
        check_stage_name("quantize", self.name, others=("pruned",))  # prune's default variant
        if not isinstance(self.per_channel, bool):
            raise ConfigError(f"quantize.per_channel = {shown(self.per_channel)} has the wrong type: "
                              "expected true or false")

    @property
    def is_int8(self) -> bool:
        return self.method in INTEGER_METHODS

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: (list(map(str, v)) if isinstance(v, tuple) else (str(v) if isinstance(v, StrEnum) else v))
                for k, v in out.items()}
