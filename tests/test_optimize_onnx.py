"""`dlopt optimize model.onnx`: an ONNX file made elsewhere as the target of the optimize study. A pick is written
and re-verified against the file, the report says there is no eager baseline, the study resumes without rebuilding,
and a bad file or bad options exit with one line and create no run directory."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn


ARGS = ("--trials", "4", "--threads", "1", "--json")


from cli_calls import invoke as _invoke  # noqa: E402  (tests/fixtures, on the path via conftest)
from cli_calls import one_error as _error  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice: a tiny graph is all this needs
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
                          opset_version=17)
    np.savez(path.parent / "calib.npz", image=np.random.default_rng(0).standard_normal((40, 3, 16, 16), np.float32))
    return path


@pytest.fixture(scope="module")
def study(tiny, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("runs")
    result = _invoke("optimize", tiny, "--inputs", tiny.parent / "calib.npz", "--out", root, *ARGS)
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_pick_is_written_and_verified_against_the_file(study) -> None:
    root, data = study
    run = Path(data["run_dir"])
    assert run.parent == root / "onnx-tiny"  # a new run, as `dlopt quantize model.onnx` makes
    assert data["reached"] and data["verification"]["passed"]
    assert data["pick"]["speedup_vs_eager"] is None and data["pick"]["baseline_reference"] == "fp32 onnxruntime"
    assert all((run / f).is_file() for f in data["shipped"]) and (run / "optimized" / "optimize_report.json").is_file()
    assert "vs fp32 eager: n/a (an ONNX file: no PyTorch model)" in data["notes"]
    assert "held-out rows" in data["basis"]  # judged on rows calibration never saw
    assert data["space"]["left_out"]["pruning"] == "pruning needs the PyTorch model"
    assert {t["candidate"]["ratio"] for t in data["trials"]} == {0.0}
    assert data["trials"][0]["label"].startswith("unpruned · fp32 · onnxruntime")  # the file itself is tried first
    result = _invoke("report", run)
    assert result.exit_code == 0, result.output
    assert "vs fp32 eager: n/a (an ONNX file: no PyTorch model)" in (run / "report.md").read_text()


def test_resume_keeps_the_trials_and_the_builds(study, tiny) -> None:
    root, first = study
    run = Path(first["run_dir"])
    stale = run / "optimize" / "cache" / ".building-999999-x"  # what a killed build leaves: never used, removed
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    result = _invoke("optimize", "--resume", run, "--trials", "6", "--json", "--out", root)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_dir"] == first["run_dir"] and data["study"]["complete"] == 6
    assert [t["p50_ms"] for t in data["trials"][:4]] == [t["p50_ms"] for t in first["trials"]]
    built_before = {t["artifact"] for t in first["trials"]}
    assert sum(data["builds"].values()) <= len({t["artifact"] for t in data["trials"]} - built_before)
    assert not stale.exists()


def test_a_build_stopped_midway_leaves_no_file_under_its_final_name(tiny, tmp_path, monkeypatch) -> None:
    from dlopt.optimize import onnx_cache
    from dlopt.optimize.config import OptimizeConfig, Precision, Runtime

    def half(source: Path, dest: Path) -> Path:
        dest.write_bytes(b"half a model")
        raise KeyboardInterrupt

    cache = onnx_cache.FileCache(tmp_path, tiny, OptimizeConfig(), [], "none")
    monkeypatch.setattr(onnx_cache, "_copy", half)
    with pytest.raises(KeyboardInterrupt):
        cache.artifact(cache.base(), Precision.FP32, Runtime.ONNXRUNTIME)
    assert not [p for p in cache.root.rglob("*.onnx")]
    monkeypatch.undo()
    art = cache.artifact(cache.base(), Precision.FP32, Runtime.ONNXRUNTIME)
    assert art.path.parent.parent == cache.root and onnx.load(str(art.path)).graph.node


def test_random_inputs_are_labelled(tiny) -> None:
    from dlopt.optimize.config import OptimizeConfig
    from dlopt.optimize.onnx_source import prepare

    prep = prepare(tiny, OptimizeConfig(trials=1))
    assert "random valid inputs" in prep.basis and prep.cfg.prune_ratios == (0.0,)


def _outside(tiny: Path, tmp_path: Path) -> Path:
    from hostile_onnx import external_data_outside

    return external_data_outside(tiny, tmp_path)


@pytest.mark.parametrize("case, code, words", [
    ("two goals", 2, "are two goals"),
    ("outside", 3, "outside the model's folder"),
    ("not onnx", 3, "is not a valid ONNX file"),
    ("runtime not here", 2, "--runtimes openvino: it cannot run here"),
])
def test_bad_input_is_one_line_and_makes_nothing(case, code, words, tiny, tmp_path, monkeypatch) -> None:
    path, extra = tiny, []
    if case == "two goals":
        extra = ["--target-latency", "1", "--max-size", "1"]
    elif case == "outside":
        path = _outside(tiny, tmp_path)
    elif case == "not onnx":
        path = tmp_path / "fake.onnx"
        path.write_bytes(os.urandom(64))
    else:
        monkeypatch.setattr("dlopt.optimize.space.installed", lambda module: module != "openvino")
        extra = ["--runtimes", "openvino"]
    out = tmp_path / "runs"
    result = _invoke("optimize", path, *extra, "--out", out, *ARGS)
    assert result.exit_code == code, result.output
    assert words in _error(result)
    assert not out.exists()
