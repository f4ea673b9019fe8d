"""Widths outside the 10-point window (dlopt.prune.width_groups.candidates): for a layer under 64 channels whose
window holds no multiple of 16 (the cnn's 32-channel first layer at 0.3: 24 alone), the nearest multiples of 16
are timed too, and one is kept only when measured faster, the overall share of channels still near the ratio."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlopt.prune import PruneConfig
from dlopt.prune import width_table as wt
from dlopt.prune.op_calls import Op
from dlopt.prune.width_groups import candidates
from dlopt.prune.widths import choose


class TwoConvs(nn.Module):
    """A 32-channel conv at full resolution, a 128-channel one, a kept head: the cnn's first layers, small; `rest`
    stands for the parameters the cnn keeps elsewhere (its classifier holds most of them), so moving a few channels
    moves a few percent of the parameters at most (width_table.PARAM_SHIFT)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 128, 3, padding=1)
        self.head = nn.Linear(128, 10)
        self.rest = nn.Parameter(torch.zeros(400_000), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))).mean((2, 3)))


@pytest.mark.parametrize(("before", "ratio", "want"), [
    (32, 0.3, [16, 24]),  # window 20-25 holds 24 alone: 16 (50 % removed) is timed beside it
    (64, 0.3, [40, 48]),  # 48 is a multiple of 16 inside the window: nothing outside it
    (128, 0.3, [80, 88, 96]),  # wide: multiples of 8 are enough
    (32, 0.2, [24]),  # 16 would remove 50 %, 30 points from 0.2: not a candidate
])
def test_candidates_add_the_nearest_multiples_of_16_only_where_the_window_has_none(before, ratio, want):
    assert candidates(choose(before, PruneConfig(ratio=ratio)), ratio) == want


def _prune(fast16: bool, monkeypatch, cache) -> tuple[TwoConvs, dict]:
    from dlopt.prune.structured import prune_structured

    monkeypatch.setenv("DLOPT_CACHE_DIR", str(cache / str(fast16)))

    def measure(ops: list[Op], runtime: str) -> dict[str, float]:  # a's width at 16 halves a's call and b's
        # (24 costs what 32 does: AVX-512 blocks channels by 16); b's own width costs nothing here
        a_width = {op.key: op.out if op.shape[1] == 1 else op.shape[1] for op in ops if op.kind == "conv"}
        return {op.key: 1.0 if fast16 and a_width.get(op.key) == 16 else 2.0 for op in ops}

    monkeypatch.setattr(wt, "measure_ops", measure)
    model = TwoConvs()
    info = prune_structured(model, (torch.randn(1, 1, 12, 12),), PruneConfig(ratio=0.3))
    return model, info


def test_a_multiple_of_16_outside_the_window_is_kept_when_faster_and_the_report_says_so(tmp_path, monkeypatch):
    model, info = _prune(True, monkeypatch, tmp_path)
    row = info["width_plan"]["a"]
    assert model.a.out_channels == 16 and set(row["candidates_ms"]) == {"16", "24"}
    assert "outside the 10-point window" in row["why"] and "removes 50%" in row["why"]
    kept = model.a.out_channels + model.b.out_channels
    assert abs(1 - kept / 160 - 0.3) <= wt.OVERALL_SHIFT + 1e-9  # b keeps more to hold the overall share
    model, info = _prune(False, monkeypatch, tmp_path)  # 16 no faster: the window's width wins the tie
    assert model.a.out_channels == 24 and "outside" not in info["width_plan"]["a"]["why"]
