"""OpenVINO rows of the prune latency measurement (dlopt.prune.latency._openvino_rows): the run's ONNX export and
each pruned ONNX file on OpenVINO, interleaved, before / after / speed-up per batch size; a file OpenVINO cannot
read costs the rows and says why, it never fails the measurement."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from dlopt.prune.latency import _openvino_rows


def _export(model: nn.Module, x: torch.Tensor, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})


def _target():
    from dlopt.models.registry import get_spec, make_inputs, make_model_config

    spec = get_spec("lenet5")
    cfg = make_model_config(spec)
    return spec, SimpleNamespace(config=cfg), make_inputs(spec, cfg, 1, seed=0)[0]


def test_openvino_rows_time_the_base_against_each_pruned_file(tmp_path):
    spec, target, x = _target()
    wide = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 2048), nn.ReLU(), nn.Linear(2048, 10))
    narrow = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 8), nn.ReLU(), nn.Linear(8, 10))
    _export(wide, x, tmp_path / "bench-export" / "model.onnx")
    _export(narrow, x, tmp_path / "pruned" / "model.onnx")
    rows, problem = _openvino_rows(SimpleNamespace(path=tmp_path), spec, target, ("pruned",), 0.2, (1, 4), 1)
    assert problem is None and set(rows["pruned"]) == {"openvino@b1", "openvino@b4"}
    row = rows["pruned"]["openvino@b4"]
    assert row["speedup"] == round(row["before_ms"] / row["after_ms"], 3)
    assert row["speedup"] > 2  # the unpruned file is the wide one: 250x the MACs


def test_a_missing_pruned_file_costs_the_rows_with_a_reason(tmp_path):
    spec, target, x = _target()
    _export(nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10)), x, tmp_path / "bench-export" / "model.onnx")
    rows, problem = _openvino_rows(SimpleNamespace(path=tmp_path), spec, target, ("pruned",), 0.1, (1,), 1)
    assert rows == {} and problem and "pruned/model.onnx" in problem
