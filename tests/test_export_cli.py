"""`dlopt export` / `dlopt verify` through the CLI: success paths, bad input, one line, exit codes, no leftovers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import UnsupportedError
from dlopt.export import supported_formats
from dlopt.models.registry import get_spec
from dlopt.models.spec import ExportFormat

runner = CliRunner()
FAST = ["--tiny", "--exporter", "legacy"]


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error")]
    assert len(lines) == 1, result.output
    return lines[0]


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*.tmp")], list(root.rglob("*.tmp"))


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    result = _invoke("export", "mlp", *FAST, "--out", root, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["artifacts"]) == {"onnx", "torchscript", "pt2"}
    return Path(data["run"])


def test_export_writes_artifacts_report_and_manifest(mlp_run):
    manifest = json.loads((mlp_run / "manifest.json").read_text())
    stage = manifest["stages"]["export"]
    assert stage["status"] == "done"
    recorded = {Path(o["path"]).name for o in stage["outputs"]}
    assert {"model.onnx", "model.ts", "model.pt2", "verify-report.json"} <= recorded
    report = json.loads((mlp_run / "verify-report.json").read_text())
    assert report["passed"] and set(report["artifacts"]) == {"onnx", "torchscript", "pt2"}
    assert stage["metrics"]["onnx"]["details"]["exporter"] == "legacy"
    meta = {p.key: p.value for p in onnx.load(str(mlp_run / "model.onnx")).metadata_props}
    assert meta["checkpoint_sha256"] == json.loads((mlp_run / "model.json").read_text())["sha256"]
    _no_temp_files(mlp_run)


def test_verify_run_dir_and_single_artifact(mlp_run):
    result = _invoke("verify", mlp_run, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] and set(data["artifacts"]) == {"onnx", "torchscript", "pt2"}
    result = _invoke("verify", mlp_run / "model.ts")  # recorded in the manifest: trusted without a flag
    assert result.exit_code == 0, result.output
    assert "pass" in result.output


def test_export_latest_run_without_name(mlp_run):
    result = _invoke("export", "--out", mlp_run.parent.parent, "--format", "onnx", "--exporter", "legacy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"] == str(mlp_run)


def test_verify_fails_a_perturbed_artifact_with_exit_1(mlp_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    proto = onnx.load(str(run / "model.onnx"))
    for init in proto.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    onnx.save(proto, str(run / "model.onnx"))
    result = _invoke("verify", run / "model.onnx")
    assert result.exit_code == 1
    assert "check(s) failed in onnx" in _one_line_error(result)
    report = json.loads((run / "verify-report.json").read_text())
    assert not report["passed"] and report["artifacts"]["onnx"]["failures"]


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--format", "onnx,tflite"], 2, "unknown export format 'tflite'"),
    (["--opset", "5"], 2, "produces opsets"),
    (["--exporter", "dynamo", "--opset", "12"], 2, "--exporter legacy"),
    (["--batch-size", "1"], 2, "at least 2"),
])
def test_export_bad_options(args, code, words, tmp_path):
    result = _invoke("export", "mlp", "--tiny", "--out", tmp_path, *args)
    assert result.exit_code == code, result.output
    assert words in _one_line_error(result)
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_checkpoint_of_another_architecture(mlp_run, tmp_path):
    result = _invoke("export", "lenet5", "--checkpoint", mlp_run / "model.json", "--out", tmp_path)
    assert result.exit_code == 3
    assert "checkpoint is for mlp, not lenet5" in _one_line_error(result)


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _invoke("export", "mlp", *FAST, "--out", blocker / "sub")
    assert result.exit_code == 5
    assert "--out" in _one_line_error(result)


@pytest.mark.parametrize(("name", "content", "code", "words"), [
    ("broken.onnx", b"\x08\x07garbage that is not protobuf" * 3, 3, "not a valid ONNX file"),
    ("notes.txt", b"hello", 2, "not an export artifact"),
    ("broken.ts", b"not a zip", 3, "not a loadable TorchScript archive"),
])
def test_verify_corrupt_or_foreign_files(name, content, code, words, mlp_run, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    result = _invoke("verify", path, "--checkpoint", mlp_run / "model.json")
    assert result.exit_code == code, result.output
    assert words in _one_line_error(result)


def test_verify_refuses_an_unrecorded_torchscript_archive(mlp_run, tmp_path):
    foreign = tmp_path / "model.ts"
    shutil.copy(mlp_run / "model.ts", foreign)
    ck = mlp_run / "model.json"
    refused = _invoke("verify", foreign, "--checkpoint", ck)
    assert refused.exit_code == 6 and "--trust-pickle" in _one_line_error(refused)
    trusted = _invoke("verify", foreign, "--checkpoint", ck, "--trust-pickle")
    assert trusted.exit_code == 0, trusted.output
    assert (tmp_path / "model.verify.json").is_file()


def test_verify_needs_a_reference_outside_a_run(mlp_run, tmp_path):
    lone = tmp_path / "model.onnx"
    shutil.copy(mlp_run / "model.onnx", lone)
    result = _invoke("verify", lone)
    assert result.exit_code == 3 and "--checkpoint" in _one_line_error(result)


def test_unsupported_format_is_refused_with_the_specs_reason():
    spec = replace(get_spec("mlp"), formats=frozenset({ExportFormat.ONNX}), limits={"pt2": "measured: it cannot"})
    with pytest.raises(UnsupportedError, match="measured: it cannot"):
        supported_formats(spec, (ExportFormat.PT2,), strict=True)
    keep, notes = supported_formats(spec, tuple(ExportFormat), strict=False)
    assert keep == [ExportFormat.ONNX] and any("pt2 skipped: measured" in n for n in notes)


def test_cli_refuses_a_format_the_spec_rules_out(monkeypatch, tmp_path):
    import dlopt.models.registry as registry

    limited = replace(get_spec("mlp"), formats=frozenset({ExportFormat.ONNX}),
                      limits={"torchscript": "measured: tracing loses it"})
    monkeypatch.setitem(registry._REGISTRY, "mlp", limited)
    result = _invoke("export", "mlp", "--tiny", "--format", "ts", "--out", tmp_path)
    assert result.exit_code == 4
    assert "cannot be exported to torchscript: measured: tracing loses it" in _one_line_error(result)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before a run directory was made


def test_cli_module_does_not_import_torch():
    code = "import sys, dlopt.cli.app; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_export_a_user_model_file(tmp_path):
    src = tmp_path / "mine.py"
    src.write_text("import torch\n\n\ndef build():\n"
                   "    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh())\n")
    result = _invoke("export", f"{src}:build", "--input-shape", "6", "--exporter", "legacy", "--out", tmp_path / "a",
                     "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(r["passed"] for r in data["verification"].values()) and len(data["verification"]) == 3
