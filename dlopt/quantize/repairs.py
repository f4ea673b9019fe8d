"""The known int8 repairs as recipes, and how to build them: a `Variant` is a Recipe with the repair knobs.

* ONNX Runtime static int8 (`quantize_static`): per-channel weights; 16-bit activations (QUInt16 through
  `TensorQuantOverrides`, opset 21 Q/DQ) for the named layers' input and output tensors, in the QDQ format; layers
  in `keep_float` through `nodes_to_exclude`. The activation ranges are calibrated once per session and read back
  from a cache (`calibration_cache_path`), so every variant sees the same ranges and costs no calibration pass.
  ORT's SmoothQuant option needs Intel Neural Compressor (`neural_compressor`); without it the attempt is skipped.
* OpenVINO (NNCF `quantize`): full bias correction (`fast_bias_correction=False`), SmoothQuant for transformer
  MatMuls (`ModelType.TRANSFORMER` with `AdvancedSmoothQuantParameters`), layers in `keep_float` in the ignored scope.

`whole_model` tries the repairs that apply to every layer (per-channel, bias correction, SmoothQuant) in turn.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlopt.quantize.config import CalibrationMethod, Method, QBackend, QuantFormat
from dlopt.quantize.recipe import Built, Recipe

SMOOTH_QUANT_ALPHA = 0.95  # NNCF's default for MatMul in transformer mode
MATMUL_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class Variant(Recipe):
    act16: tuple[str, ...] = ()  # layers whose activations are quantized to 16 bits (ORT QDQ)
    bias_correction: bool = False  # OpenVINO: NNCF's full bias correction instead of the fast one
    smooth_quant: bool = False  # migrate activation outliers into the MatMul weights before quantizing

    @classmethod
    def of(cls, recipe: Recipe) -> Variant:
        return recipe if isinstance(recipe, Variant) else cls(recipe.backend, recipe.method, recipe.quant_format,
                                                               recipe.per_channel, recipe.keep_float)

    @property
    def label(self) -> str:
        extra = ["bias correction"] * self.bias_correction + ["SmoothQuant"] * self.smooth_quant
        extra += [f"16-bit activations x{len(self.act16)}"] if self.act16 else []
        extra += [f"{len(self.keep_float)} layer(s) float"] if self.keep_float else []
        return " + ".join([super().label, *extra])

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "act16": list(self.act16), "bias_correction": self.bias_correction,
                "smooth_quant": self.smooth_quant}


def smooth_quant_missing(backend: QBackend) -> str | None:
    """Why SmoothQuant cannot run on `backend` here, or None."""
    if backend == QBackend.ONNXRUNTIME and importlib.util.find_spec("neural_compressor") is None:
        return "ONNX Runtime's SmoothQuant needs Intel Neural Compressor (pip install neural-compressor)"
    if backend not in (QBackend.ONNXRUNTIME, QBackend.OPENVINO):
        return f"no SmoothQuant on the {backend} backend here"
    return None


def _overrides(src: Path, layers: tuple[str, ...]) -> dict[str, Any]:
    """QUInt16 for the activation tensors around the named layers (their data input and their output)."""
    import onnx
    from onnxruntime.quantization import QuantType

    wanted = set(layers) | {f"{n}_MatMul" for n in layers}
    tensors = {t for n in onnx.load(str(src), load_external_data=False).graph.node if n.name in wanted
               for t in (n.input[0], n.output[0])}
    return {t: [{"quant_type": QuantType.QUInt16}] for t in sorted(tensors)}


def _ort_static(s: Any, v: Variant, src: Path, dst: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod as CM
    from onnxruntime.quantization import QuantFormat as QF
    from onnxruntime.quantization import QuantType, quantize_static

    from dlopt.quantize import histogram_calib as hc
    from dlopt.quantize import ort_quant as oq

    method = {CalibrationMethod.MINMAX: CM.MinMax, CalibrationMethod.ENTROPY: CM.Entropy,
              CalibrationMethod.PERCENTILE: CM.Percentile}[s.cfg.calibration_method]
    cache = s.work / f"ranges-{src.stem}-{s.cfg.calibration_method}.json"  # one calibration per session and graph
    names, calib, reader, extra = list(s.spec.input_names), s.calib.batches, None, {}
    if not cache.is_file() and s.cfg.calibration_method == CalibrationMethod.MINMAX:
        reader, extra = oq._reader(calib, names, oq.CALIB_RUN), oq._calib_options(s.cfg.calibration_method, len(calib))
    elif not cache.is_file():
        run = hc.run_size(src, oq.STATIC_OPS, max(hc.batch_sizes(calib)))
        hc.calibrate(src, hc.unit_reader(calib, names, run), method, oq.STATIC_OPS, cache)
    if v.act16:
        extra["TensorQuantOverrides"] = _overrides(src, v.act16)
    if v.smooth_quant:
        extra.update(SmoothQuant=True, SmoothQuantAlpha=0.5)
    fmt = QF.QDQ if v.quant_format == QuantFormat.QDQ else QF.QOperator
    quantize_static(str(src), str(dst), reader, quant_format=fmt, per_channel=v.per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                    op_types_to_quantize=list(oq.STATIC_OPS), nodes_to_exclude=oq._excluded(v),
                    calibration_providers=["CPUExecutionProvider"], extra_options=extra,
                    calibration_cache_path=str(cache))


def _ort(s: Any, v: Variant, dst: Path) -> Built:
    from dlopt.quantize import ort_quant as oq
    from dlopt.quantize.quiet import third_party_output

    order = (str(s.cfg.exporter), "legacy" if str(s.cfg.exporter) == "dynamo" else "dynamo")
    for used in order:  # the graph the plain build used: a dynamo graph ORT cannot quantize falls back to legacy
        src = s.fp32.prepared(used)
        try:
            with contextlib.chdir(dst.parent), oq._quiet_root_logger(), third_party_output():
                _ort_static(s, v, src, dst) if v.method == Method.STATIC else oq._dynamic(src, dst, v)
            break
        except Exception:  # ORT's quantizer raises many types; the other exporter's graph, else the error
            if used == order[1]:
                raise
    oq.stamp(s.fp32.raw(used), dst, v)
    int8, floats = oq.census(dst)
    return Built(v, dst, oq.runner_for(dst), tuple(int8), tuple(floats))


def _openvino(s: Any, v: Variant, out: Path) -> Built:
    import sys

    import nncf

    from dlopt.quantize.ov_quant import _quantized
    from dlopt.runtime.openvino import as_arrays, read_model, save_ir, torch_runner

    samples = [as_arrays(b) for b in s.calib.batches]
    options: dict[str, Any] = {"fast_bias_correction": not v.bias_correction}
    if v.keep_float:
        options["ignored_scope"] = nncf.IgnoredScope(names=list(v.keep_float), validate=False)
    if v.smooth_quant:
        options["model_type"] = nncf.ModelType.TRANSFORMER
        options["advanced_parameters"] = nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA))
    model = read_model(s.fp32.raw())
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(model, nncf.Dataset(samples, lambda a: a if len(a) > 1 else a[0]),
                                  subset_size=len(samples), **options)
    save_ir(quantized, out)
    q, kept = _quantized(quantized)
    return Built(v, out, torch_runner(out, threads=1), tuple(q), tuple(kept))


BUILDERS = {QBackend.ONNXRUNTIME: _ort, QBackend.OPENVINO: _openvino}  # backends the repairs know


def build_variant(s: Any, v: Recipe) -> Built:
    """Build a Variant (or a plain Recipe) in the session's scratch directory, always fully calibrated; a backend
    without repair knobs builds the plain recipe through its own module."""
    from dlopt.quantize.recipe import backend
    from dlopt.runtime.formats import FORMAT_SUFFIX

    v = Variant.of(v)
    if v.backend not in BUILDERS:
        return s.build(Recipe(v.backend, v.method, v.quant_format, v.per_channel, v.keep_float), False)
    dst = s.work / f"v{next(s._count)}" / f"model{FORMAT_SUFFIX[backend(v.backend).writes]}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    return BUILDERS[v.backend](s, v, dst)


def _transformer_like(s: Any, built: Built) -> bool:
    """MatMul/Gemm layers outnumber convolutions among the int8 layers (SmoothQuant's case: transformer MatMuls)."""
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(s.fp32.raw()), load_external_data=False).graph.node}
    kinds = [ops.get(n, "") for n in built.quantized_layers]
    return sum(k in MATMUL_OPS for k in kinds) > max(1, sum(k == "Conv" for k in kinds))


def whole_model(r: Any, base: Variant, plain: Built, base_drop: float | None) -> Variant:
    """Per-channel weights, bias correction, SmoothQuant on the whole model, each kept (for what follows) when it
    loses no more than the variant before it; or skipped, with why. `r` is the repair's run (dlopt.quantize.mixed:
    `attempt` builds and scores a variant, `rec` records)."""
    current, drop = base, base_drop if base_drop is not None else float("inf")

    def consider(v: Variant, what: str) -> None:
        nonlocal current, drop
        got = r.attempt(v, what)
        if got is not None and got <= drop:
            current, drop = v, got

    if base.method == Method.STATIC and not base.per_channel:
        consider(replace(current, per_channel=True), "per-channel weights")
    if base.backend == QBackend.OPENVINO:
        consider(replace(current, bias_correction=True), "bias correction (NNCF, full)")
    else:
        r.rec.attempts.append({"repair": "bias correction", "skipped": "ONNX Runtime's quantizer has no bias "
                               "correction (it is NNCF's, tried where the candidate is OpenVINO)"})
    if r.s.fp32 is None or not _transformer_like(r.s, plain):
        r.rec.attempts.append({"repair": "SmoothQuant", "skipped": "not a transformer: SmoothQuant moves activation "
                               "outliers of MatMul layers into their weights, and here convolutions dominate"})
    elif (missing := smooth_quant_missing(base.backend)) is not None:
        r.rec.attempts.append({"repair": "SmoothQuant", "skipped": missing})
    elif base.method == Method.STATIC:
        consider(replace(current, smooth_quant=True), "SmoothQuant")
    return current
