"""A bench that measures nothing exits 4 with one line, and (when that is known up front) creates no run (issue 14)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.runs import Run

runner = CliRunner()
FAST = ["--batch-sizes", "1", "--budget-s", "0.05", "--threads", "1", "--exporter", "legacy"]


@pytest.fixture(autouse=True)
def _peak_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLOPT_CACHE_DIR", str(tmp_path / "cache"))  # the measured peak is cached per machine


def _one_line_exit_4(result) -> str:
    assert result.exit_code == 4, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("target", ["mlp", "existing-run"])
def test_device_cuda_without_cuda_exits_4_and_creates_no_run(tmp_path: Path, monkeypatch, target: str) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine as one without CUDA
    monkeypatch.chdir(tmp_path)
    args = ["bench", "mlp", "--tiny", "--out", "artifacts"]
    if target == "existing-run":
        run = Run.create(tmp_path / "runs", "mlp", {"arch": "mlp"})
        before = run.manifest_path.read_bytes()
        args = ["bench", str(run.path)]
    line = _one_line_exit_4(runner.invoke(app, [*args, "--device", "cuda", *FAST]))
    assert "--device cuda" in line and "CUDA is not available" in line and "--device cpu" in line
    assert not (tmp_path / "artifacts").exists()
    if target == "existing-run":
        assert run.manifest_path.read_bytes() == before and not (run.path / "bench.json").exists()


@pytest.mark.parametrize("backend", ["tensorrt", "tensorrt,tensorrt"])
def test_a_backend_unavailable_for_every_row_exits_4_and_creates_no_run(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "artifacts"
    args = ["bench", "mlp", "--tiny", "--backend", backend, "--out", str(out), *FAST]
    line = _one_line_exit_4(runner.invoke(app, args))
    assert "nothing would be measured" in line and "tensorrt: TensorRT runs on CUDA devices only" in line
    assert not out.exists()


def test_one_available_backend_is_enough(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    args = ["bench", "mlp", "--tiny", "--backend", "eager,tensorrt", "--out", str(out), "--json", *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r["status"] for r in json.loads(result.stdout)["rows"]}
    assert rows == {"eager": "ok", "tensorrt": "unavailable"}


def test_rows_that_all_turn_out_unavailable_exit_4_and_write_no_result(tmp_path: Path, monkeypatch) -> None:
    """Known only while measuring (every backend refused at set-up): exit 4, the old bench.json stays."""
    from dlopt.bench import runner as bench_runner
    from dlopt.bench.backends import BackendUnavailable

    out = tmp_path / "artifacts"
    first = runner.invoke(app, ["bench", "mlp", "--tiny", "--backend", "eager", "--out", str(out), "--json", *FAST])
    assert first.exit_code == 0, first.output
    run = Path(json.loads(first.output)["path"]).parent
    old = (run / "bench.json").read_bytes()

    def refuse(*_args, **_kw):
        raise BackendUnavailable("refused here")

    monkeypatch.setattr(bench_runner, "prepare", refuse)
    line = _one_line_exit_4(runner.invoke(app, ["bench", str(run), "--backend", "eager", *FAST]))
    assert "nothing was measured" in line and "eager: refused here" in line
    assert (run / "bench.json").read_bytes() == old
    assert Run(run).manifest()["stages"]["bench"]["status"] == "failed"
    assert len(list(run.glob("bench-*.json"))) == 1  # no new dated copy either
    assert os.listdir(out / "mlp") == [run.name]  # no other run made
