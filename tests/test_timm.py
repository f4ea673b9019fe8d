"""timm models as `timm:NAME`: random weights unless --weights PATH, input size from the model's pretrained_cfg,
through export + verify, prune and quantize; unknown names and a missing timm each give one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


timm = pytest.importorskip("timm")
SMALL = ("--input-size", "32")


from cli_calls import invoke as _invoke  # noqa: E402  (tests/fixtures, on the path via conftest)
from cli_calls import one_error as _error  # noqa: E402


@pytest.mark.parametrize("name", ["resnet18", "inception_v3", "vit_tiny_patch16_224"])
def test_input_size_is_the_models_own(name: str) -> None:
    from dlopt.models.registry import get_spec

    spec = get_spec(f"timm:{name}")
    want = timm.get_pretrained_cfg(name).input_size
    assert spec.config().input_size == want[1] and spec.config().in_channels == want[0]
    assert spec.kind == "timm" and spec.extra == "timm"


def test_export_verify_then_prune_and_int8(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = _invoke("export", "timm:resnet10t", *SMALL, "--format", "onnx,pt2", "--exporter", "legacy",
                     "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(v["passed"] for v in data["verification"].values())
    run = Path(data["run"])
    result = _invoke("prune", run, "--ratio", "0.3", "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["params"]
    assert params["after"] < params["before"]
    result = _invoke("quantize", run, "--method", "dynamic", "--backend", "onnxruntime", "--exporter", "legacy",
                     "--json")
    assert result.exit_code in (0, 1), result.output  # a verdict either way, never a crash
    assert json.loads(result.stdout)["layers_int8"] > 0


def test_vit_fixed_size_is_built_for_the_size_asked(tmp_path: Path) -> None:
    result = _invoke("export", "timm:vit_tiny_patch16_224", *SMALL, "--format", "onnx", "--exporter", "legacy",
                     "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verification"]["onnx"]["passed"]


def test_structured_prune_of_vit_is_refused_up_front(tmp_path: Path) -> None:
    result = _invoke("prune", "timm:vit_tiny_patch16_224", *SMALL, "--out", tmp_path / "runs")
    assert result.exit_code == 4, result.output
    assert "qkv" in _error(result) and "--method unstructured" in _error(result)
    assert not (tmp_path / "runs").exists()


def test_weights_file(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    model = timm.create_model("resnet10t", pretrained=False, num_classes=1000)
    with torch.no_grad():
        model.fc.bias.fill_(0.5)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    result = _invoke("export", "timm:resnet10t", *SMALL, "--weights", tmp_path / "w.safetensors", "--format", "pt2",
                     "--out", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["run"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["weights_source"]["path"] == str((tmp_path / "w.safetensors").resolve())
    from safetensors.torch import load_file

    assert torch.all(load_file(run / "model.safetensors")["fc.bias"] == 0.5)


def test_unknown_name_suggests(tmp_path: Path) -> None:
    result = _invoke("export", "timm:resnet1800", "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "unknown timm model 'resnet1800'" in _error(result) and "timm:resnet18" in _error(result)
    assert not (tmp_path / "runs").exists()


def test_list_names_timm_models() -> None:
    result = _invoke("list", "--timm", "convnext_at*", "--json")
    assert result.exit_code == 0, result.output
    assert "timm:convnext_atto" in json.loads(result.stdout)
    footer = _invoke("list").output
    for form in ("torchvision:NAME", "timm:NAME", "hf:./folder", "model.onnx", "file.py:fn", "RUN_DIR"):
        assert form in footer, form


def test_without_timm_one_line_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlopt.models import timm_models

    monkeypatch.setitem(sys.modules, "timm", None)
    timm_models.timm_spec.cache_clear()
    result = _invoke("export", "timm:resnet18", "--out", tmp_path / "runs")
    assert result.exit_code == 7, result.output
    assert "pip install 'dlopt[timm]'" in _error(result)
    timm_models.timm_spec.cache_clear()
