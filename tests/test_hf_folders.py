"""Hugging Face model folders as targets: folders saved from small configs (no download) through export (ONNX, .pt2,
OpenVINO) + verify, int8 and bench without --input-shape; runs rebuilt from the folder and refused when it changed;
bad folders refused with one line, the documented exit code, and nothing created."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from hf_folders import KINDS, save_folder

pytest.importorskip("transformers")


from cli_calls import invoke as _invoke  # noqa: E402  (tests/fixtures, on the path via conftest)
from cli_calls import one_error as _error  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: save_folder(kind, root / kind, scale=5.0) for kind in (*KINDS, "t5")}


@pytest.mark.parametrize("kind", KINDS)
def test_export_verify_int8_bench(kind: str, folders: dict[str, Path], tmp_path: Path) -> None:
    """No --input-shape anywhere: the inputs come from config.json."""
    out = tmp_path / "runs"
    result = _invoke("export", folders[kind], "--format", "onnx,pt2,openvino", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["artifacts"]) == {"onnx", "pt2", "openvino"}
    assert all(v["passed"] for v in data["verification"].values()), data["verification"]
    run = Path(data["run"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["weights_source"]["kind"] == "hf-folder"  # the folder's weights, not random ones
    result = _invoke("quantize", run, "--method", "dynamic", "--backend", "onnxruntime", "--json")
    assert result.exit_code == 0, result.output
    quant = json.loads(result.stdout)
    assert quant["verified"] and quant["layers_int8"] > 0
    result = _invoke("bench", run, "--backend", "onnxruntime", "--batch-sizes", "1", "--iterations", "5",
                     "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert any(r.get("median_ms") or (r.get("stats") or {}).get("median_ms") for r in rows), rows


def test_t5_encoder_exports_with_the_legacy_exporter(folders: dict[str, Path], tmp_path: Path) -> None:
    """T5 is deployed as its encoder; torch's dynamo ONNX exporter fails on its attention reshape (a torch limit)."""
    result = _invoke("export", folders["t5"], "--format", "onnx", "--exporter", "legacy", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verification"]["onnx"]["passed"]
    assert "last_hidden_state" in data["verification"]["onnx"]["outputs"]


def test_inputs_and_labels_from_the_config(folders: dict[str, Path]) -> None:
    info = json.loads(_invoke("info", f"hf:{folders['distilbert']}", "--json").stdout)
    assert [(i["name"], i["dtype"]) for i in info["inputs"]] == [("input_ids", "int64"), ("attention_mask", "int64")]
    assert info["inputs"][0]["shape"] == [1, 32]  # max_position_embeddings 32 (under the 128 cap)
    assert info["config"]["labels"] == "negative, neutral, positive" and "positive" in info["summary"]
    assert info["config"]["vocab_size"] == 120
    vit = json.loads(_invoke("info", folders["vit"], "--json").stdout)
    assert vit["inputs"][0]["shape"] == [1, 3, 32, 32] and vit["outputs"][0]["shape"] == [1, 4]
    whisper = json.loads(_invoke("info", folders["whisper"], "--json").stdout)
    assert whisper["inputs"][0]["name"] == "input_features" and whisper["inputs"][0]["shape"] == [1, 16, 64]
    assert "encoder" in whisper["summary"]
    fixed = json.loads(_invoke("info", folders["gpt2"], "--input-shape", "8", "--json").stdout)
    assert fixed["inputs"][0]["shape"] == [1, 8] and fixed["outputs"][0]["shape"] == [1, 8, 120]
    capped = json.loads(_invoke("info", folders["bert"], "--set", "seq_len=12", "--json").stdout)
    assert capped["inputs"][1]["shape"] == [1, 12]


def test_run_is_rebuilt_from_the_folder_and_refused_when_it_changed(tmp_path: Path) -> None:
    folder = save_folder("distilbert", tmp_path / "model", scale=5.0)
    result = _invoke("export", folder, "--format", "onnx", "--exporter", "legacy", "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["run"])
    record = json.loads((run / "model.json").read_text())
    assert record["arch"] == f"hf:{folder.resolve()}" and len(record["config"]["config_sha256"]) == 64
    assert _invoke("verify", run).exit_code == 0  # the reference model rebuilt from the folder + the run's weights
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"n_heads": 2', '"n_heads": 2, "seq_classif_dropout": 0.3'))
    result = _invoke("verify", run)
    assert result.exit_code == 3, result.output
    assert "changed since the run recorded it" in _error(result)


@pytest.mark.parametrize("case", ["no_config", "unknown_arch", "bin_only", "auto_map"])
def test_bad_folders(case: str, tmp_path: Path, folders: dict[str, Path]) -> None:
    folder = tmp_path / "model"
    if case == "no_config":
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        want, words = 3, "neither a dlopt run"
    else:
        save_folder("distilbert", folder)
        config = json.loads((folder / "config.json").read_text())
        if case == "unknown_arch":
            config["architectures"] = ["DistilBertForTeleportation"]
            want, words = 4, "no architecture 'DistilBertForTeleportation'"
        elif case == "auto_map":
            config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
            want, words = 4, "never runs a model folder's code"
        else:
            import torch
            from safetensors.torch import load_file

            torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
            (folder / "model.safetensors").unlink()
            want, words = 6, "only pickled weights"
        (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "runs"
    result = _invoke("export", folder, "--format", "onnx", "--out", out)
    assert result.exit_code == want, result.output
    assert words in _error(result)
    assert not out.exists()  # nothing created
    if case == "bin_only":  # trusted: read with torch.load(weights_only=True), and the run says whose weights
        result = _invoke("export", folder, "--format", "onnx", "--exporter", "legacy", "--trust-pickle", "--out", out,
                         "--json")
        assert result.exit_code == 0, result.output


def test_without_transformers_one_line_names_the_extra(folders: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from dlopt.models import hf

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    hf._spec.cache_clear()
    result = _invoke("export", folders["distilbert"], "--out", tmp_path / "runs")
    assert result.exit_code == 7, result.output
    assert "pip install 'dlopt[hf]'" in _error(result)
    assert not (tmp_path / "runs").exists()
