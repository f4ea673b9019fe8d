"""--weights: torchvision weights from a seeded local hub cache (the real loading path, offline), a user's state dict
(.pth with weights_only, safetensors), and the refusals: missing cache (3), full unpickling needed (6), wrong shapes (3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.contract.target import TargetOptions, resolve_target
from dlopt.core.errors import InputFileError, UnsafeFileError, UsageError
from dlopt.core.fileio import sha256_file
from dlopt.models.checkpoint import load_checkpoint
from dlopt.models.registry import build_model

runner = CliRunner()
TV = "torchvision:squeezenet1_1"  # 1.2M parameters: the smallest torchvision classifier with published weights
TV_FILE = "squeezenet1_1-b8a52dc0.pth"  # the file name in its weights' url, as torch.hub caches it


def _invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def _one_line_error(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error")]
    assert len(lines) == 1, result.output
    return lines[0]


class Marker:
    """Unpickling this runs code: it creates the file named in its reduce tuple."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def seeded_hub(tmp_path, monkeypatch, no_download) -> torch.nn.Module:
    """TORCH_HOME with squeezenet1_1's DEFAULT weights file in place: a seeded state dict under the expected name."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    torch.manual_seed(123)
    source = torchvision.models.squeezenet1_1(weights=None).eval()
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / TV_FILE)
    return source


def _out(model, x):
    with torch.no_grad():
        return model(x)


def test_torchvision_default_weights_load_from_the_seeded_cache(seeded_hub, tmp_path):
    x = torch.randn(2, 3, 64, 64)
    plain = resolve_target(TargetOptions(name=TV, root=tmp_path / "a", input_size=64))
    t = resolve_target(TargetOptions(name=TV, root=tmp_path / "b", input_size=64, weights="DEFAULT"))
    assert torch.equal(_out(t.model, x), _out(seeded_hub, x))
    assert not torch.allclose(_out(plain.model, x), _out(t.model, x))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TV_FILE
    model = json.loads((t.run.path / "manifest.json").read_text())["model"]
    assert model["weights_source"] == {"kind": "torchvision", "name": "SqueezeNet1_1_Weights.IMAGENET1K_V1",
                                "path": str(cached.resolve()), "sha256": sha256_file(cached)}
    cached.unlink()  # the run keeps its own copy: reloading needs no cache
    again = load_checkpoint(t.checkpoint)
    assert torch.equal(_out(again.model, x), _out(seeded_hub, x))
    assert again.record["weights_source"]["name"] == "SqueezeNet1_1_Weights.IMAGENET1K_V1"


def test_torchvision_weights_get_the_layout_torchvision_loads_them_into(tmp_path, monkeypatch, no_download):
    """googlenet with weights: torchvision normalises the input and drops the auxiliary heads after loading, so the
    model dlopt builds (and rebuilds from the run) must have that layout, not weights=None's."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    torch.manual_seed(5)
    source = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / "googlenet-1378be20.pth")  # the file torchvision's weights name
    t = resolve_target(TargetOptions(name="torchvision:googlenet", root=tmp_path / "runs", input_size=64,
                                     weights="DEFAULT"))
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_out(t.model, x), _out(source.eval(), x))
    assert t.model.aux1 is None and t.model.transform_input
    assert torch.equal(_out(load_checkpoint(t.checkpoint).model, x), _out(source, x))


def test_torchvision_weights_by_full_name_and_unknown_name(seeded_hub, tmp_path):
    t = resolve_target(TargetOptions(name=TV, root=tmp_path, input_size=64,
                                     weights="SqueezeNet1_1_Weights.IMAGENET1K_V1"))
    assert t.config.pretrained == "SqueezeNet1_1_Weights.IMAGENET1K_V1"
    with pytest.raises(UsageError, match="unknown weights 'IMAGENET1K_V9'.*choose DEFAULT, IMAGENET1K_V1, or"):
        resolve_target(TargetOptions(name=TV, root=tmp_path, weights="IMAGENET1K_V9"))


def test_missing_cache_is_one_line_exit_3_without_a_download(tmp_path, no_download):
    out = tmp_path / "runs"
    result = _invoke("export", TV, "--weights", "DEFAULT", "--out", out,
                     env={"TORCH_HOME": str(tmp_path / "empty-home")})
    assert result.exit_code == 3, result.output
    line = _one_line_error(result)
    assert "not in the local torch hub cache" in line and TV_FILE in line and "--weights FILE" in line
    assert not out.exists()  # nothing started


def _save_state(path: Path, seed: int, nest: bool = False, **build) -> torch.nn.Module:
    torch.manual_seed(seed)
    model, _, _ = build_model("mlp", **build)
    state = model.state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3} if nest else state, path)
    return model.eval()


@pytest.mark.parametrize(("name", "nest"), [("sd.pth", False), ("ck.pt", True), ("sd.safetensors", False)])
def test_user_state_dict_loads_and_is_recorded(tmp_path, name, nest):
    path = tmp_path / name
    source = _save_state(path, 7, nest, tiny=True)
    t = resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path / "runs", weights=path))
    x = torch.randn(3, 20)
    assert torch.equal(_out(t.model, x), _out(source, x))
    recorded = json.loads((t.run.path / "manifest.json").read_text())["model"]["weights_source"]
    assert recorded == {"kind": "file", "name": str(path), "path": str(path.resolve()), "sha256": sha256_file(path)}


def test_cli_export_with_a_relative_weights_path_from_another_directory(tmp_path, monkeypatch):
    _save_state(tmp_path / "w" / "sd.pth", 7, tiny=True) if (tmp_path / "w").mkdir() is None else None
    monkeypatch.chdir(tmp_path / "w")
    result = _invoke("export", "mlp", "--tiny", "--weights", "sd.pth", "--format", "onnx", "--exporter", "legacy",
                     "--out", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((Path(json.loads(result.stdout)["run"]) / "manifest.json").read_text())
    assert manifest["model"]["weights_source"]["sha256"] == sha256_file(tmp_path / "w" / "sd.pth")


def test_pickled_object_is_refused_without_running_it(tmp_path):
    marker, path = tmp_path / "ran.txt", tmp_path / "model.pth"
    torch.save({"head.weight": torch.zeros(2, 4), "hook": Marker(marker)}, path)
    with pytest.raises(UnsafeFileError, match="needs full unpickling.*GLOBAL"):
        resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path / "runs", weights=path))
    assert not marker.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["export", "prune", "quantize", "bench"])
def test_every_command_refuses_a_pickle_with_exit_6(tmp_path, command):
    marker, path = tmp_path / "ran.txt", tmp_path / "model.pth"
    torch.save(Marker(marker), path)
    result = _invoke(command, "mlp", "--tiny", "--weights", path, "--out", tmp_path / "runs")
    assert result.exit_code == 6, result.output
    assert "needs full unpickling" in _one_line_error(result)
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_wrong_shapes_exit_3_naming_the_tensor(tmp_path):
    path = tmp_path / "big.pth"
    _save_state(path, 0)  # the full-size mlp's weights into the tiny one
    result = _invoke("export", "mlp", "--tiny", "--weights", path, "--out", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    line = _one_line_error(result)
    assert "do not fit mlp" in line and "features.0.weight: file (64, 20) vs model (8, 20)" in line
    assert not (tmp_path / "runs").exists()


def test_bad_weights_arguments(tmp_path):
    with pytest.raises(UsageError, match="only for torchvision: models"):
        resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path, weights="DEFAULT"))
    with pytest.raises(InputFileError, match="not found"):
        resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path, weights="nope/sd.pth"))
    garbage, text = tmp_path / "junk.pth", tmp_path / "notes.pt"
    garbage.write_bytes(os.urandom(64))
    text.write_text("hello, not a torch file")
    for bad in (garbage, text):
        with pytest.raises(InputFileError, match="not a readable torch file"):
            resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path, weights=bad))
    tensors_only = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], tensors_only)
    with pytest.raises(InputFileError, match="holds no state dict"):
        resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path, weights=tensors_only))
    with pytest.raises(UsageError, match="a checkpoint or run already has its weights"):
        resolve_target(TargetOptions(checkpoint=tmp_path / "ck.json", root=tmp_path, weights=garbage))


def test_verify_a_stray_onnx_against_its_architecture_with_weights(tmp_path):
    right, wrong = tmp_path / "right.pth", tmp_path / "wrong.pth"
    _save_state(right, 7, tiny=True)
    _save_state(wrong, 8, tiny=True)
    made = _invoke("export", "mlp", "--tiny", "--weights", right, "--format", "onnx", "--exporter", "legacy",
                   "--out", tmp_path / "runs", "--json")
    assert made.exit_code == 0, made.output
    stray = tmp_path / "stray.onnx"  # outside any run: without a reference the verifier cannot start
    stray.write_bytes((Path(json.loads(made.stdout)["run"]) / "model.onnx").read_bytes())
    assert _invoke("verify", stray).exit_code == 3
    ok = _invoke("verify", stray, "--weights", right, "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(Path(json.loads(ok.stdout)["report"]).read_text())
    assert report["weights_source"]["sha256"] == sha256_file(right)
    bad = _invoke("verify", stray, "--weights", wrong, "--json")
    assert bad.exit_code == 1 and not json.loads(bad.stdout)["passed"]  # other weights: a real mismatch, caught
    both = _invoke("verify", stray, "--weights", right, "--checkpoint", tmp_path / "ck.json")
    assert both.exit_code == 2 and "not both" in _one_line_error(both)
