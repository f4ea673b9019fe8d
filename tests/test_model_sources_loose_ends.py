"""Models from where users keep them, the loose ends: bench of a run that `dlopt quantize model.onnx` made (by its
directory or a file in it, relative or absolute paths), the quantize failure line naming the check that failed,
--max-length for a text model's length, --trust-pickle on every command with a target, and a Hugging Face model's
labels in report.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn


sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
QUICK_BENCH = ("--batch-sizes", "1", "--iterations", "3", "--warmup", "0", "--json")


from cli_calls import invoke as _invoke  # noqa: E402  (tests/fixtures, on the path via conftest)
from cli_calls import one_error as _error  # noqa: E402


def _cnn_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, opset_version=17)
    return path


# -- bench of a run made from an ONNX file ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory) -> tuple[Path, Path]:
    """(the folder dlopt ran in, the run `dlopt quantize cnn.onnx --out artifacts` made there, relative to it)."""
    work = tmp_path_factory.mktemp("onnx-run")
    _cnn_file(work / "cnn.onnx", 0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # the paths the user typed are relative
        result = _invoke("quantize", "cnn.onnx", "--method", "static", "--backend", "onnxruntime", "--out",
                         "artifacts", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # ORT's pre-processing runs in a work folder: a relative path must still name the user's file
    assert not any("quant_pre_process skipped" in n for n in data["notes"]), data["notes"]
    return work, Path(data["run"]).relative_to(work)


def _rows(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    return {r["variant"]: r for r in json.loads(result.stdout)["rows"]}


def test_bench_a_file_in_the_run_by_a_relative_or_absolute_path(onnx_run, monkeypatch) -> None:
    work, run = onnx_run
    monkeypatch.chdir(work)
    for named in (run / "int8" / "model.onnx", work / run / "int8" / "model.onnx"):
        rows = _rows(_invoke("bench", named, *QUICK_BENCH))
        assert set(rows) == {"onnxruntime:cnn.onnx", "onnxruntime:int8/model.onnx"}, rows
        assert rows["onnxruntime:int8/model.onnx"]["precision"] == "int8"
        assert rows["onnxruntime:cnn.onnx"]["precision"] == "fp32"
        assert all(r["status"] == "ok" for r in rows.values()), rows


def test_a_relative_path_into_any_run_is_the_absolute_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke("export", "mlp", "--tiny", "--format", "onnx", "--no-verify", "--out", "runs", "--json")
    assert result.exit_code == 0, result.output
    rel = Path(json.loads(result.stdout)["artifacts"]["onnx"]).resolve().relative_to(tmp_path)
    rows = _rows(_invoke("bench", rel, *QUICK_BENCH))
    assert rows["onnxruntime:model.onnx"]["status"] == "ok", rows


def test_bench_the_run_times_its_fp32_file_beside_its_int8_file(onnx_run, monkeypatch) -> None:
    work, run = onnx_run
    monkeypatch.chdir(work)
    result = _invoke("bench", run, "--backend", "onnxruntime", *QUICK_BENCH)
    rows = _rows(result)
    assert set(rows) == {"onnxruntime:cnn.onnx", "onnxruntime:int8/model.onnx"}, rows
    assert rows["onnxruntime:cnn.onnx"]["artifact"] == str((work / "cnn.onnx").resolve())
    manifest = json.loads((work / run / "manifest.json").read_text())
    measured = {Path(i["path"]).name for i in manifest["stages"]["bench"]["inputs"]}
    assert measured == {"cnn.onnx", "model.onnx"}  # both files, with their sha256, as the stage's inputs


def test_bench_refuses_the_run_when_its_fp32_file_changed(onnx_run, tmp_path: Path) -> None:
    import shutil

    work, run = onnx_run
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    manifest = json.loads((copy / run / "manifest.json").read_text())
    manifest["model"]["source"] = str(copy / "cnn.onnx")
    (copy / run / "manifest.json").write_text(json.dumps(manifest))
    _cnn_file(copy / "cnn.onnx", 1)  # another model under the recorded name
    before = sorted(p.name for p in (copy / run).iterdir())
    result = _invoke("bench", copy / run, *QUICK_BENCH)
    assert result.exit_code == 3 and "changed since the run" in _error(result)
    assert sorted(p.name for p in (copy / run).iterdir()) == before  # nothing recorded


# -- the quantize failure line ---------------------------------------------------------------------------------

def test_failure_line_names_the_sweep_check_that_failed(tmp_path: Path) -> None:
    """A real agreement sweep that fails (two unrelated models): the line quotes its check, shape and figures,
    not 'outputs not finite'; a task check's figure is the report's own (not the disagreement in percent)."""
    from dlopt.quantize.judge import failure_line
    from dlopt.verify.core import VerifyConfig, verify_artifacts
    from dlopt.verify.criteria import TopOneAgreement
    from dlopt.verify.reference import file_spec, onnx_module

    ref, other = _cnn_file(tmp_path / "ref.onnx", 0), _cnn_file(tmp_path / "other.onnx", 1)
    spec, cfg = file_spec(ref)
    sweep = verify_artifacts(onnx_module(ref), spec, cfg, {"onnx": other},
                             VerifyConfig(criterion=TopOneAgreement(0.95)))["onnx"].to_dict()
    assert not sweep["passed"]
    report = {"verification": {"task": {"agreement": {"criterion": "top-1 agreement >= 0.95", "failure": None}},
                               "shapes": sweep},
              "top1_agreement": 0.97, "relative_error": 0.05, "accuracy_basis": "parity with the fp32 file",
              "search": {"stopped": "an ONNX file's candidates are judged as built"}, "calibration": {}}
    line = failure_line(report)
    where, output, why = sweep["failures"][0]
    assert f"the shape sweep (top-1 agreement >= 0.95) failed at {where}: {output}: {why}" in line, line
    assert "top-1 agreement 0." in why and "< 0.95" in why
    assert "not finite" not in line
    task_failed = {**report, "top1_agreement": 0.918, "verification": {
        "task": {"agreement": {"criterion": "top-1 agreement >= 0.95", "failure": "8.2"}}, "shapes": {"passed": True}}}
    assert failure_line(task_failed).startswith("top-1 agreement >= 0.95 failed: 0.918 (top1 agreement 0.918")


# -- Hugging Face folders: --max-length, --trust-pickle, labels in the report ------------------------------------

@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    from hf_folders import save_folder
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("hf")
    folders = {kind: save_folder(kind, root / kind, scale=5.0) for kind in ("distilbert", "vit")}
    pickled = save_folder("distilbert", root / "pickled", scale=5.0)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    return {**folders, "pickled": pickled}


def test_max_length_sets_the_length_and_the_run_records_it(hf_folders, tmp_path: Path) -> None:
    result = _invoke("export", hf_folders["distilbert"], "--max-length", "12", "--format", "onnx", "--exporter",
                     "legacy", "--no-verify", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["run"])
    assert json.loads((run / "manifest.json").read_text())["model"]["config"]["seq_len"] == 12
    assert json.loads((run / "model.json").read_text())["config"]["seq_len"] == 12
    from dlopt.contract.target import Target
    from dlopt.core.runs import Run
    from dlopt.models.registry import make_inputs

    target = Target.of_run(Run(run))  # a later stage rebuilds at the recorded length
    assert make_inputs(target.spec, target.config, 2)[0].shape == (2, 12)


@pytest.mark.parametrize("target, value, words", [
    ("distilbert", "99", "--max-length (seq_len) 99 is longer than the model's 32 positions; give 32 or less"),
    ("vit", "16", "sets a text model's length; this model takes pixel_values"),
    ("resnet18", "16", "resnet18 takes no --max-length"),
    ("distilbert", "0", "Invalid value for '--max-length'")])
def test_a_bad_max_length_is_one_line(target: str, value: str, words: str, hf_folders, tmp_path: Path) -> None:
    for command in ("export", "quantize", "bench"):
        result = _invoke(command, hf_folders.get(target, target), "--max-length", value, "--out", tmp_path / "out")
        assert result.exit_code == 2, (command, result.output)
        assert words in _error(result), (command, result.output)
        assert not (tmp_path / "out").exists()  # nothing created


def test_trust_pickle_quantizes_and_benches_a_pickled_folder(hf_folders, tmp_path: Path) -> None:
    folder, out = hf_folders["pickled"], tmp_path / "runs"
    for command in ("quantize", "bench"):
        refused = _invoke(command, folder, "--out", out)
        assert refused.exit_code == 6 and "--trust-pickle" in _error(refused), refused.output
        assert not out.exists()
    result = _invoke("quantize", folder, "--trust-pickle", "--method", "dynamic", "--backend", "onnxruntime",
                     "--exporter", "legacy", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["run"])
    assert json.loads((run / "manifest.json").read_text())["model"]["config"]["pickle_weights"] is True
    rows = _rows(_invoke("bench", folder, "--trust-pickle", "--backend", "eager", "--out", out, *QUICK_BENCH))
    assert rows["eager"]["status"] == "ok"
    # the run recorded the trust: its later stages need no flag, and its report names the model's labels
    assert _rows(_invoke("bench", run, "--backend", "eager", *QUICK_BENCH))["eager"]["status"] == "ok"
    report = _invoke("report", run)
    assert report.exit_code == 0, report.output
    assert "Labels (id2label): negative, neutral, positive." in (run / "report.md").read_text()
    assert "Labels (id2label): negative, neutral, positive" in (run / "report.html").read_text()
