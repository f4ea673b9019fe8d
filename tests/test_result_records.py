"""Every stage writes its result file through the typed record dlopt.core.results declares (train_result.json,
prune_report.json, quantize_report.json, verify-report.json, bench.json): the file reads back strictly as that
record (no key the record does not know, no value of the wrong type), the CLI's --json shows the same record,
and a writer that builds a wrong record is refused at write time with nothing written."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.records import RecordWriteError
from dlopt.core.results import (
    BenchResult,
    Evaluation,
    PruneReport,
    QuantizeReport,
    TrainResult,
    VerifyReport,
    read_result,
    write_result,
)

runner = CliRunner()


def _json(*args: object) -> Any:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """lenet5 --tiny trained, pruned (structured, and unstructured with fine-tuning), quantized, benchmarked
    (tensorrt is unavailable on a CPU, so bench.json holds a row that did not run) and exported; each --json."""
    root = tmp_path_factory.mktemp("records")
    shown = {"train_result.json": _json("train", "lenet5", "--tiny", "--epochs", "1", "--out", root, "--json")}
    run = next((root / "lenet5").iterdir())
    shown["pruned/prune_report.json"] = _json("prune", run, "--finetune-epochs", "0", "--json")
    shown["pu/prune_report.json"] = _json("prune", run, "--method", "unstructured", "--name", "pu",
                                          "--finetune-epochs", "1", "--limit", "64", "--json")
    shown["int8/quantize_report.json"] = _json("quantize", run, "--method", "dynamic", "--json")
    shown["bench.json"] = _json("bench", run, "--budget-s", "0.1", "--batch-size", "1", "--threads", "1",
                                "--backend", "eager,onnxruntime,tensorrt", "--json")  # before export: a tensorrt row
    shown["verify-report.json"] = _json("export", run, "--format", "onnx", "--json")
    for extra in (["verify", run / "int8" / "model.onnx"], ["report", run]):  # for the path check below
        assert runner.invoke(app, [str(a) for a in extra]).exit_code == 0
    return run, shown


FILES = [(TrainResult, "train_result.json"), (PruneReport, "pruned/prune_report.json"),
         (PruneReport, "pu/prune_report.json"), (QuantizeReport, "int8/quantize_report.json"),
         (VerifyReport, "verify-report.json"), (BenchResult, "bench.json")]


@pytest.mark.parametrize(("kind", "rel"), FILES, ids=[rel for _, rel in FILES])
def test_each_stage_file_is_exactly_its_record(built, kind: type, rel: str) -> None:
    run, _ = built
    data = json.loads((run / rel).read_text())
    assert kind.from_json(data, strict=True).to_json() == data  # strict: a key the record lacks fails here
    assert read_result(kind, run / rel).to_json() == data


def test_records_hold_what_each_stage_measured(built) -> None:
    """Not vacuous: the method-specific and optional parts are in the files, typed."""
    run, _ = built
    train = read_result(TrainResult, run / "train_result.json")
    assert train.test_metric is not None and train.history and train.hparams["epochs"] == 1
    structured = read_result(PruneReport, run / "pruned/prune_report.json")
    assert structured.layers and structured.achieved and structured.sparsity is None
    assert structured.global_pruning is False and structured.checkpoint == "pruned/model.json"
    unstructured = read_result(PruneReport, run / "pu/prune_report.json")
    assert unstructured.sparsity and unstructured.layers is None and len(unstructured.finetune) == 1
    assert "layers" not in json.loads((run / "pu/prune_report.json").read_text())  # optional keys stay absent
    quant = read_result(QuantizeReport, run / "int8/quantize_report.json")
    assert quant.verified is not None and quant.layers_int8 and quant.verification["shapes"]["artifact"] == \
        "int8/" + quant.artifact
    verify = read_result(VerifyReport, run / "verify-report.json")
    assert verify.passed and verify.stage == "export" and verify.artifacts["onnx"].max_abs is not None
    bench = read_result(BenchResult, run / "bench.json")
    status = {r.backend: r.status for r in bench.rows}
    assert status["eager"] == "ok" and status["tensorrt"] == "unavailable"
    missing = next(r for r in bench.rows if r.backend == "tensorrt")
    assert missing.reason and missing.stats is None and missing.setup_s is None


@pytest.mark.parametrize(("kind", "rel"), FILES, ids=[rel for _, rel in FILES])
def test_cli_json_shows_the_record_it_wrote(built, kind: type, rel: str) -> None:
    run, shown = built
    data = json.loads((run / rel).read_text())
    got = shown[rel]
    if rel == "verify-report.json":  # export --json shows the verdicts under "verification"
        assert {fmt: v["passed"] for fmt, v in got["verification"].items()} == \
            {fmt: v["passed"] for fmt, v in data["artifacts"].items()}
        return
    if rel.endswith("quantize_report.json"):  # quantize --json gives the artifact's full path, the file its name
        assert Path(got.pop("artifact")) == run / "int8" / data.pop("artifact")
    for key in {"train_result.json": "run_dir", "bench.json": "run"}.get(rel, "").split():
        assert Path(got.pop(key)) == run and data.pop(key) == "."  # --json: the run's full path; the file: "."
    assert {k: got[k] for k in data} == data


def test_the_pipeline_evaluation_is_exactly_its_record(built, tmp_path: Path) -> None:
    """evaluation.json (the pipeline's evaluate step) on this run: every variant, eager and ONNX Runtime rows."""
    from dlopt.core.runs import Run
    from dlopt.models.registry import get_spec
    from dlopt.pipeline.evaluate import evaluate_variants

    data = evaluate_variants(Run(built[0]), get_spec("lenet5"), lambda _m: None)
    back = read_result(Evaluation, write_result(Evaluation.of(data), tmp_path / "evaluation.json"))
    assert back.to_json() == json.loads((tmp_path / "evaluation.json").read_text()) == json.loads(json.dumps(data))
    assert {r.runtime for r in back.rows} == {"eager", "onnxruntime"} and back.split == "test"


def test_a_prune_with_nothing_to_score_on_reads_back(tmp_path: Path) -> None:
    """dqn trains without a dataset: its prune report has no metric direction and says why (the reader before
    the records were shared refused this file: metric.higher_is_better was typed bool, the writer wrote null)."""
    shown = _json("prune", "dqn", "--tiny", "--out", tmp_path, "--json")
    path = Path(shown["record"]).parent / "prune_report.json"
    data = json.loads(path.read_text())
    report = read_result(PruneReport, path)
    assert report.to_json() == data and PruneReport.from_json(data, strict=True).to_json() == data
    assert report.metric.higher_is_better is None and report.metric.data.startswith("none: ")
    assert report.metric.final is None and report.kept_layers


def _quant(built) -> QuantizeReport:
    return read_result(QuantizeReport, built[0] / "int8/quantize_report.json")


@pytest.mark.parametrize("change", [{"metric_after": "0.98"}, {"threads": 1.5}, {"verified": "yes"},
                                    {"kept_float": ("a", 3)}, {"latency_ms_b1": {"quantized": "fast"}}])
def test_a_record_of_the_wrong_type_is_not_written(built, tmp_path: Path, change: dict[str, Any]) -> None:
    path = tmp_path / "quantize_report.json"
    path.write_text("{}")  # what was there stays
    with pytest.raises(RecordWriteError) as err:
        write_result(replace(_quant(built), **change), path)
    assert next(iter(change)) in str(err.value) and err.value.exit_code == 5
    assert path.read_text() == "{}" and not list(tmp_path.glob(".*"))  # no temporary file left either


def test_an_undeclared_key_or_a_nested_wrong_type_is_refused(built) -> None:
    data = json.loads((built[0] / "bench.json").read_text())
    with pytest.raises(RecordWriteError, match="'speed' is not a field of BenchResult"):
        BenchResult.of({**data, "speed": 1})
    row = {**data["rows"][0], "stats": {**data["rows"][0]["stats"], "median_ms": "1 ms"}}
    with pytest.raises(RecordWriteError, match=r"rows\[0\].stats.median_ms: expected float"):
        BenchResult.of({**data, "rows": [row]})
    with pytest.raises(RecordWriteError, match="'wobble' in rows.0.|'wobble' in rows\\[0\\]"):
        BenchResult.of({**data, "rows": [{**data["rows"][0], "wobble": True}]})


def test_numbers_as_numpy_or_nan_are_written_as_numbers(built, tmp_path: Path) -> None:
    import numpy as np

    record = replace(_quant(built), metric_after=np.float32(0.5), drop_points=float("nan"))
    back = read_result(QuantizeReport, write_result(record, tmp_path / "q.json"))
    assert back.metric_after == 0.5 and math.isnan(back.drop_points)


def test_a_stage_whose_record_is_wrong_fails_cleanly_and_writes_nothing(built, tmp_path: Path, monkeypatch) -> None:
    """A writer bug (here: layer counts as text) stops the stage at write time: exit 5, one line, no int8 folder."""
    import shutil

    import dlopt.quantize.stage as stage

    run = Path(shutil.copytree(built[0], tmp_path / "run"))
    real = stage.layer_counts
    monkeypatch.setattr(stage, "layer_counts", lambda b: {**real(b), "layers_int8": str(real(b)["layers_int8"])})
    res = runner.invoke(app, ["quantize", str(run), "--method", "dynamic", "--name", "int8b"])
    assert res.exit_code == 5 and "layers_int8: expected int" in res.output, res.output
    assert "Traceback" not in res.output and not (run / "int8b").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["int8b"]["status"] != "done"


def test_older_files_still_read(tmp_path: Path) -> None:
    """Fields added since are optional: a file from before reads, with its old spelling where it had one."""
    old = tmp_path / "quantize_report.json"
    old.write_text(json.dumps({"arch": "lenet5", "method": "dynamic", "agreement": 0.99, "metric_after": 0.9}))
    q = read_result(QuantizeReport, old)
    assert q.agreement == 0.99 and q.top1_agreement is None and q.kept_float == ()
    assert TrainResult.from_json({"arch": "mlp", "test": {"loss": 0.1}}).history == ()


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_file_in_the_run_records_where_the_run_lives(built) -> None:
    """Issue 14: paths in the manifest, result files and reports are relative to the run, so a run opened by any
    path, copied or moved reads the same. No JSON file of the run names the directory the run was made in."""
    run, _ = built
    where = {str(run), str(run.resolve()), str(run.parent.parent)}
    found = {str(p.relative_to(run)): s for p in run.rglob("*.json") for s in _strings(json.loads(p.read_text()))
             if any(w in s for w in where)}
    assert not found, found
