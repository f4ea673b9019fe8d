"""How benchmarks/truth_set.py decides what it times at 224x224: the recipes quantize found within budget at the
trained size (the shipped one, and every auto candidate within the budget less its margin), read from the report
by label; and how the 224 target is counted (the fastest such recipe against fp32 on its own runtime)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from truth_set import _recipe_of, _summary_224, _within_at_trained_size  # noqa: E402

SHIPPED = {"backend": "onnxruntime", "method": "dynamic", "quant_format": "qdq", "per_channel": True,
           "keep_float": [], "label": "onnxruntime dynamic per-channel"}


def _report(drops: dict[str, float | None], select: float = 0.5) -> dict:
    return {"recipe": SHIPPED, "drop_points": 0.0, "auto": {"margin": {"select": select}, "candidates": [
        *({"recipe": k, "val_drop": v} for k, v in drops.items()), {"recipe": "openvino bf16", "failed": "x"}]}}


def test_labels_name_the_recipe_fields():
    assert _recipe_of("onnxruntime static qoperator per-tensor") == {
        "backend": "onnxruntime", "method": "static", "quant_format": "qoperator", "per_channel": False,
        "keep_float": [], "label": "onnxruntime static qoperator per-tensor"}
    assert _recipe_of("openvino static per-channel")["backend"] == "openvino"


def test_only_recipes_within_the_budget_less_its_margin_are_timed_at_224():
    got = _within_at_trained_size(_report({"onnxruntime static qdq per-channel": 0.37,
                                            "openvino static per-channel": 0.74, SHIPPED["label"]: 0.0}))
    assert [r["label"] for r in got] == [SHIPPED["label"], "onnxruntime static qdq per-channel"]
    assert got[0] is SHIPPED  # the shipped recipe as recorded (its float layers included), not re-read from a label
    over = {**_report({}), "drop_points": 1.5}
    assert _within_at_trained_size(over) == []  # shipped over the 1-point budget: nothing to time


def test_the_224_target_counts_the_fastest_recipe_on_its_own_runtime():
    def row(model: str, fastest: float | None, shipped: float) -> dict:
        big = {"int8_vs_best_fp32": shipped, **({"fastest_within_budget": {"vs_fp32_same_runtime": fastest}}
                                                if fastest is not None else {})}
        return {"model": model, "speed": {"224": big}}

    out = _summary_224([row("a", 1.6, 0.8), row("b", 1.4, 1.7), row("c", None, 1.9)])["at_224"]
    assert out["met_by"] == ["a", "c"] and out["shipped_recipe_only"] == ["c"] and not out["target_met"]
