"""Verification that cannot pass vacuously: a reference too small or too constant for the tolerance fails with
its own reason; --atol/--rtol set the tolerance and the JSON records it; errors are read against the output's RMS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.models.checkpoint import save_checkpoint
from dlopt.models.registry import build_model
from dlopt.verify import ElementwiseTolerance, VerifyConfig, make_cases, reference_outputs, verify_runner
from dlopt.verify.compare import reference_scale
from dlopt.verify.core import criterion_for

runner = CliRunner()
FAST = ["--format", "onnx", "--exporter", "legacy"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _scaled_mlp(scale: float, bias: float | None = None):
    """The tiny MLP with its head scaled: scale 1e-18 gives outputs of about 1e-18 (as efficientnet_b0's at random
    init); scale 0 with a bias gives the same output whatever the input."""
    model, spec, cfg = build_model("mlp", tiny=True)
    head = model.head
    with torch.no_grad():
        head.weight.mul_(scale)
        head.bias.mul_(scale) if bias is None else head.bias.fill_(bias)
    return model.eval(), spec, cfg


def _cases_refs(model, spec, cfg):
    cases = make_cases(spec, cfg, VerifyConfig())
    return cases, reference_outputs(model, cases)


def test_tiny_reference_is_judged_relative_to_its_scale_and_an_all_zero_artifact_fails():
    model, spec, cfg = _scaled_mlp(1e-18)
    cases, refs = _cases_refs(model, spec, cfg)
    assert max(float(r[0].abs().max()) for r in refs) < 1e-16
    zeros = lambda *x: torch.zeros(x[0].shape[0], cfg.num_classes)  # noqa: E731 - an artifact that computes nothing
    report = verify_runner(zeros, cases, refs, spec, criterion_for(spec, VerifyConfig()))
    assert not report.passed and not report.degenerate  # elementwise alone would accept it: judged at its scale
    why = report.failures()[0][2]
    assert why.startswith("judged relative to the output's scale") and "error RMS / reference RMS 1 > rtol" in why
    faithful = verify_runner(model, cases, refs, spec, criterion_for(spec, VerifyConfig()))
    assert faithful.passed and faithful.relative["logits"].startswith("judged relative to the output's scale")
    data = faithful.to_dict()
    assert data["degenerate"] == {} and data["reference"]["logits"]["rms"] < 1e-16
    assert data["judged_relative"] == faithful.relative


def test_an_all_zero_reference_fails_as_degenerate():
    model, spec, cfg = _scaled_mlp(0.0, bias=0.0)
    cases, refs = _cases_refs(model, spec, cfg)
    zeros = lambda *x: torch.zeros(x[0].shape[0], cfg.num_classes)  # noqa: E731
    report = verify_runner(zeros, cases, refs, spec, criterion_for(spec, VerifyConfig()))
    assert not report.passed and "all zeros" in report.degenerate["logits"]
    assert report.failures()[0][:2] == ("all shapes", "logits")


def test_constant_reference_fails_as_degenerate():
    model, spec, cfg = _scaled_mlp(0.0, bias=5.0)  # logits are 5.0 whatever the input
    cases, refs = _cases_refs(model, spec, cfg)
    const = lambda *x: torch.full((x[0].shape[0], cfg.num_classes), 5.0)  # noqa: E731
    report = verify_runner(const, cases, refs, spec, criterion_for(spec, VerifyConfig()))
    assert not report.passed and "hardly varies" in report.degenerate["logits"]


def test_normal_reference_passes_and_reports_error_relative_to_rms():
    model, spec, cfg = build_model("mlp", tiny=True)
    model.eval()
    cases, refs = _cases_refs(model, spec, cfg)
    assert verify_runner(model, cases, refs, spec, criterion_for(spec, VerifyConfig())).passed
    noisy = lambda *x: model(*x) + 1e-3  # noqa: E731
    report = verify_runner(noisy, cases, refs, spec, ElementwiseTolerance(atol=2e-3, rtol=0.0))
    assert report.passed and not report.degenerate
    out = report.cases[0].outputs[0]
    assert out.err_rms == pytest.approx(out.max_abs / out.ref_rms) and out.ref_rms > 0.01
    assert report.worst()["err_rms"] == pytest.approx(max(o.err_rms for c in report.cases for o in c.outputs))


def test_rtol_of_one_or_more_is_degenerate_and_integer_outputs_never_are():
    model, spec, cfg = build_model("mlp", tiny=True)
    model.eval()
    cases, refs = _cases_refs(model, spec, cfg)
    report = verify_runner(model, cases, refs, spec, ElementwiseTolerance(atol=0.0, rtol=1.0))
    assert not report.passed and "rtol 1 >= 1" in report.degenerate["logits"]
    ints = [torch.zeros(4, 2, dtype=torch.int64)]
    assert reference_scale("ids", ints, 1e-4).floating is False
    assert ElementwiseTolerance().vacuous(reference_scale("ids", ints, 1e-4)) is None


def test_tolerance_defaults_to_the_spec_and_options_override_each_part():
    _, spec, _ = build_model("mlp", tiny=True)
    assert criterion_for(spec, VerifyConfig()) == ElementwiseTolerance(spec.tolerance.atol, spec.tolerance.rtol)
    assert criterion_for(spec, VerifyConfig(atol=0.5)) == ElementwiseTolerance(0.5, spec.tolerance.rtol)
    assert criterion_for(spec, VerifyConfig(rtol=0.25)) == ElementwiseTolerance(spec.tolerance.atol, 0.25)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, spec, cfg = _scaled_mlp(1e-18)
    return save_checkpoint(model, spec, cfg, tmp_path_factory.mktemp("ck") / "tiny.json")


def test_cli_export_of_a_tiny_model_passes_judged_relative_to_its_scale(tiny_checkpoint, tmp_path):
    result = _invoke("export", "--checkpoint", tiny_checkpoint, *FAST, "--out", tmp_path / "a", "--json")
    assert result.exit_code == 0, result.output  # a faithful export of a model whose outputs are ~1e-18
    data = json.loads(result.stdout)
    onnx = data["verification"]["onnx"]
    assert onnx["passed"] and onnx["degenerate"] == {} and "judged relative" in onnx["judged_relative"]["logits"]
    assert onnx["tolerance"] == {"atol": 1e-5, "rtol": 1e-4, "atol_source": "spec", "rtol_source": "spec"}
    table = _invoke("export", "--checkpoint", tiny_checkpoint, *FAST, "--out", tmp_path / "b")
    assert table.exit_code == 0 and "judged relative to the output's scale" in table.output, table.output


def test_cli_atol_rtol_change_the_verdict_and_are_recorded(tiny_checkpoint, tmp_path):
    result = _invoke("export", "--checkpoint", tiny_checkpoint, *FAST, "--out", tmp_path, "--json", "--atol", "1e-24")
    assert result.exit_code == 0, result.output  # an atol below the output's scale makes the check meaningful
    data = json.loads(result.stdout)
    assert data["verification"]["onnx"]["tolerance"]["atol"] == 1e-24
    assert data["verification"]["onnx"]["tolerance"]["atol_source"] == "option"
    run = Path(data["run"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["export"]["config"]["atol"] == 1e-24
    again = _invoke("verify", run, "--json", "--atol", "1e-24", "--rtol", "2")
    assert again.exit_code == 1, again.output
    onnx = json.loads(again.stdout)["artifacts"]["onnx"]
    assert onnx["tolerance"] == {"atol": 1e-24, "rtol": 2.0, "atol_source": "option", "rtol_source": "option"}
    assert "rtol 2 >= 1" in onnx["degenerate"]["logits"]
    report = json.loads((run / "verify-report.json").read_text())
    assert report["artifacts"]["onnx"]["tolerance"]["rtol"] == 2.0


def test_cli_normal_model_passes_and_rejects_a_negative_tolerance(tmp_path):
    result = _invoke("export", "mlp", "--tiny", *FAST, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    onnx = json.loads(result.stdout)["verification"]["onnx"]
    assert onnx["passed"] and onnx["degenerate"] == {} and onnx["worst"]["err_rms"] is not None
    bad = _invoke("verify", json.loads(result.stdout)["run"], "--atol", "-1")
    assert bad.exit_code == 2 and "--atol" in bad.output
