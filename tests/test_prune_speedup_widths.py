"""Default pruned widths stay near the ratio asked for: rounding to a fast multiple never moves a layer's share
removed more than MAX_SHIFT (10 points) from the ratio; where it would, the layer keeps the exact ratio."""

from __future__ import annotations

import math

import pytest

from dlopt.models.registry import list_specs
from dlopt.prune import PruneConfig
from dlopt.prune.widths import MAX_SHIFT, choose

STRUCTURED = list_specs(stage="prune:structured")
RATIOS = (0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 0.9)


def _near_or_exact(before: int, after: int, ratio: float) -> bool:
    """The share removed is within MAX_SHIFT of the ratio, or the width is the exact floor(width * (1 - ratio))."""
    return abs(1 - after / before - ratio) <= MAX_SHIFT + 1e-9 or after == math.floor(before * (1 - ratio))


@pytest.mark.parametrize("ratio", RATIOS)
def test_rounding_never_moves_a_layers_share_more_than_ten_points(ratio):
    cfg = PruneConfig(ratio=ratio)
    for before in range(1, 1025):
        c = choose(before, cfg)
        assert _near_or_exact(before, c.kept, ratio), (before, c)
        if "rounded" in c.why:  # a rounded width is a multiple of 8 and within the window
            assert c.kept % 8 == 0 and abs(1 - c.kept / before - ratio) <= MAX_SHIFT + 1e-9, (before, c)


def test_a_32_wide_layer_at_0_3_keeps_24_not_16():
    cfg = PruneConfig(ratio=0.3)
    assert choose(32, cfg).kept == 24 and "multiple of 8" in choose(32, cfg).why  # 16 would remove 50 %
    assert choose(48, cfg).kept == 32 and "multiple of 16" in choose(48, cfg).why  # 33.6 -> 32: 33 % removed
    low = choose(24, PruneConfig(ratio=0.2))  # 19.2: 16 (the nearest multiple of 16 and of 8) removes 33 %
    assert low.kept == 19 and "exact ratio" in low.why and "16 would remove 33%, over 10 points" in low.why


@pytest.mark.parametrize("ratio", (0.2, 0.3))
@pytest.mark.parametrize("spec", STRUCTURED, ids=lambda s: s.name)
def test_every_structured_arch_keeps_planned_layers_near_the_ratio(spec, ratio):
    from dlopt.models.registry import create_model, make_inputs, make_model_config
    from dlopt.prune.model import prune_model
    from dlopt.prune.report import explain

    mcfg = make_model_config(spec, tiny=True)
    cfg = PruneConfig(ratio=ratio)
    _, info = prune_model(create_model(spec, mcfg), spec, cfg, make_inputs(spec, mcfg, 1))
    rows = explain(info, cfg)["layers"]
    planned = {n: r for n, r in rows.items() if n in info["width_plan"]}
    assert planned, f"{spec.name}: no planned layer"
    for name, row in planned.items():  # the widths the pruned model has, not only the plan
        assert _near_or_exact(row["before"], row["after"], ratio), (spec.name, name, row)


def test_vit_tiny_default_prune_removes_about_the_ratio_per_layer():
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.prune.model import prune_model
    from dlopt.prune.report import explain

    spec = get_spec("vit")
    mcfg = make_model_config(spec, tiny=True)
    cfg = PruneConfig(ratio=0.3)
    _, info = prune_model(create_model(spec, mcfg), spec, cfg, make_inputs(spec, mcfg, 1))
    rows = explain(info, cfg)["layers"]
    assert rows["patch_embedding"]["before"] == 32 and rows["patch_embedding"]["after"] == 24  # was 16: -50 %


NARROWISH = """from torch import nn

def build():
    return nn.Sequential(nn.Linear(8, 24), nn.ReLU(), nn.Linear(24, 64), nn.ReLU(), nn.Linear(64, 10))
"""


def test_the_report_says_a_layer_was_kept_exact_on_purpose(tmp_path):
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.prune.model import prune_model
    from dlopt.prune.report import explain

    path = tmp_path / "narrowish.py"
    path.write_text(NARROWISH)
    spec = get_spec(f"{path}:build")
    mcfg = make_model_config(spec, input_shape=(8,))
    cfg = PruneConfig(ratio=0.2, width_table=False)  # the rule's widths; the measured table may move 48 to 56
    _, info = prune_model(create_model(spec, mcfg), spec, cfg, make_inputs(spec, mcfg, 1))
    report = explain(info, cfg)
    assert report["layers"]["0"]["after"] == 19 and "16 would remove 33%" in report["layers"]["0"]["why"]
    assert report["layers"]["2"]["after"] == 48  # 51.2: the nearest multiple of 16 removes 25 %, within 10 points
    assert any("kept at the exact ratio on purpose" in n and "19" in n for n in report["notes"])
