"""Per-layer sensitivity: what quantizing each layer *alone* costs, every other layer kept in float.

The cost is measured against the fp32 model on held-out inputs (the validation split, or random valid inputs
where the model has no data), so it needs no labels: points of top-1 disagreement for classifier-shaped outputs,
and the output's relative error (which also breaks ties and ranks non-classifiers). The layers whose int8 alone
costs the most are the ones to keep in higher precision (dlopt.quantize.mixed).

When the time budget cannot score every layer, the scoring order decides which get scored: `scoring_order` puts
first the layers where the all-int8 file's error grows most (one pass of both files with every layer's input and
output tapped: the output's relative error against fp32 less the input's), so a partial ranking holds the layers
most likely to break the model (a random-weight efficientnet_b0 at 224 lost 46 points with 81 of its 82 layers in
float: the one left in int8, unscored, was the one that broke it).

This is the opposite question to dlopt.quantize.accuracy's exclude-one ranking (quantize everything but one
layer): that one finds the layer whose removal helps most once the others are int8; this one finds the layers
that hurt on their own, which is what a minimal float set is made of when several layers each hurt a little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dlopt.quantize.recipe import Built, Recipe

RANK_SAMPLES = 64  # held-out samples each layer is scored on (x layers builds: the ranking's cost)


@dataclass(frozen=True)
class LayerCost:
    layer: str
    disagreement: float | None  # points of top-1 disagreement with fp32 (None: outputs are not class scores)
    rel_error: float  # relative error of the outputs against fp32

    @property
    def key(self) -> tuple[float, float]:
        return (self.disagreement or 0.0, self.rel_error)

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "disagreement_points": self.disagreement, "rel_error": round(self.rel_error, 6)}


def held_out(inputs: Sequence[tuple[Any, ...]], samples: int = RANK_SAMPLES) -> list[tuple[Any, ...]]:
    """The first `samples` held-out inputs, in whole batches (at least one)."""
    out, n = [], 0
    for batch in inputs:
        out.append(batch)
        n += int(batch[0].shape[0])
        if n >= samples:
            break
    return out


def cost(judge: Any, runner: Callable[..., Any], inputs: Sequence[tuple[Any, ...]]) -> tuple[float | None, float]:
    """(disagreement points, relative error) of a runner against fp32 on `inputs`."""
    p = judge.parity(runner, inputs)
    agree = p["top1_agreement"]
    return (None if agree is None else round(100.0 * (1.0 - agree), 4)), float(p["relative_error"])


def rank_alone(build: Callable[[Recipe], Built], recipe: Recipe, layers: Sequence[str], judge: Any,
               inputs: Sequence[tuple[Any, ...]], deadline: float,
               progress: Callable[[str], None]) -> tuple[list[LayerCost], int]:
    """Each layer quantized alone (the others in `recipe.keep_float` too), most costly first; and how many layers
    the deadline left unscored (scored in the order of `layers`: the caller's `scoring_order`)."""
    rows: list[LayerCost] = []
    for i, layer in enumerate(layers):
        if time.monotonic() > deadline:
            return sorted(rows, key=lambda r: r.key, reverse=True), len(layers) - i
        progress(f"sensitivity {i + 1}/{len(layers)}: {layer} alone in int8")
        others = tuple(x for x in layers if x != layer)
        built = build(recipe.keeping((*recipe.keep_float, *others)))
        disagreement, rel = cost(judge, built.runner, inputs)
        rows.append(LayerCost(layer, disagreement, rel))
    return sorted(rows, key=lambda r: r.key, reverse=True), 0


QDQ_SUFFIX = "_QuantizeLinear_Input"  # ORT's QDQ quantizer renames a graph output a layer writes to this
ORDER_SAMPLES = 16  # held-out samples the scoring order is measured on
TAP_CHUNK = 2  # samples per tapped run: every layer's input and output are held at once (efficientnet_b0 at 224
# with 64-sample batches took the quantize process past 8 GB)


def _sites(int8: Any, layers: Sequence[str], fp32_names: set[str]) -> dict[str, tuple[str, str, str]]:
    """layer -> (input tensor, output tensor in the int8 graph, that output's fp32 name), for the layers whose
    tensors both graphs have: the input is the float tensor before the layer's Q/DQ pair (named alike in both)."""
    made = {o: n for n in int8.graph.node for o in n.output}
    by_name = {n.name: n for n in int8.graph.node}

    def source(t: str) -> str:
        for _ in range(2):  # DequantizeLinear(QuantizeLinear(t))
            n = made.get(t)
            if n is None or n.op_type not in ("DequantizeLinear", "QuantizeLinear"):
                break
            t = n.input[0]
        return t

    out: dict[str, tuple[str, str, str]] = {}
    for layer in layers:
        n = by_name.get(layer)
        if n is None or not n.input or not n.output:
            continue
        i, o = source(n.input[0]), n.output[0]
        o_ref = o[:-len(QDQ_SUFFIX)] if o.endswith(QDQ_SUFFIX) else o
        if i in fp32_names and o_ref in fp32_names:
            out[layer] = (i, o, o_ref)
    return out


def _chunks(inputs: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The first ORDER_SAMPLES samples of `inputs`, TAP_CHUNK at a time."""
    out, n = [], 0
    for batch in inputs:
        size = int(batch[0].shape[0])
        for start in range(0, size, TAP_CHUNK):
            if n >= ORDER_SAMPLES:
                return out
            out.append(tuple(t[start:start + TAP_CHUNK] for t in batch))
            n += min(TAP_CHUNK, size - start)
    return out


def scoring_order(fp32: Any, int8: Any, layers: Sequence[str], inputs: Sequence[tuple[Any, ...]]) -> list[str]:
    """`layers` with those whose all-int8 output error grows most over their input's first (relative error against
    fp32 on `inputs`, the output's less the input's); layers whose tensors cannot be tapped follow in graph order."""
    import onnx

    from dlopt.verify.layers import onnx_tap

    ref_proto = onnx.load(str(fp32), load_external_data=False)
    graph_inputs = {i.name for i in ref_proto.graph.input}
    fp32_names = {o for n in ref_proto.graph.node for o in n.output} | graph_inputs
    sites = _sites(onnx.load(str(int8), load_external_data=False), layers, fp32_names)
    if not sites or not inputs:
        return list(layers)
    tapped = [(t8, tf) for i, o8, o_ref in sites.values() for t8, tf in ((i, i), (o8, o_ref))
              if tf not in graph_inputs]
    ref_run = onnx_tap(fp32, sorted({tf for _, tf in tapped}))
    got_run = onnx_tap(int8, sorted({t8 for t8, _ in tapped}))
    diff: dict[str, float] = {}
    norm: dict[str, float] = {}
    for batch in _chunks(inputs):
        _, ref = ref_run(*batch)
        _, got = got_run(*batch)
        for t8, tf in tapped:
            a, b = ref[tf].double(), got[t8].double()
            if a.shape != b.shape:
                continue
            diff[tf] = diff.get(tf, 0.0) + float(((a - b) ** 2).sum())
            norm[tf] = norm.get(tf, 0.0) + float((a ** 2).sum())

    def rel(t: str) -> float:
        return 0.0 if t in graph_inputs or not norm.get(t) else (diff[t] / norm[t]) ** 0.5

    growth = {layer: rel(o_ref) - rel(i) for layer, (i, _, o_ref) in sites.items()
              if o_ref in norm and (i in graph_inputs or i in norm)}
    ranked = sorted(growth, key=lambda x: growth[x], reverse=True)
    return ranked + [x for x in layers if x not in growth]
