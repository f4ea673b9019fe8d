"""Quantization: int8 (static, dynamic) and half precision through ONNX Runtime or torchao, chosen by
measurement and held to an accuracy budget (`docs/quantize.md`).

    cfg = QuantizeConfig(method="auto")
    outcome = run_quantize(resolve_target(TargetOptions(name="artifacts/resnet18/<run>"), quantize_check(cfg)), cfg)
"""

from __future__ import annotations

from dlopt.quantize.config import CalibrationMethod, Method, QBackend, QuantFormat, QuantizeConfig
from dlopt.quantize.stage import REPORT, QuantizeOutcome, run_quantize

__all__ = ["REPORT", "CalibrationMethod", "Method", "QBackend", "QuantFormat", "QuantizeConfig", "QuantizeOutcome",
           "run_quantize"]
