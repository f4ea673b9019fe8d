"""ONNX Runtime paths: static int8 (QDQ / QOperator, calibrated), dynamic int8, fp16; all from one fp32 export."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dlopt.core.errors import UnsupportedError
from dlopt.quantize.config import CalibrationMethod, Method, QuantFormat
from dlopt.quantize.recipe import Built, Recipe

STATIC_OPS = ("Conv", "MatMul", "Gemm")  # what ORT's QDQ / QOperator static quantizer converts here
DYNAMIC_OPS = ("MatMul", "Gemm", "LSTM", "Attention")  # ORT has no dynamic GRU op; Conv dynamic is ~9x slower
INT8_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
            "ConvInteger", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "QGemm", "QAttention",
            "MatMulIntegerToFloat"}
LAYER_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Attention")  # float compute layers
INT8_LAYER_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QGemm",
                  "QAttention", "DynamicQuantizeLSTM", "MatMulIntegerToFloat")  # one per quantized layer


def session(path: Path, threads: int | None = 1) -> Any:
    from dlopt.runtime.formats import ort_session

    return ort_session(path, threads=threads)


def runner_for(path: Path, threads: int | None = 1) -> Any:
    """callable(*tensors) -> tuple of tensors, as dlopt.export.load_artifact gives, with a fixed thread count."""
    import numpy as np
    import onnxruntime as ort
    import torch

    sess = session(path, threads)
    names = [i.name for i in sess.get_inputs()]
    # a scoring batch (64 rows at 224x224) grows the session's memory arena by about 1 GB, and the repair keeps
    # several candidates' sessions alive: their arenas went past 8 GB (efficientnet_b0, densenet121, convnext_tiny).
    # Shrinking the arena after each multi-row call hands that back (batch 1, what is timed, keeps its arena)
    shrink = ort.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(*inputs: Any) -> tuple[Any, ...]:
        feed = {n: np.ascontiguousarray(t.detach().cpu().numpy()) for n, t in zip(names, inputs, strict=False)}
        rows = int(inputs[0].shape[0]) if inputs and getattr(inputs[0], "ndim", 0) else 1
        return tuple(torch.from_numpy(np.asarray(o)) for o in sess.run(None, feed, shrink if rows > 1 else None))

    return run


class Fp32Onnx:
    """The fp32 ONNX file of the model (exported once per exporter), pre-processed for quantization."""

    def __init__(self, module: Any, spec: Any, cfg: Any, work: Path, notes: list[str],
                 exporter: str = "dynamo", exported: Path | None = None) -> None:
        self.module, self.spec, self.cfg, self.work, self.notes = module, spec, cfg, work, notes
        self.exporter = exporter
        self._paths: dict[str, Path] = {}
        if exported is not None:  # the run's own verified export of this very checkpoint (session.verified_export)
            self._paths[exporter] = exported

    def raw(self, exporter: str | None = None) -> Path:
        return self._export(exporter)[0]

    def prepared(self, exporter: str | None = None) -> Path:
        return self._export(exporter)[1]

    def _export(self, exporter: str | None) -> tuple[Path, Path]:
        exporter = exporter or self.exporter
        if exporter + "-pre" in self._paths:
            return self._paths[exporter], self._paths[exporter + "-pre"]
        if exporter not in self._paths:
            from dlopt.export.onnx import export_onnx
            from dlopt.models.registry import make_inputs
            from dlopt.runtime.quiet import quiet_deprecations

            raw = self.work / f"fp32-{exporter}.onnx"
            with quiet_deprecations():
                example = make_inputs(self.spec, self.cfg, 2)
                export_onnx(self.module, example, self.spec, self.cfg, raw, exporter=exporter)
            self._paths[exporter] = raw
        self._paths[exporter + "-pre"] = _preprocess(self._paths[exporter], self.work, self.notes)
        return self._paths[exporter], self._paths[exporter + "-pre"]


def _preprocess(raw: Path, work: Path, notes: list[str]) -> Path:
    """ORT's quant_pre_process (symbolic shape inference + graph optimisation) into `work`; the raw file if it
    cannot."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = (work / f"{raw.stem}-{len(list(work.glob('*-pre.onnx')))}-pre.onnx").resolve()
    src = raw.resolve()  # a relative path (`dlopt quantize model.onnx`) means the directory dlopt runs in, not `work`
    try:
        # onnx leaves <uuid>.data files in the working directory when shape inference fails
        with contextlib.chdir(work), _quiet_root_logger():
            quant_pre_process(str(src), str(pre))
        return pre
    except Exception as exc:  # symbolic shape inference gives up on some graphs (attention masks): keep raw
        notes.append(f"ORT quant_pre_process skipped: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}")
        return raw


def quantizable(path: Path, method: Method) -> list[str]:
    """Names of the nodes the recipe's quantizer would convert, in graph order."""
    import onnx

    ops = STATIC_OPS if method == Method.STATIC else DYNAMIC_OPS
    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ops and n.name]


def int8_op_count(path: Path) -> int:
    import onnx

    return sum(n.op_type in INT8_OPS for n in onnx.load(str(path)).graph.node)


def _source_name(name: str) -> str:
    """The fp32 node an integer node replaced: ORT names it <node>_quant, a Gemm's <node>_MatMul_quant."""
    for suffix in ("_quant", "_MatMul"):
        name = name.removesuffix(suffix)
    return name


def census(path: Path) -> tuple[list[str], list[str]]:
    """(int8 layers, float layers) counted in a quantized graph: an integer operator (QLinearConv, MatMulInteger...)
    or a float layer whose weight comes out of a DequantizeLinear (QDQ) is int8; any other Conv, MatMul, Gemm,
    LSTM... computes in float. Names are the fp32 graph's node names."""
    import onnx

    nodes = list(onnx.load(str(path), load_external_data=False).graph.node)
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    int8, floats = [], []
    for n in nodes:
        if n.op_type in INT8_LAYER_OPS:
            int8.append(_source_name(n.name))
        elif n.op_type in LAYER_OPS:
            weight = n.input[1] if len(n.input) > 1 else ""
            (int8 if weight in dequantized else floats).append(_source_name(n.name))
    return int8, floats


CALIB_STRIDE = 1  # batches (of calibrate.CALIB_BATCH samples) per min/max reduction in ORT's MinMax calibrator
CALIB_RUN = 8  # samples per ORT run in MinMax calibration: ORT's activation memory grows with the run's batch


def _reader(inputs: Sequence[tuple[Any, ...]], names: list[str], run: int | None = None) -> Any:
    """ORT's CalibrationDataReader over lazy batches, each fed in runs of `run` samples (whole when None);
    `set_range` lets ORT's strided MinMax calibration read the batches a stride at a time and reduce each
    stride to min/max before the next (CalibStridedMinMax)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(inputs))

        def __len__(self) -> int:
            return len(inputs)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches: Iterator[dict[str, Any]] = (  # lazily: one batch at a time (224 x 224 inputs)
                {n: t[s:s + (run or len(t))].numpy() for n, t in zip(names, batch, strict=True)}
                for batch in (inputs[k] for k in range(start_index, end_index))
                for s in range(0, len(batch[0]), run or len(batch[0])))

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    return Reader()


def _calib_options(calibration: CalibrationMethod, batches: int, stride: int = CALIB_STRIDE) -> dict[str, Any]:
    """MinMax: reduce every `stride` batches (exact: the min of mins) instead of holding every batch's outputs
    to the end; histogram methods keep ORT's one-pass collection (re-binning per stride would change them)."""
    if calibration != CalibrationMethod.MINMAX or batches <= stride or batches % stride:
        return {}
    return {"CalibStridedMinMax": stride}


def _excluded(recipe: Recipe) -> list[str]:
    """ORT's quantizer rewrites Gemm as MatMul + Add before it applies the exclusions: name both."""
    return [*recipe.keep_float, *(f"{n}_MatMul" for n in recipe.keep_float)]


def _static(src: Path, dst: Path, recipe: Recipe, calib: list[tuple[Any, ...]], names: list[str],
            calibration: CalibrationMethod) -> None:
    from onnxruntime.quantization import CalibrationMethod as CM
    from onnxruntime.quantization import QuantFormat as QF
    from onnxruntime.quantization import QuantType, quantize_static

    method = {CalibrationMethod.MINMAX: CM.MinMax, CalibrationMethod.ENTROPY: CM.Entropy,
              CalibrationMethod.PERCENTILE: CM.Percentile}[calibration]
    fmt = QF.QDQ if recipe.quant_format == QuantFormat.QDQ else QF.QOperator
    reader, extra, cache = _reader(calib, names, CALIB_RUN), _calib_options(calibration, len(calib)), None
    if calibration != CalibrationMethod.MINMAX:  # histograms: two bounded passes (dlopt.quantize.histogram_calib)
        from dlopt.quantize import histogram_calib as hc

        run = hc.run_size(src, STATIC_OPS, max(hc.batch_sizes(calib)))
        reader, cache = None, dst.with_name(dst.stem + "-calibration.json")
        hc.calibrate(src, hc.unit_reader(calib, names, run), method, STATIC_OPS, cache)
    quantize_static(str(src), str(dst), reader, quant_format=fmt, per_channel=recipe.per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                    op_types_to_quantize=list(STATIC_OPS), nodes_to_exclude=_excluded(recipe),
                    calibration_providers=["CPUExecutionProvider"], extra_options=extra,
                    **({"calibration_cache_path": str(cache)} if cache else {}))
    if cache:
        cache.unlink(missing_ok=True)


def _dynamic(src: Path, dst: Path, recipe: Recipe) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(DYNAMIC_OPS), per_channel=recipe.per_channel,
                     weight_type=QuantType.QInt8, nodes_to_exclude=_excluded(recipe))


def _fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def stamp(src: Path, dst: Path, recipe: Recipe, extra: dict[str, Any] | None = None) -> None:
    """Carry dlopt's metadata from the fp32 export over and say how the file was quantized."""
    import onnx

    model = onnx.load(str(dst))
    keys = {p.key for p in model.metadata_props}
    for p in onnx.load(str(src), load_external_data=False).metadata_props:
        if p.key not in keys:
            model.metadata_props.add(key=p.key, value=p.value)
    for key, value in {"quantization": json.dumps({**recipe.to_json(), **(extra or {})})}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dst))


def _quiet_root_logger() -> Any:
    """ORT's quantizer logs advice on the root logger ("consider pre-processing"); the report carries what
    matters (whether pre-processing ran), so keep those lines off the user's terminal."""
    import logging

    from dlopt.core.warn import logger_level

    return logger_level(None, logging.ERROR)


def _quantize(recipe: Recipe, src: Path, dst: Path, calib: list[tuple[Any, ...]], names: list[str],
              calibration: CalibrationMethod) -> None:
    if recipe.method == Method.STATIC:
        _static(src, dst, recipe, calib, names, calibration)
    elif recipe.method == Method.DYNAMIC:
        _dynamic(src, dst, recipe)
    else:
        _fp16(src, dst)


def build(recipe: Recipe, fp32: Fp32Onnx, calib: list[tuple[Any, ...]], calibration: CalibrationMethod,
          dst: Path, exporter: str = "dynamo") -> Built:
    """Quantize the fp32 export into `dst`; a dynamo graph ORT cannot quantize is retried from the legacy export."""
    if recipe.method == Method.BF16:
        raise UnsupportedError("ONNX Runtime's CPU provider has almost no bfloat16 kernels; use --backend torch "
                               "for bf16 on a CPU with bf16 instructions")
    notes: list[str] = []
    order = (exporter, "legacy" if exporter == "dynamo" else "dynamo")
    for used in order:
        src = fp32.raw(used) if recipe.method == Method.FP16 else fp32.prepared(used)
        try:
            from dlopt.quantize.quiet import third_party_output  # calibration's prints: never on stdout

            with contextlib.chdir(dst.parent), _quiet_root_logger(), third_party_output():  # stray files: scratch
                _quantize(recipe, src, dst, calib, list(fp32.spec.input_names), calibration)
            break
        except Exception as exc:  # ORT's quantizer raises onnx/shape-inference errors of many types
            if used == order[1]:
                raise
            notes.append(f"{recipe.label}: the {used} export could not be quantized ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:100]}); used the {order[1]} exporter's graph")
    stamp(fp32.raw(used), dst, recipe)
    if recipe.method == Method.FP16:
        layers = [n.name for n in _nodes(src) if n.op_type in LAYER_OPS]
        return Built(recipe, dst, runner_for(dst), tuple(n for n in layers if n not in recipe.keep_float),
                     tuple(recipe.keep_float), notes)
    int8, floats = census(dst)  # what the file holds, not what the quantizer was asked for
    return Built(recipe, dst, runner_for(dst), tuple(int8), tuple(floats), notes)


def _nodes(path: Path) -> list[Any]:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


# The backend table's entry points (dlopt.quantize.recipe.BACKENDS): the same names in every <backend>_quant module.
METHODS = (Method.STATIC, Method.DYNAMIC, Method.FP16)  # what this backend builds
AUTO_METHODS = (Method.STATIC, Method.DYNAMIC)  # what `auto` tries here
CALIBRATED_METHODS = (Method.STATIC,)  # methods that need calibration data


def build_for(s: Any, recipe: Recipe, batches: Any, dst: Path) -> Built:
    return build(recipe, s.fp32, batches, s.cfg.calibration_method, dst, s.cfg.exporter)


def has_int8(built: Built) -> bool:
    return int8_op_count(built.path) > 0  # counted in the written graph


def references(s: Any) -> dict[str, Any]:
    """The fp32 ONNX file under ONNX Runtime: what an int8 candidate must beat here."""
    if s.fp32 is None:
        return {}
    fp32_run, example = runner_for(s.fp32.raw()), s.example()
    return {"onnxruntime fp32": lambda: fp32_run(*example)}
