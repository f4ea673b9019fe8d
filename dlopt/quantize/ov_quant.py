"""OpenVINO path: NNCF post-training static int8 of the fp32 ONNX file (its defaults: symmetric activations,
per-channel weights), written as an IR (.xml + .bin). Layers in `keep_float` go to NNCF's ignored scope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.errors import UnsupportedError
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


def build(recipe: Recipe, fp32: Any, batches: Any, out: Path) -> Built:
    from dlopt.openvino_rt import nncf_quantize, require_openvino, save_ir, torch_runner

    if recipe.method != Method.STATIC:
        raise UnsupportedError(f"the OpenVINO backend (NNCF) quantizes static int8 only, not {recipe.method}; "
                               "use --method static, or --backend onnxruntime")
    ov = require_openvino()
    model = ov.Core().read_model(str(fp32.raw()))
    batches = list(batches)
    quantized = nncf_quantize(model, batches, subset_size=len(batches), ignored=tuple(recipe.keep_float))
    save_ir(quantized, out)
    q, kept = _quantized(quantized)
    return Built(recipe, out, torch_runner(out, threads=1), tuple(q), tuple(kept))
