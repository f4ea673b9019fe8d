"""Why an int8 ONNX Runtime file is not faster than fp32 (dlopt.quantize.slow_ops): both files profiled, the
operator kinds that cost more in int8 named with their times, the trace files removed. The model is built here:
a stem conv, then depthwise + pointwise blocks with hardswish (mobilenet_v3's shape), static QDQ int8."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dlopt.quantize.config import Method, QBackend
from dlopt.quantize.recipe import Built, Recipe

DEPTHWISE = 4  # depthwise convolutions in the model


class Blocks(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.blocks = torch.nn.Sequential(*[torch.nn.Sequential(
            torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.Hardswish(), torch.nn.Conv2d(32, 32, 1),
            torch.nn.ReLU()) for _ in range(DEPTHWISE)])
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))  # (B, 3, H, W) -> (B, 10)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(int8 file, fp32 file, model, example) for the depthwise model at 32x32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from dlopt.runtime.quiet import quiet_deprecations

    torch.manual_seed(0)
    model, x = Blocks().eval(), torch.randn(1, 3, 32, 32)
    d = tmp_path_factory.mktemp("slow")
    with quiet_deprecations():
        torch.onnx.export(model, (x,), d / "fp32.onnx", input_names=["x"], dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quantize_static(str(d / "fp32.onnx"), str(d / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return d / "int8.onnx", d / "fp32.onnx", model, (x,)


def test_the_explanation_names_op_kinds_with_measured_times_and_leaves_no_trace(files, tmp_path, monkeypatch):
    from dlopt.quantize.slow_ops import QDQ, explain

    int8, fp32, model, example = files
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    rec = explain(int8, fp32, example, [n for n, _ in model.named_modules()])
    assert not list(cwd.iterdir()) and not list(tmp.iterdir()), "a profile file was left behind"
    assert rec["kernel_ms"]["int8"] > 0 and rec["kernel_ms"]["fp32"] > 0
    assert sum(o["int8_ms"] for o in rec["ops"]) == pytest.approx(rec["kernel_ms"]["int8"], abs=1e-3)
    ops = {o["kind"]: o for o in rec["ops"]}
    assert ops[QDQ]["fp32_nodes"] == 0 and ops[QDQ]["int8_nodes"] >= DEPTHWISE and ops[QDQ]["int8_ms"] > 0
    assert ops["depthwise Conv"]["int8_nodes"] == ops["depthwise Conv"]["fp32_nodes"] == DEPTHWISE
    assert ops["Conv"]["int8_nodes"] == ops["Conv"]["fp32_nodes"] == DEPTHWISE + 1  # pointwise and the stem
    added = re.search(r"QuantizeLinear/DequantizeLinear add ([\d.]+) ms over (\d+) nodes", rec["line"])
    assert added and float(added[1]) > 0 and int(added[2]) == ops[QDQ]["int8_nodes"], rec["line"]
    assert re.match(r"ONNX Runtime profile \(one thread, batch 1, kernel time per run\): int8 [\d.]+ ms against "
                    r"fp32 [\d.]+ ms", rec["line"]), rec["line"]
    names = {n for n, _ in model.named_modules()}
    assert all(r["module"] in names and r["extra_ms"] > 0 for r in rec["slowest_layers"]), rec["slowest_layers"]


def test_kinds_match_the_int8_and_fp32_kernels_of_one_layer():
    from dlopt.quantize.slow_ops import kind, runtime_kind

    assert runtime_kind("QLinearConv") == runtime_kind("FusedConv") == "Conv"
    assert runtime_kind("MatMulInteger") == runtime_kind("QLinearMatMul") == "MatMul"
    assert kind("DequantizeLinear", None, None) == kind("QuantizeLinear", None, None)
    assert kind("QLinearAdd", None, None) == "Add"


def test_the_quantize_stage_records_why_plain_int8_is_not_faster(files, monkeypatch):
    """The stage's path without a repair (plain int8 within budget): int8 timed against fp32 as the stage times
    them, and, when not faster, the search record carries the explanation; none for another backend, nor for an
    int8 file timed faster. Whether Q/DQ around tiny convolutions is slower depends on the CPU (it timed faster on
    a quiet EPYC core), so the comparison is fixed here and the timing itself checked apart."""
    from dlopt.quantize import slow_ops
    from dlopt.quantize.accuracy import Search
    from dlopt.quantize.mixed import repair_search
    from dlopt.quantize.ort_quant import runner_for
    from dlopt.quantize.slow_ops import for_session

    int8, fp32, model, example = files
    s = SimpleNamespace(cfg=SimpleNamespace(is_int8=True, max_fallback_layers=8, timing_budget_s=0.2), module=model,
                        fp32=SimpleNamespace(raw=lambda: fp32), example=lambda: example)
    built = Built(Recipe(QBackend.ONNXRUNTIME, Method.STATIC), int8, runner_for(int8), ("a",), ())
    measured = slow_ops._time(s, built)  # the stage's own interleaved timing of both files
    assert set(measured) == {"int8", "fp32"} and min(measured.values()) > 0
    monkeypatch.setattr(slow_ops, "_time", lambda *_a: {"int8": 1.2, "fp32": 1.0})
    _, search = repair_search(s, built, Search(stopped="within budget"), None, lambda _m: None)
    assert search.slow_ops is not None, "int8 Q/DQ around 32-channel convolutions at 32x32 should not be faster"
    timed = search.slow_ops["timed_ms_b1"]
    assert timed["int8"] >= timed["fp32"] > 0
    assert search.slow_ops["line"].startswith(f"int8 {timed['int8']:.3g} ms against fp32 {timed['fp32']:.3g} ms")
    assert "QuantizeLinear/DequantizeLinear add" in search.slow_ops["line"]
    assert for_session(s, built, {"int8": 1.0, "fp32": 2.0}) is None  # faster: nothing to explain
    other = Built(Recipe(QBackend.OPENVINO, Method.STATIC), Path("model.xml"), lambda *x: x, ("a",), ())
    assert repair_search(s, other, Search(stopped="within budget"), None, lambda _m: None)[1].slow_ops is None
