"""Static int8 MinMax calibration feeds ORT runs of at most CALIB_RUN samples (ORT's activation memory grows with
the run's batch) and reduces activation ranges a batch at a time (ORT's CalibStridedMinMax over dlopt's lazy
batches) instead of holding every batch's outputs to the end, and gives the same quantization parameters as
one-pass calibration on whole batches. benchmarks/memory_peak.py measures the peak of the real command at 224."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dlopt.quantize import ort_quant
from dlopt.quantize.calibrate import Batches
from dlopt.quantize.config import CalibrationMethod, Method, QBackend, QuantFormat
from dlopt.quantize.recipe import Recipe

BATCHES, BATCH, RUN = 6, 6, 4  # ORT runs of 4 samples: 4 + 2 per batch


def _tiny_cnn(path: Path) -> Path:
    import warnings

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 5)).eval()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(2, 3, 12, 12),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    return path


def _batches(made: list[int]) -> Batches:
    """Each batch has its own range (scaled by k + 1, shifted by k), so a batch left out changes the scales."""
    def make(k: int) -> tuple[torch.Tensor, ...]:
        made.append(k)
        g = torch.Generator().manual_seed(k)
        return (torch.randn(BATCH, 3, 12, 12, generator=g) * (k + 1) + k,)

    return Batches([BATCH] * BATCHES, make)


def _qparams(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {name: inits[name] for n in model.graph.node if n.op_type == "QuantizeLinear"
            for name in n.input[1:] if name in inits}


def _calibrate(tmp: Path, src: Path, name: str, strided: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    import onnxruntime.quantization as oq

    seen: dict = {"made": [], "ranges": [], "runs": []}
    real_static, real_reader = oq.quantize_static, ort_quant._reader

    def spy_static(*args, **kwargs):  # what dlopt asked ORT for
        seen["extra"] = kwargs.get("extra_options")
        return real_static(*args, **kwargs)

    def spy_reader(inputs, names, run=None):
        reader = real_reader(inputs, names, run)
        set_range, get_next = reader.set_range, reader.get_next
        reader.get_next = lambda: (feed := get_next(), feed and seen["runs"].append(len(feed["x"])))[0]
        reader.set_range = lambda start_index, end_index: (seen["ranges"].append((start_index, end_index)),
                                                           set_range(start_index, end_index))[1]
        return reader

    monkeypatch.setattr(oq, "quantize_static", spy_static)
    monkeypatch.setattr(ort_quant, "_reader", spy_reader)
    monkeypatch.setattr(ort_quant, "CALIB_RUN", RUN if strided else None)
    if not strided:  # ORT's one-pass calibration on whole batches, as before
        monkeypatch.setattr(ort_quant, "_calib_options", lambda *a, **k: {})
    recipe = Recipe(QBackend.ONNXRUNTIME, Method.STATIC, QuantFormat.QDQ, per_channel=True)
    dst = tmp / f"{name}.onnx"
    ort_quant._static(src, dst, recipe, _batches(seen["made"]), ["x"], CalibrationMethod.MINMAX)
    monkeypatch.undo()
    return dst, seen


def test_strided_minmax_same_qparams_each_batch_read_once(tmp_path, monkeypatch):
    src = _tiny_cnn(tmp_path / "fp32.onnx")
    strided, s_seen = _calibrate(tmp_path, src, "strided", True, monkeypatch)
    plain, p_seen = _calibrate(tmp_path, src, "plain", False, monkeypatch)

    assert s_seen["extra"] == {"CalibStridedMinMax": ort_quant.CALIB_STRIDE}
    assert s_seen["ranges"] == [(k, k + 1) for k in range(BATCHES)]  # ORT read it a stride at a time
    assert s_seen["made"] == list(range(BATCHES))  # every batch made once, lazily, in order
    assert s_seen["runs"] == [RUN, BATCH - RUN] * BATCHES  # no ORT run holds more than RUN samples
    assert p_seen["extra"] == {} and p_seen["ranges"] == [] and p_seen["made"] == list(range(BATCHES))
    assert p_seen["runs"] == [BATCH] * BATCHES

    got, want = _qparams(strided), _qparams(plain)
    assert want and got.keys() == want.keys()
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=0, err_msg=name)


def test_calib_options_minmax_only():
    assert ort_quant._calib_options(CalibrationMethod.MINMAX, 8) == {"CalibStridedMinMax": 1}
    assert ort_quant._calib_options(CalibrationMethod.MINMAX, 1) == {}  # one batch: nothing to stride
    assert ort_quant._calib_options(CalibrationMethod.MINMAX, 9, stride=2) == {}  # ORT needs len % stride == 0
    assert ort_quant._calib_options(CalibrationMethod.ENTROPY, 8) == {}
    assert ort_quant._calib_options(CalibrationMethod.PERCENTILE, 8) == {}


def _one_pass_ort(src: Path, dst: Path, method: CalibrationMethod) -> Path:
    """ORT's own quantize_static with its one-pass histogram collection over whole batches: the reference."""
    import onnxruntime.quantization as oq

    ort_method = {CalibrationMethod.ENTROPY: oq.CalibrationMethod.Entropy,
                  CalibrationMethod.PERCENTILE: oq.CalibrationMethod.Percentile}[method]
    oq.quantize_static(str(src), str(dst), ort_quant._reader(_batches([]), ["x"], None),
                       quant_format=oq.QuantFormat.QDQ, per_channel=True, activation_type=oq.QuantType.QUInt8,
                       weight_type=oq.QuantType.QInt8, calibrate_method=ort_method,
                       op_types_to_quantize=list(ort_quant.STATIC_OPS))
    return dst


@pytest.mark.parametrize("method", [CalibrationMethod.ENTROPY, CalibrationMethod.PERCENTILE])
def test_histogram_calibration_is_bounded_and_equals_one_pass(tmp_path, monkeypatch, method):
    """Entropy / percentile: every ORT run holds at most `run_size` samples (one here: the raw export has no
    inferred shapes, so the size per sample is unknown and the smallest run is used), each lazy batch is made
    once per pass (two passes), and the ranges equal ORT's one-pass collection over whole batches exactly."""
    from dlopt.quantize import histogram_calib

    src = _tiny_cnn(tmp_path / "fp32.onnx")
    made, runs = [], []
    real_unit_reader = histogram_calib.unit_reader

    def spy(inputs, names, run):
        reader = real_unit_reader(inputs, names, run)
        get_next = reader.get_next
        reader.get_next = lambda: (feed := get_next(), feed and runs.append(len(feed["x"])))[0]
        return reader

    monkeypatch.setattr(histogram_calib, "unit_reader", spy)
    recipe = Recipe(QBackend.ONNXRUNTIME, Method.STATIC, QuantFormat.QDQ, per_channel=True)
    ours = tmp_path / "ours.onnx"
    ort_quant._static(src, ours, recipe, _batches(made), ["x"], method)
    assert runs == [1] * (2 * BATCHES * BATCH)  # two passes, one sample per ORT run
    assert made == list(range(BATCHES)) * 2
    assert not list(tmp_path.glob("*calibration*")) and not list(tmp_path.glob("*.aug.onnx"))  # scratch removed

    got, want = _qparams(ours), _qparams(_one_pass_ort(src, tmp_path / "ort.onnx", method))
    assert want and got.keys() == want.keys()
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_histogram_run_size_follows_the_activation_bytes(tmp_path):
    """Bytes per sample are summed over the float tensors into and out of Conv/MatMul/Gemm (the tensors ORT's
    histogram calibrator keeps): x 3x12x12, conv 8x12x12, relu 8x12x12, conv 4x10x10, flatten 400, y 5."""
    import onnx

    from dlopt.quantize.histogram_calib import activation_bytes_per_sample, run_size

    raw = _tiny_cnn(tmp_path / "fp32.onnx")
    shaped = tmp_path / "shaped.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(raw))), str(shaped))
    per_sample = (432 + 1152 + 1152 + 400 + 400 + 5) * 4
    assert activation_bytes_per_sample(shaped, ort_quant.STATIC_OPS) == per_sample
    assert activation_bytes_per_sample(raw, ort_quant.STATIC_OPS) is None  # no inferred shapes
    assert run_size(shaped, ort_quant.STATIC_OPS, 32, budget=per_sample * 5 + 1) == 5
    assert run_size(shaped, ort_quant.STATIC_OPS, 32, budget=10**12) == 32  # never more than a batch
    assert run_size(shaped, ort_quant.STATIC_OPS, 32, budget=1) == 1
    assert run_size(raw, ort_quant.STATIC_OPS, 32) == 1
