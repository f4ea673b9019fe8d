"""OpenVINO path: NNCF post-training static int8 of the fp32 ONNX file (its defaults: symmetric activations,
per-channel weights), written as an IR (.xml + .bin); layers in `keep_float` go to NNCF's ignored scope. bf16: the
fp32 IR marked to compile in bf16 (dlopt.runtime.openvino.mark_ir), on CPUs with bf16 instructions only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlopt.core.errors import UnsupportedError
from dlopt.quantize.config import Method
from dlopt.quantize.recipe import Built, Recipe

QUANTIZABLE = ("Convolution", "GroupConvolution", "MatMul")  # the ops NNCF puts int8 quantizers in front of


def _int8_weights(op: Any, depth: int = 4) -> bool:
    """NNCF stores a quantized layer's weights as an int8 Constant, dequantized by Convert/Subtract/Multiply
    in front of the layer; a float layer's weights are float Constants."""
    frontier = [op.input(1).get_source_output().get_node()] if op.get_input_size() > 1 else []
    for _ in range(depth):
        if any(n.get_type_name() == "Constant" and n.get_element_type().get_type_name() in ("i8", "u8")
               for n in frontier):
            return True
        frontier = [i.get_source_output().get_node() for n in frontier for i in n.inputs()]
    return False


def _quantized(model: Any) -> tuple[list[str], list[str]]:
    """(layers with int8 weights, quantizable layers that stayed float)."""
    layers = [op for op in model.get_ops() if op.get_type_name() in QUANTIZABLE]
    q = [op.get_friendly_name() for op in layers if _int8_weights(op)]
    return q, [op.get_friendly_name() for op in layers if op.get_friendly_name() not in q]


def bf16(recipe: Recipe, fp32: Any, out: Path) -> Built:
    """The fp32 IR, marked: OpenVINO computes it in bf16 (weights stay fp32 in the file)."""
    from dlopt.quantize.torch_quant import bf16_supported
    from dlopt.runtime.openvino import mark_ir, require_openvino, torch_runner

    if not bf16_supported():
        raise UnsupportedError("this CPU has no bf16 instructions (avx512_bf16 / amx_bf16): OpenVINO would compute "
                               "bf16 no faster than fp32; use --method static")
    mark_ir(fp32.raw(), out, "bf16")
    model = require_openvino().Core().read_model(str(out))
    layers = tuple(op.get_friendly_name() for op in model.get_ops() if op.get_type_name() in QUANTIZABLE)
    return Built(recipe, out, torch_runner(out, threads=1), layers, ())  # every layer computes in bf16


def build(recipe: Recipe, fp32: Any, batches: Any, out: Path) -> Built:
    from dlopt.runtime.openvino import nncf_quantize, read_model, save_ir, torch_runner

    if recipe.method == Method.BF16:
        return bf16(recipe, fp32, out)
    if recipe.method != Method.STATIC:
        raise UnsupportedError(f"the OpenVINO backend builds static int8 (NNCF) or bf16, not {recipe.method}; "
                               "use --method static or bf16, or --backend onnxruntime")
    model = read_model(fp32.raw())
    batches = list(batches)
    from dlopt.quantize.quiet import third_party_output

    with third_party_output():  # NNCF's progress bars and log lines: stderr with -v, else nowhere
        quantized = nncf_quantize(model, batches, subset_size=len(batches), ignored=tuple(recipe.keep_float))
    save_ir(quantized, out, {"quantization": json.dumps(recipe.to_json())})  # verify judges it as int8
    q, kept = _quantized(quantized)
    return Built(recipe, out, torch_runner(out, threads=1), tuple(q), tuple(kept))


def fp32_reference(s: Any, built: Built) -> dict[str, Any]:
    """The fp32 file timed on an OpenVINO int8 file's own runtime (what int8 must beat there); {} otherwise
    (ONNX Runtime's fp32 reference is timed for every ORT candidate already)."""
    from dlopt.quantize.config import QBackend

    if built.recipe.backend != QBackend.OPENVINO or s.fp32 is None:
        return {}
    from dlopt.runtime.openvino import torch_runner

    run, example = torch_runner(s.fp32.raw(), threads=1), s.example()
    return {"openvino fp32": lambda: run(*example)}


def _ov_runner(compiled: Any) -> Any:
    """A compiled model NNCF hands to validation -> callable(*tensors) -> tuple of torch tensors (judge's contract)."""
    import torch

    from dlopt.runtime.openvino import make_runner

    run = make_runner(compiled)
    return lambda *inputs: tuple(torch.from_numpy(o) for o in run(*inputs))


def controlled_applies(judge: Any, recipe: Recipe) -> str | None:
    """Why NNCF's accuracy-controlled quantization cannot serve this candidate, or None when it can: an OpenVINO
    static recipe, judged by a task metric on a validation split whose drop NNCF can express (absolute points of
    a fraction metric, or relative % of a higher-is-better one)."""
    from dlopt.quantize.config import QBackend

    if recipe.backend != QBackend.OPENVINO or recipe.method != Method.STATIC:
        return "not an OpenVINO static int8 candidate"
    if not judge.uses_metric:
        return "no task metric on a validation split"
    if not judge.fraction and not judge.evaluator.higher_is_better:
        return f"{judge.spec.metric} is lower-is-better and not a fraction: NNCF's drop types cannot express it"
    return None


def accuracy_controlled(recipe: Recipe, fp32: Any, batches: Any, judge: Any, max_drop: float, max_layers: int,
                        out: Path, progress: Any) -> Built:
    """nncf.quantize_with_accuracy_control for a `max_drop`-point budget: NNCF quantizes, measures the task metric
    on the validation split (through `judge`, the same loop as the rest of dlopt) and reverts the most sensitive
    layers to float, at most `max_layers`, until the drop is within budget. The returned recipe's keep_float names
    the layers NNCF reverted (the layers the first recipe already kept stay in its ignored scope)."""
    from dlopt.runtime.openvino import as_arrays, read_model, save_ir

    try:
        import nncf
    except ImportError:
        from dlopt.core.errors import MissingDependencyError
        from dlopt.runtime.openvino import NNCF_HINT

        raise MissingDependencyError(f"nncf is not installed: {NNCF_HINT}") from None
    calib = [as_arrays(b) for b in batches]
    probe = [as_arrays(b) for b in judge.probe]  # the validation split's inputs: NNCF ranks layers on these
    sign = 1.0 if judge.evaluator.higher_is_better else -1.0

    def validate(compiled: Any, _items: Any) -> float:  # the whole split, the same metric as every other drop
        progress("NNCF accuracy control: validating")
        value = judge.metric(_ov_runner(compiled), "val")
        if value is None:
            raise UnsupportedError(f"NNCF accuracy control: the task metric could not run the model "
                                   f"({judge.metric_broken})")
        return sign * float(value)

    def item(arrays: list[Any]) -> Any:
        return arrays if len(arrays) > 1 else arrays[0]

    fraction = judge.fraction
    params = nncf.AdvancedAccuracyRestorerParameters(max_num_iterations=max(1, max_layers))
    scope = {"ignored_scope": nncf.IgnoredScope(names=list(recipe.keep_float))} if recipe.keep_float else {}
    from dlopt.quantize.quiet import third_party_output

    with third_party_output():
        model = nncf.quantize_with_accuracy_control(
            read_model(fp32.raw()), nncf.Dataset(calib, item), nncf.Dataset(probe, item), validate,
            max_drop=max_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE if fraction else nncf.DropType.RELATIVE,
            subset_size=len(calib), advanced_accuracy_restorer_parameters=params, **scope)
    save_ir(model, out, {"quantization": json.dumps(recipe.to_json())})
    q, kept = _quantized(model)
    reverted = tuple(k for k in kept if k not in recipe.keep_float)
    from dlopt.runtime.openvino import torch_runner

    return Built(recipe.keeping((*recipe.keep_float, *reverted)), out, torch_runner(out, threads=1), tuple(q),
                 tuple(kept), notes=[f"NNCF accuracy control (quantize_with_accuracy_control, {max_drop:g}-point "
                                     f"budget) reverted {len(reverted)} layer(s) to float"])


def nncf_search(s: Any, built: Built, before_val: float | None, progress: Any) -> tuple[Built, Any] | None:
    """The 1-point budget for an OpenVINO candidate: when plain NNCF int8 breaks it and the run has a validation
    split and a task metric, NNCF's accuracy-controlled quantization instead of dlopt's own layer search. None when
    it does not apply (dlopt's search runs instead); a Search record for the report otherwise."""
    import time

    from dlopt.models.spec import ExportFormat
    from dlopt.quantize.accuracy import Search, margin_for
    from dlopt.runtime.formats import file_name

    if controlled_applies(s.judge, built.recipe) is not None or s.cfg.max_fallback_layers == 0 or \
            s.judge.cannot_exceed(s.cfg.max_drop):
        return None
    t0 = time.monotonic()
    search = Search(initial_drop=s.judge.loss(built.runner, "val", before_val))
    margin = margin_for(s.judge, s.cfg.max_drop)  # NNCF aims at the budget less the sampling margin, as dlopt does
    if margin.holds(search.initial_drop) or not built.quantized_layers:
        return None  # nothing to restore: dlopt's search records "within budget" as for any candidate
    search.margin = margin.to_json()
    progress(f"drop {search.initial_drop:.2f} > {margin.select:.3g}: NNCF accuracy-controlled quantization")
    n = next(s._count)
    got = accuracy_controlled(built.recipe, s.fp32, s.calib.batches, s.judge, margin.select,
                              s.cfg.max_fallback_layers, s.work / f"ac{n}" / file_name(ExportFormat.OPENVINO), progress)
    drop = s.judge.loss(got.runner, "val", before_val)  # dlopt's own runner (fp32 hint), not NNCF's compile
    search.attempts.append({"keep_float": list(got.recipe.keep_float), "drop": drop, "by": "nncf"})
    best = got if drop <= search.initial_drop else built
    search.final_drop = min(drop, search.initial_drop)
    search.within_budget = margin.holds(search.final_drop)
    search.stopped = (f"NNCF accuracy control (quantize_with_accuracy_control) reverted "
                      f"{len(got.recipe.keep_float) - len(built.recipe.keep_float)} layer(s) to float: drop "
                      f"{search.initial_drop:g} -> {drop:g} points (aiming at {margin.select:.3g}: the "
                      f"{s.cfg.max_drop:g}-point budget less {margin.points:.3g} points of sampling margin)" +
                      ("" if search.within_budget else ", still over budget"))
    search.seconds = round(time.monotonic() - t0, 2)
    return best, search


# The backend table's entry points (dlopt.quantize.recipe.BACKENDS): the same names in every <backend>_quant module.
METHODS = (Method.STATIC, Method.BF16)  # NNCF's post-training static int8; the fp32 IR computed in bf16
AUTO_METHODS = (Method.STATIC,)
CALIBRATED_METHODS = (Method.STATIC,)
search = nncf_search  # over the accuracy budget: NNCF's accuracy control instead of dlopt's layer search


def build_for(s: Any, recipe: Recipe, batches: Any, dst: Path) -> Built:
    return build(recipe, s.fp32, batches, dst)
