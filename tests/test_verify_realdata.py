"""After training, export-time and on-demand verification use the run's real test data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlopt.contract.target import TargetOptions
from dlopt.export import ExportConfig
from dlopt.export.stage import run_export
from dlopt.models.spec import ExportFormat
from dlopt.train import TrainConfig, train
from dlopt.verify.stage import VerifyOptions, verify_path

ONNX_ONLY = ExportConfig(formats=(ExportFormat.ONNX,), exporter="legacy")


@pytest.mark.parametrize("arch", ["lenet5", "rnn"])
def test_trained_run_verifies_on_its_test_data(arch: str, tmp_path: Path) -> None:
    result = train(TrainConfig(arch=arch, tiny=True, epochs=1, limit=64, out=tmp_path, progress=False))
    run = Path(result.run_dir)
    run_export(TargetOptions(name=str(run), root=tmp_path), ONNX_ONLY)
    outcome = verify_path(VerifyOptions(run))
    assert outcome.passed
    cases = json.loads(outcome.report_path.read_text())["artifacts"]["onnx"]["cases"]
    sources = [c["source"] for c in cases]
    assert sources.count("data") >= 3, sources  # every planned batch size from the test split
    assert {c["batch"] for c in cases if c["source"] == "data"} >= {1, 2, 3}
    if arch == "rnn":  # the data has one length; a second one comes from random inputs
        assert len({c["seq"] for c in cases}) >= 2 and "random" in sources


def test_untrained_run_uses_random_inputs(tmp_path: Path) -> None:
    run_export(TargetOptions(name="mlp", tiny=True, root=tmp_path), ONNX_ONLY)
    outcome = verify_path(VerifyOptions(next(tmp_path.glob("mlp/*"))))
    cases = json.loads(outcome.report_path.read_text())["artifacts"]["onnx"]["cases"]
    assert outcome.passed and {c["source"] for c in cases} == {"random"}
