"""The quantize runner hands back the memory a scoring batch took: its ONNX Runtime session shrinks its arena after
each multi-row call (a repair keeps several sessions alive: their arenas went past 8 GB at 224x224), while batch-1
calls, the ones timed, keep theirs."""

from __future__ import annotations

import numpy as np
import torch

from dlopt.quantize import ort_quant


class _Session:
    def __init__(self) -> None:
        self.calls: list[object] = []

    def get_inputs(self):
        return [type("I", (), {"name": "x"})()]

    def run(self, _out, feed, options=None):
        self.calls.append(options)
        return [np.zeros((feed["x"].shape[0], 2), np.float32)]


def test_multi_row_calls_shrink_the_arena_and_batch_one_calls_do_not(monkeypatch):
    fake = _Session()
    monkeypatch.setattr(ort_quant, "session", lambda _path, _threads=1: fake)
    run = ort_quant.runner_for("unused.onnx")
    run(torch.zeros(64, 3))
    run(torch.zeros(1, 3))
    many, one = fake.calls
    assert many is not None and many.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    assert one is None


def test_the_shrink_option_runs_on_a_real_session(tmp_path):
    path = tmp_path / "net.onnx"
    net = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    torch.onnx.export(net, (torch.zeros(2, 3),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    run = ort_quant.runner_for(path)
    got = run(torch.ones(8, 3))[0]
    assert torch.allclose(got, net(torch.ones(8, 3)).detach(), atol=1e-5)
