"""`dlopt pipeline` and `dlopt report`: a tiny pipeline end to end, resume, config validation, reports."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import ConfigError
from dlopt.core.runs import Run
from dlopt.pipeline import PipelineConfig, apply, load_config, run_pipeline

runner = CliRunner()

FAST = """
stages = ["train", "export", "verify", "bench"]
[train]
epochs = 1
limit = 96
[export]
formats = ["onnx"]
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1, 4]
budget_s = 0.05
threads = 1
"""


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    cfg = apply(PipelineConfig(arch="lenet5"), tomllib.loads(FAST))
    outcome = run_pipeline(cfg, root / "artifacts", show_bars=False)
    assert not outcome.failed, outcome.steps
    return Path(outcome.run_dir)


def test_pipeline_end_to_end_writes_report_with_measured_numbers(fast_run: Path) -> None:
    data = json.loads((fast_run / "report.json").read_text())
    rows = {(r["variant"], r["runtime"]): r for r in data["rows"]}
    assert set(rows) == {("fp32", "eager"), ("fp32", "onnxruntime")}
    train_acc = Run(fast_run).manifest()["stages"]["train"]["metrics"]["test_accuracy"]
    assert rows["fp32", "eager"]["metric"] == pytest.approx(train_acc)  # same split, same metric code
    assert abs(rows["fp32", "onnxruntime"]["metric"] - train_acc) <= 1 / 300  # at most one sample flips
    assert rows["fp32", "onnxruntime"]["parity"].startswith("pass")
    for row in rows.values():
        assert set(map(int, row["latency"])) == {1, 4} and row["parameters"] > 0 and row["macs"] > 0
    html = (fast_run / "report.html").read_text()
    # Self-contained: every image inline, no attribute or stylesheet reaching outside the file. (A bare "http"
    # substring check failed at random: base64 image data can contain those letters.)
    assert "data:image/png;base64," in html
    assert all(src.startswith("data:") for src in re.findall(r'<img[^>]*\ssrc\s*=\s*["\']([^"\']*)', html))
    assert not re.search(r'(?:src|href|action)\s*=\s*["\']?\s*(?:[a-z]+:)?//', html, re.I)
    assert not re.search(r'url\(\s*["\']?\s*(?:[a-z]+:)?//|@import', html, re.I)
    assert "| fp32 | onnxruntime |" in (fast_run / "report.md").read_text()


def test_resume_skips_unchanged_steps_and_reruns_removed_ones(fast_run: Path) -> None:
    cfg = apply(PipelineConfig(arch="lenet5"), tomllib.loads(FAST))
    again = run_pipeline(cfg, fast_run.parent.parent, resume=fast_run, show_bars=False)
    status = {s.name: s.status for s in again.steps}
    assert status["train"] == status["export"] == status["evaluate"] == "skipped"
    (fast_run / "model.onnx").unlink()  # remove the export stage's output
    third = run_pipeline(cfg, fast_run.parent.parent, resume=fast_run, show_bars=False)
    status = {s.name: s for s in third.steps}
    assert status["train"].status == "skipped"
    assert status["export"].status == "ran" and "model.onnx" in status["export"].reason
    assert (fast_run / "model.onnx").is_file()


def test_report_regenerates_from_stored_files_only(fast_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(fast_run, copy)
    for name in ("report.md", "report.html", "report.json"):
        (copy / name).unlink()
    result = runner.invoke(app, ["report", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "report.json").read_text())["rows"] == json.loads((fast_run / "report.json").read_text())["rows"]


def test_runs_lists_headline_numbers(fast_run: Path) -> None:
    result = runner.invoke(app, ["runs", "--out", str(fast_run.parent.parent), "--json"])
    row = json.loads(result.stdout)[0]
    assert row["metric"] == "accuracy" and 0 < row["value"] <= 1
    assert row["fastest"]["speedup_vs_eager"] > 0 and row["report"].endswith("report.html")


@pytest.mark.parametrize("text, message", [
    ("[train]\nepoch = 3\n", "did you mean epochs"),
    ("[train]\nepochs = \"three\"\n", "wrong type"),
    ("stages = [\"train\", \"prun\"]\n", "did you mean prune"),
    ("[bench]\nbudget_s = true\n", "wrong type"),
    ("colour = 1\n", "unknown key"),
    ("[train\nepochs = 1\n", "not valid TOML"),
    ("sets = 3\n", "table of build options"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    result = runner.invoke(app, ["pipeline", "lenet5", "--config", str(path), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and message.split()[0] in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a").exists()  # nothing started


def test_print_config_round_trips(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pipeline", "resnet18", "--print-config", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "p.toml"
    path.write_text(result.output)
    cfg = load_config(path)
    assert cfg.arch == "resnet18" and cfg.train.epochs == 3 and cfg.stages == PipelineConfig().stages


def test_missing_config_and_unknown_arch(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pipeline", "lenet5", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 3 and "not found" in result.output
    result = runner.invoke(app, ["pipeline", "lenet6", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "lenet5" in result.output


def test_unsupported_stage_is_recorded_with_the_spec_reason(tmp_path: Path) -> None:
    from dlopt.models.registry import get_spec

    cfg = apply(PipelineConfig(arch="perceptron"), {"stages": ["train", "prune"], "train": {"epochs": 1}})
    outcome = run_pipeline(cfg, tmp_path, show_bars=False)
    steps = {s.name: s for s in outcome.steps}
    assert steps["train"].status == "ran"
    assert steps["prune"].status == "unsupported" and steps["prune"].reason == get_spec("perceptron").why_not("prune")
    ledger = Run(Path(outcome.run_dir)).manifest()["pipeline"]["steps"]
    assert ledger["prune"]["status"] == "unsupported"


FULL = """
stages = ["train", "prune", "quantize", "export", "verify", "bench"]
[train]
epochs = 2
limit = 256
[prune]
ratio = 0.3
finetune_epochs = 1
data_limit = 256
[quantize]
exporter = "legacy"
calibration_samples = 32
timing_budget_s = 0.05
[export]
formats = ["onnx"]
exporter = "legacy"
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
budget_s = 0.05
threads = 1
"""


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline-full")
    cfg = apply(PipelineConfig(arch="cnn", tiny=True), tomllib.loads(FULL))
    outcome = run_pipeline(cfg, root / "artifacts", show_bars=False)
    assert not outcome.failed, [(s.name, s.status, s.reason) for s in outcome.steps]
    return Path(outcome.run_dir)


def test_full_pipeline_has_every_variant_measured(full_run: Path) -> None:
    data = json.loads((full_run / "report.json").read_text())
    variants = {r["variant"] for r in data["rows"]}
    assert variants == {"fp32", "pruned", "int8", "pruned-int8"}, variants
    assert data["ship"]["rule"] and data["ship"]["variant"] in variants | {None}
    rows = {(r["variant"], r["runtime"]): r for r in data["rows"]}
    assert rows["pruned", "eager"]["parameters"] < rows["fp32", "eager"]["parameters"]  # channels really removed
    assert rows["pruned", "eager"]["macs"] < rows["fp32", "eager"]["macs"]
    for row in data["rows"]:
        assert 0.0 <= row["metric"] <= 1.0 and row["latency"], row
    prune = json.loads((full_run / "pruned" / "prune_report.json").read_text())
    assert prune["params"]["after"] < prune["params"]["before"]
    manifest = Run(full_run).manifest()
    assert {"pruned", "int8", "pruned-int8", "export", "bench"} <= set(manifest["stages"])


def test_full_pipeline_resume_reruns_only_what_was_removed(full_run: Path) -> None:
    cfg = apply(PipelineConfig(arch="cnn", tiny=True), tomllib.loads(FULL))
    shutil.rmtree(full_run / "pruned-int8")
    again = run_pipeline(cfg, full_run.parent.parent, resume=full_run, show_bars=False)
    status = {s.name: s.status for s in again.steps}
    assert not again.failed, again.steps
    assert status["train"] == status["prune"] == "skipped", status
    assert any(name.startswith("quantize") and st == "ran" for name, st in status.items()), status
    assert (full_run / "pruned-int8").is_dir()


def test_full_pipeline_resume_with_a_new_ratio_reprunes_in_place(full_run: Path) -> None:
    before = json.loads((full_run / "pruned" / "prune_report.json").read_text())["params"]["after"]
    cfg = apply(PipelineConfig(arch="cnn", tiny=True), tomllib.loads(FULL.replace("ratio = 0.3", "ratio = 0.5")))
    again = run_pipeline(cfg, full_run.parent.parent, resume=full_run, show_bars=False)
    status = {s.name: s for s in again.steps}
    assert not again.failed, again.steps
    assert status["train"].status == "skipped" and status["prune"].status == "ran"
    assert "config" in status["prune"].reason
    after = json.loads((full_run / "pruned" / "prune_report.json").read_text())["params"]["after"]
    assert after < before
    assert not list(full_run.glob(".pruned*"))  # nothing left aside


def test_verify_an_int8_variant_uses_its_source_and_task_criterion(full_run: Path) -> None:
    top = full_run / "verify-report.json"
    before = top.read_bytes() if top.is_file() else None
    result = runner.invoke(app, ["verify", str(full_run / "pruned-int8" / "model.onnx"), "--json"])
    assert result.exit_code in (0, 1), result.output  # a barely trained tiny model may disagree; it must not crash
    report = json.loads((full_run / "pruned-int8" / "verify-report.json").read_text())
    assert report["artifacts"]["onnx"]["criterion"].startswith("top-1 agreement")  # not fp32's elementwise tolerance
    assert (top.read_bytes() if top.is_file() else None) == before  # the run's own report is left as it was
    manifest = Run(full_run).manifest()
    assert manifest["stages"]["verify-pruned-int8"]["inputs"][0]["path"] == "pruned-int8/model.onnx"


def test_relative_out_root_still_matches_bench_rows_to_variants(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # `--out artifacts`, as make demo does: bench records paths relative to the cwd
    (tmp_path / "p.toml").write_text(FAST)
    result = runner.invoke(app, ["pipeline", "lenet5", "--config", "p.toml", "--out", "artifacts", "--json"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "artifacts" / "lenet5").iterdir())
    data = json.loads((run / "report.json").read_text())
    assert {(r["variant"], r["runtime"]) for r in data["rows"]} == {("fp32", "eager"), ("fp32", "onnxruntime")}
    assert all(r["latency"] and r["metric"] is not None for r in data["rows"])
