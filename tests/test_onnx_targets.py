"""ONNX files made elsewhere as targets: `dlopt quantize model.onnx` (judged against the fp32 file), `dlopt verify a.onnx
--reference b.onnx`, inputs derived from the graph, and the file read as hostile (external data kept inside its
folder, no custom-op domains): one line, the documented exit code, nothing created."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn




from cli_calls import invoke as _invoke  # noqa: E402  (tests/fixtures, on the path via conftest)
from cli_calls import one_error as _error  # noqa: E402


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def _export(model: nn.Module, example: tuple, path: Path, names: list[str], axes: dict) -> Path:
    torch.onnx.export(model, example, str(path), dynamo=False, input_names=names, output_names=["logits"],
                      dynamic_axes=axes, opset_version=17)
    return path


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("onnx")
    return _export(_cnn(0), (torch.randn(1, 3, 16, 16),), folder / "cnn.onnx", ["image"],
                   {"image": {0: "n"}, "logits": {0: "n"}})


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(50, 8), nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head((self.emb(ids) * mask.unsqueeze(-1)).mean(1))


def test_inputs_come_from_the_graph(cnn_file: Path, tmp_path: Path) -> None:
    from dlopt.quantize.onnx_file import onnx_example_inputs

    (image,) = onnx_example_inputs(cnn_file, batch=3)
    assert image.shape == (3, 3, 16, 16) and image.dtype == torch.float32
    tokens = _export(Tokens().eval(), (torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5)), tmp_path / "t.onnx",
                     ["ids", "mask"], {"ids": {0: "n", 1: "t"}, "mask": {0: "n", 1: "t"}, "logits": {0: "n"}})
    ids, mask = onnx_example_inputs(tokens, batch=2, seq_len=7)
    assert ids.dtype == torch.int64 and ids.shape == (2, 7)
    assert 2 <= int(ids.max()) < 50  # drawn across the embedding table (a Gather on it), not from [0, 2)
    assert mask.shape == (2, 7) and mask.dtype == torch.float32


def test_quantize_file_then_verify_against_it(cnn_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = _invoke("quantize", cnn_file, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verified"] and data["layers_int8"] > 0 and data["speedup_vs_fp32_b1"] > 0
    assert data["fp32_reference"] in ("onnxruntime fp32", "openvino fp32")
    assert {c["recipe"].split()[0] for c in data["auto"]["candidates"]} == {"onnxruntime", "openvino"}
    int8 = Path(data["artifact"])
    if int8.suffix == ".onnx":
        result = _invoke("verify", int8, "--reference", cnn_file, "--json")
        assert result.exit_code == 0, result.output
        assert "top-1 agreement" in json.loads(result.stdout)["artifacts"]["onnx"]["criterion"]


def test_quantize_on_the_users_inputs(cnn_file: Path, tmp_path: Path) -> None:
    import numpy as np

    np.savez(tmp_path / "calib.npz", image=np.random.default_rng(0).standard_normal((40, 3, 16, 16), np.float32))
    result = _invoke("quantize", cnn_file, "--inputs", tmp_path / "calib.npz", "--method", "static", "--backend",
                     "onnxruntime", "--out", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "held-out rows" in data["accuracy_basis"] and data["calibration"]["samples"] == 30
    assert {c["source"] for c in data["verification"]["shapes"]["cases"]} == {"file"}  # verified on held-out rows


def test_verify_reference_elementwise(cnn_file: Path, tmp_path: Path) -> None:
    same = _export(_cnn(0), (torch.randn(1, 3, 16, 16),), tmp_path / "same.onnx", ["image"],
                   {"image": {0: "n"}, "logits": {0: "n"}})
    result = _invoke("verify", same, "--reference", cnn_file, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["artifacts"]["onnx"]["criterion"].startswith("elementwise")
    other = _export(_cnn(1), (torch.randn(1, 3, 16, 16),), tmp_path / "other.onnx", ["image"],
                    {"image": {0: "n"}, "logits": {0: "n"}})
    result = _invoke("verify", other, "--reference", cnn_file)
    assert result.exit_code == 1, result.output


def _external_outside(tmp_path: Path, cnn_file: Path) -> Path:
    from hostile_onnx import external_data_outside

    return external_data_outside(cnn_file, tmp_path)


def _custom_domain(tmp_path: Path, cnn_file: Path) -> Path:
    model = onnx.load(str(cnn_file))
    model.graph.node[0].domain = "com.example.evil"
    model.opset_import.add(domain="com.example.evil", version=1)
    path = tmp_path / "custom.onnx"
    onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize("case, code, words", [("external", 3, "outside the model's folder"),
                                               ("custom", 4, "custom domain 'com.example.evil'")])
def test_hostile_files(case: str, code: int, words: str, cnn_file: Path, tmp_path: Path) -> None:
    bad = _external_outside(tmp_path, cnn_file) if case == "external" else _custom_domain(tmp_path, cnn_file)
    out = tmp_path / "runs"
    for args in (("quantize", bad, "--out", out), ("verify", bad, "--reference", cnn_file),
                 ("verify", cnn_file, "--reference", bad)):
        result = _invoke(*args)
        assert result.exit_code == code, (args, result.output)
        assert words in _error(result)
    assert not out.exists() and not bad.with_suffix(".verify.json").exists()
    assert not cnn_file.with_suffix(".verify.json").exists()
