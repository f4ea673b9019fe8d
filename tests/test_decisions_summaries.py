"""Every command's summary says what its numbers rest on: random weights (or where the weights came from), the
input size and the class count."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.assumptions import assumptions

FIXTURES = Path(__file__).parent / "fixtures" / "user_models"


def test_export_bench_prune_and_quantize_say_what_was_assumed(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(FIXTURES / "cnn.py", tmp_path / "cnn.py")
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    made = cli.invoke(app, ["export", "cnn.py:build", "--input-shape", "3,32,32", "--format", "onnx", "--exporter",
                            "legacy", "--out", "out"])
    assert made.exit_code == 0, made.output
    said = "assumed: random weights (seed 0, untrained); input 3x32x32; classes: not declared"
    assert said in " ".join(made.output.split())
    run = next((tmp_path / "out" / "cnn-build").iterdir())
    for args in (["bench", str(run), "--backend", "onnxruntime", "--batch-sizes", "1", "--budget-s", "0.1"],
                 ["prune", str(run), "--ratio", "0.3"]):
        res = cli.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert said in " ".join(res.output.split()), args[0]


def test_a_zoo_model_names_its_class_count_and_a_trained_one_its_weights(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["export", "mlp", "--tiny", "--format", "onnx", "--exporter", "legacy", "--out",
                                   str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    run = Path(json.loads(res.stdout)["run"])
    assert assumptions(run).startswith("random weights (seed 0, untrained);") and "classes" in assumptions(run)
    record = json.loads((run / "model.json").read_text())
    record["source"] = "dlopt train"
    (run / "model.json").write_text(json.dumps(record))
    assert assumptions(run).startswith("trained weights (dlopt train)")


def test_the_evaluation_of_an_untrained_model_without_data_says_no_metric_was_measured(tmp_path: Path) -> None:
    """It said "the fp32 metric is the training stage's evaluation" for a model no stage trained or scored."""
    from dlopt.contract.target import TargetOptions, resolve_target
    from dlopt.pipeline.evaluate import evaluate_variants

    target = resolve_target(TargetOptions(name="dqn", tiny=True, root=tmp_path))  # no dataset, not trained
    out = evaluate_variants(target.run, target.spec)
    assert "training stage" not in out["note"] and "was not trained in this run" in out["note"]
    assert "no metric was measured" in out["note"] and out["rows"][0]["metrics"] is None
