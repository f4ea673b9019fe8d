"""Quantize says what int8 itself brought (against fp32 on the same runtime, apart from the runtime's own gain),
says so when it brings nothing, labels what its drop column holds without a metric, and keeps third-party
progress output off stdout. Also: a failed dynamo export is one clean line, a missing path is named as such."""

from __future__ import annotations

import logging
import sys

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.export.onnx import dynamo_failure
from dlopt.quantize.judge import int8_gain
from dlopt.quantize.quiet import third_party_output


def test_int8_is_judged_against_fp32_on_its_own_runtime() -> None:
    latency = {"eager fp32": 0.33, "onnxruntime fp32": 0.0811, "quantized": 0.0827}  # the user's CNN
    got = int8_gain(latency, "onnxruntime", 1, 2)
    assert got["speedup_vs_fp32_b1"] == pytest.approx(0.981, abs=1e-3)
    assert got["runtime_speedup_vs_eager_b1"] == pytest.approx(4.07, abs=1e-2)  # the 4x was ONNX Runtime's
    assert got["int8_worthwhile"] is False
    assert got["int8_verdict"] == ("int8 brings nothing here (0.98x over fp32 on onnxruntime (under 1.1x); only 1 of "
                                   "3 layers is int8): ship the fp32 ONNX file")
    fast = int8_gain({"eager fp32": 7.5, "onnxruntime fp32": 1.6, "quantized": 0.68}, "onnxruntime", 20, 0)
    assert fast["int8_worthwhile"] and fast["int8_verdict"] is None and fast["speedup_vs_fp32_b1"] > 2
    torch = int8_gain({"eager fp32": 1.0, "quantized": 0.5}, "torch", 3, 0)
    assert torch["reference"] == "eager fp32" and torch["speedup_vs_fp32_b1"] == 2.0


def test_third_party_output_never_reaches_stdout(capsys) -> None:
    nncf = logging.getLogger("nncf")
    handler = logging.StreamHandler(sys.stdout)  # as NNCF's own: bound to stdout when it is imported
    nncf.addHandler(handler)
    logging.getLogger("dlopt").setLevel(logging.INFO)  # no -v, whatever an earlier test in this process left
    try:
        with third_party_output():
            print("Statistics collection ━━━━ 100%")
            print("Applying Fast Bias correction", file=sys.stderr)
            nncf.warning("INFO:nncf:ignored nodes")
        out = capsys.readouterr()
        assert out.out == "" and out.err == ""  # without -v: nowhere
        logging.getLogger("dlopt").setLevel(logging.DEBUG)  # what -v sets
        with third_party_output():
            print("Statistics collection ━━━━ 100%")
        out = capsys.readouterr()
        assert out.out == "" and "Statistics collection" in out.err  # with -v: on stderr
    finally:
        logging.getLogger("dlopt").setLevel(logging.NOTSET)
        nncf.removeHandler(handler)


def test_a_failed_dynamo_export_is_one_clean_line() -> None:
    try:
        try:
            raise ValueError("Could not guard on data-dependent expression zuf0 > 0.0\nconsider using ...")
        except ValueError as cause:
            raise RuntimeError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of "
                               "exporting\n- Modify the model code") from cause
    except RuntimeError as exc:
        line = dynamo_failure(exc)
    assert "\n" not in line and "\x1b" not in line
    assert line == ("the dynamo ONNX exporter failed (ValueError: Could not guard on data-dependent expression "
                    "zuf0 > 0.0); try --exporter legacy")


def test_a_path_that_does_not_exist_is_named_as_a_missing_path(tmp_path) -> None:
    res = CliRunner().invoke(app, ["bench", str(tmp_path / "no" / "such" / "run")])
    assert res.exit_code != 0 and "no such file or directory" in res.output and "unknown architecture" not in res.output
    res = CliRunner().invoke(app, ["bench", "resnet19"])  # a name is still a name
    assert "unknown architecture 'resnet19'" in res.output


def test_without_a_metric_the_budget_is_the_verification_bound_and_the_column_says_so() -> None:
    from types import SimpleNamespace

    from dlopt.quantize.judge import Judge

    outputs = Judge(None, SimpleNamespace(task="custom", metric="none"), None, None, [], [])
    assert outputs.budget(1.0, 0.1) == 10.0 and outputs.budget(100.0, 0.1) == 100.0  # --max-drop 100 still loosens
    assert outputs.drop_column() == "no metric: rel. error % vs fp32"
    assert outputs.budget_text(1.0, 0.1) == ("relative error budget of 10% vs fp32 (no task metric; the verification "
                                             "bound)")
    scores = Judge(None, SimpleNamespace(task="classification", metric="accuracy"), None, None, [], [])
    assert scores.budget(1.0, 0.1) == 1.0 and scores.drop_column() == "no metric: disagreement % vs fp32"
