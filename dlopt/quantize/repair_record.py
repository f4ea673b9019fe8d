"""The record of an int8 repair (dlopt.quantize.mixed), the quantize report's `search.repair`, and its wording:
which layers it kept out of int8 and why, which variants the sampling margin turned down, how much of the ranking
the time budget allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlopt.quantize.recipe import Built
from dlopt.quantize.repairs import Variant


@dataclass
class Repair:
    """What the repair did (the quantize report's `search.repair`)."""

    attempts: list[dict[str, Any]] = field(default_factory=list)  # every variant built, with its drop
    ranking: list[dict[str, Any]] = field(default_factory=list)  # layers by cost alone in int8, most costly first
    unranked: int = 0  # layers the time budget left unscored
    ranked: int = 0  # layers scored (the ranking is partial when `unranked` > 0)
    reserve_s: float = 0.0  # seconds of the budget the ranking left to the fewest-layers search
    order: str = ""  # the order the ranking scored the layers in, and why (sensitivity.scoring_order)
    margin: dict[str, Any] | None = None  # the sampling margin candidates were chosen with (accuracy.Margin)
    kept: list[dict[str, Any]] = field(default_factory=list)  # the chosen variant's layers in higher precision, why
    latency_ms_b1: dict[str, float] = field(default_factory=dict)
    speed: str = ""  # what keeping those layers cost in speed, in words
    chosen: str | None = None
    slow_ops: dict[str, Any] | None = None  # the chosen is not faster than fp32: which operators (slow_ops.explain)
    within_budget: bool = False  # the chosen holds within the budget less the sampling margin
    stopped: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def margin_note(self) -> str:
        """Which variants were within the budget itself but not taken because of the sampling margin, or ''."""
        near = [a["recipe"] for a in self.attempts if a.get("within_budget") and a.get("within_margin") is False]
        if not near or not self.margin:
            return ""
        m = self.margin
        return (f"; {len(near)} variant(s) within the {m['budget']:g}-point budget were not taken, as their drop "
                f"exceeds {m['select']:.3g} (the budget less {m['points']:.3g} points of sampling margin on "
                f"{m['rows']} rows): " + ", ".join(near[:3]) + (", ..." if len(near) > 3 else ""))

    def partial_note(self) -> str:
        """How much of the ranking the time budget allowed, when not all of it, or ''."""
        if not self.unranked:
            return ""
        return (f"; the ranking scored {self.ranked} of {self.ranked + self.unranked} layers in its share of the "
                f"search budget ({self.reserve_s:g} s kept for the search, scored {self.order or 'in graph order'}); "
                "the others were tried in that order")


def modules(s: Any) -> dict[str, str]:
    """ONNX node name -> the model's module it computes (dlopt.verify.layermap), so the report says which layer
    node_Conv_818 is; {} without an fp32 ONNX file."""
    import onnx

    from dlopt.verify.layermap import node_modules

    if s.fp32 is None:
        return {}
    names = [n for n, _ in s.module.named_modules()]
    return node_modules(onnx.load(str(s.fp32.raw()), load_external_data=False), names)


def kept(rec: Repair, s: Any, built: Built) -> list[dict[str, Any]]:
    """The layers `built` keeps out of int8, each with its precision and why (its cost alone in int8, its rank)."""
    rank = {row["layer"]: (i, row) for i, row in enumerate(rec.ranking)}
    v, names = Variant.of(built.recipe), modules(s)
    out = []
    for layer, precision in [*((x, "16-bit activations") for x in v.act16), *((x, "float") for x in v.keep_float)]:
        i, row = rank.get(layer, (None, {}))
        if not row:
            cost = "not ranked before the time budget ran out (kept in the ranking's scoring order)"
        elif row.get("disagreement_points") is not None:
            cost = (f"quantized alone in int8 it costs {row['disagreement_points']:.3g} points of top-1 agreement "
                    f"with fp32 (output relative error {row['rel_error']:.3g}), rank {i + 1}")
        else:
            cost = f"quantized alone in int8 the output's relative error is {row['rel_error']:.3g}, rank {i + 1}"
        out.append({"layer": layer, "module": names.get(layer), "precision": precision,
                    "rank": None if i is None else i + 1, "why": cost})
    return out
