"""`dlopt bench` end to end on tiny models: JSON schema, CSV/plot, --compare, missing backends, targets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlopt.bench.config import Backend, BenchConfig, Device
from dlopt.bench.report import CSV_COLUMNS, load_result, schema_errors
from dlopt.bench.runner import RESULT_FILE, SCHEMA, bench
from dlopt.cli.app import app
from dlopt.contract.target import TargetOptions
from dlopt.core.errors import InputFileError
from dlopt.models.registry import list_specs

runner = CliRunner()
FAST = BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1,), budget_s=0.05, min_calls=5, warmup_calls=1, threads=1)


@pytest.fixture(scope="module", autouse=True)
def _peak_cache(tmp_path_factory):
    """The measured matmul peak is cached per machine; tests keep theirs out of ~/.cache."""
    old = os.environ.get("DLOPT_CACHE_DIR")
    os.environ["DLOPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    os.environ.pop("DLOPT_CACHE_DIR") if old is None else os.environ.__setitem__("DLOPT_CACHE_DIR", old)


@pytest.fixture(scope="module")
def mlp_json(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("runs")
    res = runner.invoke(app, ["bench", "mlp", "--tiny", "--backend", "eager,torchscript,onnxruntime,tensorrt",
                              "--batch-size", "1,4", "--budget-s", "0.3", "--threads", "1", "--exporter", "legacy",
                              "--out", str(root), "--json", "--csv", str(root / "r.csv"), "--plot", str(root / "r.png")])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), root


def test_json_schema_and_rows(mlp_json):
    data, _ = mlp_json
    assert schema_errors(data) == [] and data["schema"] == SCHEMA
    assert data["threads"] == 1 and len(data["loadavg"]["start"]) == 3
    assert data["environment"]["cpu"]["cores"] == os.cpu_count()
    assert data["peak"]["fp32_gflops"] > 0
    rows = {(r["variant"], r["batch_size"]): r for r in data["rows"]}
    assert set(rows) == {(v, b) for v in ("eager", "torchscript", "onnxruntime", "tensorrt") for b in (1, 4)}
    for b in (1, 4):
        eager, ort = rows[("eager", b)], rows[("onnxruntime", b)]
        assert eager["status"] == ort["status"] == rows[("torchscript", b)]["status"] == "ok"
        assert eager["speedup_vs_eager"] == 1.0
        assert ort["speedup_vs_eager"] == pytest.approx(eager["stats"]["median_ms"] / ort["stats"]["median_ms"], rel=1e-2)
        s = eager["stats"]
        assert s["min_ms"] <= s["median_ms"] <= s["p90_ms"] <= s["p99_ms"] and s["n"] >= 10
        assert eager["stop"] in ("converged", "budget")
        assert eager["throughput_per_s"] == pytest.approx(b * 1e3 / s["median_ms"], rel=1e-3)
        assert eager["flops"] > 0 and eager["gflops"] > 0 and eager["pct_peak"] is not None
        assert not Path(ort["artifact"]).is_absolute()  # relative to the run (issue 14); --json's "run" is absolute
        assert ort["model_bytes"] == (Path(data["run"]) / ort["artifact"]).stat().st_size
        assert rows[("tensorrt", b)]["status"] == "unavailable"
        assert "CUDA devices only" in rows[("tensorrt", b)]["reason"]
    assert rows[("eager", 4)]["flops"] == 4 * rows[("eager", 1)]["flops"]


def test_result_recorded_in_run(mlp_json):
    data, _ = mlp_json
    run = Path(data["run"])
    assert load_result(run / RESULT_FILE)["rows"] == data["rows"]
    manifest = json.loads((run / "manifest.json").read_text())
    stage = manifest["stages"]["bench"]
    assert stage["status"] == "done" and stage["metrics"]["eager@b1"] == rows_median(data, "eager", 1)
    assert any(o["path"] == RESULT_FILE for o in stage["outputs"])


def rows_median(data: dict, variant: str, batch: int) -> float:
    return next(r["stats"]["median_ms"] for r in data["rows"] if r["variant"] == variant and r["batch_size"] == batch)


def test_csv_and_plot_written(mlp_json):
    data, root = mlp_json
    lines = (root / "r.csv").read_text().splitlines()
    assert lines[0].split(",") == [*CSV_COLUMNS, "p50_ms", "p90_ms", "p99_ms"]  # then one per --percentiles
    assert len(lines) == 1 + len(data["rows"])
    assert (root / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _doctored(data: dict, factor: float, path: Path) -> Path:
    old = json.loads(json.dumps(data))
    for r in old["rows"]:
        if r.get("stats"):
            r["stats"] = {**r["stats"], "median_ms": r["stats"]["median_ms"] * factor, "iqr_ms": 0.0}
    path.write_text(json.dumps(old))
    return path


def test_compare_and_fail_on_regression(mlp_json, tmp_path):
    data, _ = mlp_json
    args = ["bench", data["run"], "--backend", "eager", "--batch-size", "1", "--budget-s", "0.1", "--threads", "1"]
    fast_old = _doctored(data, 0.01, tmp_path / "fast.json")  # "old" was 100x faster: now a regression
    res = runner.invoke(app, [*args, "--compare", str(fast_old), "--fail-on-regression", "5"])
    assert res.exit_code == 1, res.output
    assert "regression" in res.output and "beyond 5%" in res.output
    slow_old = _doctored(data, 100.0, tmp_path / "slow.json")
    res = runner.invoke(app, [*args, "--compare", str(slow_old), "--fail-on-regression", "5", "--json"])
    assert res.exit_code == 0, res.output
    deltas = json.loads(res.stdout)["compare"]
    assert [d["verdict"] for d in deltas] == ["faster"] and deltas[0]["delta_pct"] < -90


def test_compare_rejects_non_result(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"rows": []}))
    res = runner.invoke(app, ["bench", "mlp", "--tiny", "--compare", str(bad)])
    assert res.exit_code == 3 and "not a dlopt bench result" in res.output
    with pytest.raises(InputFileError):
        load_result(tmp_path / "missing.json")


def test_fail_on_regression_needs_compare():
    res = runner.invoke(app, ["bench", "mlp", "--tiny", "--fail-on-regression", "5"])
    assert res.exit_code == 2 and "needs --compare" in res.output


def test_bad_backend_names_choices():
    res = runner.invoke(app, ["bench", "mlp", "--tiny", "--backend", "tensorflow"])
    assert res.exit_code == 2 and "choose from eager, torchscript" in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_missing_is_one_line_and_exit_4(tmp_path):
    """Nothing can be measured, so nothing is made (tests/test_nothing_measured.py has the rest)."""
    res = runner.invoke(app, ["bench", "mlp", "--tiny", "--device", "cuda", "--backend", "eager,onnxruntime",
                              "--batch-size", "1", "--out", str(tmp_path), "--exporter", "legacy"])
    assert res.exit_code == 4, res.output
    assert "CUDA is not available here" in res.output and not list(tmp_path.iterdir())


def test_latest_run_benches_its_artifacts(mlp_json):
    """No TARGET: the latest run, with the .onnx found in it (made by the first bench)."""
    data, root = mlp_json
    out = bench(TargetOptions(root=root), BenchConfig(backends=(Backend.EAGER, Backend.ONNXRUNTIME), batch_sizes=(2,),
                                                      budget_s=0.05, min_calls=5, threads=1))
    names = {r["variant"]: r for r in out.result["rows"]}
    assert str(out.run_dir) == data["run"] and set(names) == {"eager", "onnxruntime"}
    assert all(r["status"] == "ok" for r in names.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_stray_onnx_artifact(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(2, 6),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    out = bench(TargetOptions(name=str(path), root=tmp_path / "runs"), FAST)
    (row,) = out.result["rows"]
    assert row["variant"] == "onnxruntime:net.onnx" and row["status"] == "ok" and row["flops"] is None
    assert out.report_path.is_file() and out.result["arch"] is None


def test_stray_torchscript_is_refused(tmp_path):
    path = tmp_path / "m.ts"
    path.write_bytes(b"not really")
    with pytest.raises(InputFileError, match="not a loadable TorchScript archive"):  # trust check first (exit 6 if real)
        bench(TargetOptions(name=str(path), root=tmp_path), FAST)


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_every_zoo_model_benches_eager(spec, tmp_path):
    out = bench(TargetOptions(name=spec.name, tiny=True, root=tmp_path), FAST)
    (row,) = out.result["rows"]
    assert row["status"] == "ok", row.get("reason")
    assert row["stats"]["n"] >= 5 and row["stats"]["median_ms"] > 0
    assert (row["seq_len"] is not None) == spec.takes_sequences
    assert row["flops"] and row["flops"] > 0
    assert schema_errors(out.result) == []
    assert out.result["device"] == Device.CPU.value
