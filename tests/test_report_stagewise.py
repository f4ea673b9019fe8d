"""`dlopt report` on a run built stage by stage (train, prune, quantize, export, bench; no pipeline ledger), the
ship decision (file, runtime, settings, speed-up, drop, noise; noisy rows left out with the reason), typed result
records, and bad result files named and skipped."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.fileio import sha256_file
from dlopt.core.results import BenchResult, QuantizeReport, ResultError, TrainResult
from dlopt.core.runs import Run

runner = CliRunner()


def _ok(*args: object) -> Any:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """lenet5 trained, pruned, quantized, exported (ONNX and OpenVINO IR) and benchmarked, one command each."""
    root = tmp_path_factory.mktemp("stagewise")
    _ok("train", "lenet5", "--tiny", "--epochs", "1", "--out", root)
    run = next((root / "lenet5").iterdir())
    _ok("prune", run, "--finetune-epochs", "0")
    _ok("quantize", run, "--method", "dynamic")
    _ok("export", run, "--format", "onnx,openvino")
    _ok("bench", run, "--budget-s", "0.2", "--batch-size", "1", "--backend", "eager,onnxruntime,openvino",
        "--threads", "1")
    return run


@pytest.fixture
def run(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "run"))


def _rewrite(run: Path, rel: str, text: str) -> None:
    """Replace a result file as if its stage had written it (the manifest's sha256 follows), so only the
    content is wrong, not the trust rule's view of it."""
    (run / rel).write_text(text)
    sha, size = sha256_file(run / rel), (run / rel).stat().st_size

    def change(m: dict[str, Any]) -> None:
        for rec in m["stages"].values():
            for o in rec.get("outputs", []):
                if o["path"] == rel:
                    o.update(sha256=sha, bytes=size)

    Run(run).update(change)


def _set_noise(run: Path, iqr: dict[str, float], flag: bool = True) -> None:
    """bench.json with each row's IQR/median set (by its `variant` name, default 5%), flagged as bench does."""
    bench = json.loads((run / "bench.json").read_text())
    for row in bench["rows"]:
        if row.get("stats"):
            row["stats"]["iqr_ratio"] = iqr.get(row["variant"], 0.05)
            row.pop("noise_reason", None)
            row["noisy"] = flag and row["stats"]["iqr_ratio"] > 0.5
            if row["noisy"]:
                row["noise_reason"] = f"IQR {100 * row['stats']['iqr_ratio']:.0f}% of the median (over 50%)"
    _rewrite(run, "bench.json", json.dumps(bench))


def _relative(path: str, root: str) -> str:
    return str(Path(path).relative_to(root)) if Path(path).is_absolute() else path


def _report(run: Path) -> tuple[dict[str, Any], str, Any]:
    res = _ok("report", run)
    return json.loads((run / "report.json").read_text()), (run / "report.md").read_text(), res


def test_stage_by_stage_run_reports_metric_steps_and_a_ship_pick(run: Path) -> None:
    _set_noise(run, {})
    data, md, _ = _report(run)
    train = json.loads((run / "train_result.json").read_text())
    rows = {(r["variant"], r["runtime"]): r for r in data["rows"]}
    assert data["metric"] == "accuracy" and "test None" not in md and "test accuracy" in md
    assert rows["fp32", "eager"]["metric"] == pytest.approx(train["test"]["accuracy"])
    assert rows["fp32", "openvino"]["path"] == "model.xml"  # the IR is a row of its own runtime
    assert rows["int8", "onnxruntime"]["metric_source"] == "int8/quantize_report.json"
    assert {"train", "pruned", "int8", "export", "bench"} <= {s["step"] for s in data["steps"]}
    assert "| train | done |" in md
    pick = data["ship"]["pick"]
    assert pick and (run / pick["file"]).is_file() and pick["file"] == rows[pick["variant"], pick["runtime"]]["path"]
    assert all((run / f).is_file() for f in pick["with"])  # what ships with it (an IR's .bin, a record's tensors)
    if pick["file"].endswith((".xml", ".json")):
        assert pick["with"], pick
    assert pick["threads"] == 1 and pick["batch"] == 1 and pick["speedup"] > 0 and pick["iqr_pct"] == pytest.approx(5)
    assert isinstance(pick["drop"], float) and pick["drop_unit"] == "points"  # a number in report.json
    extra = f" (+ {', '.join(pick['with'])})" if pick["with"] else ""
    assert f"**Ship:** {pick['file']}{extra} on {pick['runtime']} (1 thread, batch 1)" in md
    assert re.search(r"load average \d+\.\d\d, \d+\.\d\d, \d+\.\d\d -> ", md)


@pytest.mark.parametrize("flagged", [True, False], ids=["bench-flagged", "iqr-only"])  # older bench.json: no flag
def test_a_noisy_row_is_marked_and_left_out_of_the_ship_pick_with_the_reason(run: Path, flagged: bool) -> None:
    _set_noise(run, {})
    first = _report(run)[0]["ship"]["pick"]
    bench = json.loads((run / "bench.json").read_text())
    rel = {r["variant"]: _relative(r["artifact"], bench["run"]) if r.get("artifact") else "model.json"
           for r in bench["rows"] if r["variant"] == "eager" or r.get("artifact")}
    noisy_name = next(name for name, path in rel.items() if path == first["file"])
    _set_noise(run, {noisy_name: 0.9}, flagged)
    data, md, _ = _report(run)
    assert data["ship"]["pick"] is None or data["ship"]["pick"]["label"] != first["label"]
    reasons = {x["label"]: x["reason"] for x in data["ship"]["excluded"]}
    assert "too noisy" in reasons[first["label"]] and "IQR 90%" in reasons[first["label"]]
    assert "90% noisy" in md and f"not shipped: {first['label']}: timing too noisy" in md


@pytest.mark.parametrize("content, why", [
    ('{"arch": "lenet5", "metric_after": "high"}', "metric_after: expected float"),
    ('{"arch": "lenet5", "metric_af', "not valid JSON"),
    ('[1, 2]', "expected an object"),
])
def test_a_malformed_quantize_report_is_named_and_skipped(run: Path, content: str, why: str) -> None:
    _set_noise(run, {})
    _rewrite(run, "int8/quantize_report.json", content)
    data, md, res = _report(run)
    skipped = {s["path"]: s["reason"] for s in data["skipped"]}
    assert why in skipped["int8/quantize_report.json"]
    assert "int8/quantize_report.json" in res.output and "Traceback" not in res.output
    int8 = next(r for r in data["rows"] if r["variant"] == "int8")
    assert int8["metric"] is None and int8["parity"] == ""  # nothing from the bad file is used
    assert "skipped int8/quantize_report.json" in md


def test_the_html_report_is_self_contained(run: Path) -> None:
    _report(run)
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert all(src.startswith("data:") for src in re.findall(r'<img[^>]*\ssrc\s*=\s*["\']([^"\']*)', html))
    assert not re.search(r'(?:src|href|action)\s*=\s*["\']?\s*(?:[a-z]+:)?//', html, re.I)
    assert not re.search(r'url\(\s*["\']?\s*(?:[a-z]+:)?//|@import', html, re.I)


def test_pareto_plot_draws_the_budget_and_keeps_int8_visible(run: Path, monkeypatch) -> None:
    import matplotlib.axes

    from dlopt.report.plots import marker_style

    drawn: list[float] = []
    real = matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda self, y=0, *a, **k: (drawn.append(y), real(
        self, y, *a, **k))[1])
    _set_noise(run, {})
    data = _report(run)[0]
    assert data["ship"]["budget"]["floor"] == pytest.approx(data["ship"]["budget"]["base"] - 0.01)
    assert drawn == [pytest.approx(1.0)]  # the budget, as a drop in points against fp32 eager
    fp32, int8 = (marker_style({"variant": v, "runtime": "onnxruntime", "pareto": False}) for v in ("fp32", "int8"))
    assert int8["s"] < fp32["s"] and int8["zorder"] > fp32["zorder"] and fp32["alpha"] < 1


def test_records_check_types_and_tolerate_missing_optional_fields() -> None:
    q = QuantizeReport.from_json({"arch": "a", "metric_after": 1, "unknown": [1]})
    assert q.metric_after == 1.0 and q.top1_agreement is None
    assert QuantizeReport.from_json(q.to_json()) == q
    with pytest.raises(ResultError, match=r"rows\[0\]\.stats\.median_ms: expected float, got str"):
        BenchResult.from_json({"rows": [{"variant": "e", "backend": "e", "batch_size": 1, "status": "ok",
                                         "stats": {"median_ms": "fast"}}]})
    with pytest.raises(ResultError, match="arch: missing"):
        TrainResult.from_json({"metric": "accuracy"})
    with pytest.raises(ResultError, match="batch_size: expected int, got bool"):
        BenchResult.from_json({"rows": [{"variant": "e", "backend": "e", "batch_size": True, "status": "ok"}]})


@pytest.fixture
def request_cleanup():
    made: list[Path] = []
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def test_runs_shows_stages_and_report_at_120_columns_and_the_full_path_at_80(run: Path, request_cleanup) -> None:
    import tempfile

    _report(run)
    # runs looks for <root>/<arch>/<run-id>; a short root, as `/home/me/artifacts` would be (pytest's is ~90 chars)
    out = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    request_cleanup.append(out)
    shutil.copytree(run, out / "lenet5" / run.name)
    wide = runner.invoke(app, ["runs", "--out", str(out)], env={"COLUMNS": "120"})
    narrow = runner.invoke(app, ["runs", "--out", str(out)], env={"COLUMNS": "80"})
    assert wide.exit_code == narrow.exit_code == 0, wide.output
    table = wide.stdout
    assert "report.html" in table and "bench" in table and "stages" in table
    assert str(out / "lenet5" / run.name) in narrow.stdout  # the whole path, not cut


def test_a_malformed_bench_json_is_one_line_naming_it(run: Path) -> None:
    _rewrite(run, "bench.json", '{"rows": [{"variant": "eager", "backend": "eager", "batch_size": "one"}]}')
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 3 and "Traceback" not in res.output
    assert "bench.json" in res.output and "batch_size: expected int" in res.output


def test_a_malformed_train_result_falls_back_to_the_manifest_and_is_named(run: Path) -> None:
    _set_noise(run, {})
    _rewrite(run, "train_result.json", '{"arch": "lenet5", "metric": "accuracy", "test": {"accuracy": "good"}}')
    data, _, res = _report(run)
    fp32 = next(r for r in data["rows"] if (r["variant"], r["runtime"]) == ("fp32", "eager"))
    assert fp32["metric_source"] == "manifest (train stage)" and fp32["metric"] is not None
    assert "train_result.json" in res.output and "test.accuracy: expected float" in res.output
