"""Per-layer sensitivity: what quantizing each layer *alone* costs, every other layer kept in float.

The cost is measured against the fp32 model on held-out inputs (the validation split, or random valid inputs
where the model has no data), so it needs no labels: points of top-1 disagreement for classifier-shaped outputs,
and the output's relative error (which also breaks ties and ranks non-classifiers). The layers whose int8 alone
costs the most are the ones to keep in higher precision (dlopt.quantize.mixed).

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
    the deadline left unscored (ranked last, in graph order)."""
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
