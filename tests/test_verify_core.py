"""The verifier itself: statistics, shape plans, criteria, and that it fails when it must."""

from __future__ import annotations

import math

import onnx
import pytest
import torch
from onnx import numpy_helper

from dlopt.export import ExportConfig, export_model
from dlopt.models.registry import build_model
from dlopt.models.spec import ExportFormat
from dlopt.verify import (
    ElementwiseTolerance,
    TopOneAgreement,
    VerifyConfig,
    compare,
    make_cases,
    plan_batches,
    plan_seqs,
    reference_outputs,
    verify_artifacts,
    verify_runner,
)

ONNX_ONLY = ExportConfig(formats=(ExportFormat.ONNX,), exporter="legacy", verify=False)


def test_compare_statistics_are_exact():
    ref = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    out = ref + torch.tensor([[0.0, 0.1], [0.0, 0.0]])
    s = compare("y", ref, out, rtol=0.01)
    close = dict(rel=1e-5)  # the inputs are float32
    assert s.max_abs == pytest.approx(0.1, **close) and s.mean_abs == pytest.approx(0.025, **close)
    assert s.max_rel == pytest.approx(0.05, **close)
    rms = (7.5) ** 0.5  # |a-b| - rtol*max(|b|, RMS(b)) at the worst element, |b| = 2 < RMS (criteria.scaled_bound)
    assert s.needed_atol == pytest.approx(0.1 - 0.01 * rms, **close)
    assert 0.999 < s.cosine < 1.0 and s.nan == s.inf == 0


def test_compare_reports_shape_mismatch_and_top1():
    assert "shape" in compare("y", torch.zeros(2, 3), torch.zeros(3, 3), 1e-4).error
    ref = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert compare("y", ref, torch.tensor([[0.0, 1.0], [0.0, 1.0]]), 1e-4, classifier=True).top1 == 0.5


def test_plans_cover_an_odd_batch_and_two_lengths():
    for export_batch in (1, 2, 3, 4):
        sizes = plan_batches(export_batch)
        assert len(set(sizes)) >= 3 and export_batch in sizes
        assert any(b % 2 and b != export_batch for b in sizes)
    _, spec, cfg = build_model("lstm", tiny=True)
    assert len(set(plan_seqs(spec, cfg))) == 2
    _, spec, cfg = build_model("mlp", tiny=True)
    assert plan_seqs(spec, cfg) == (None,)


def _mlp_onnx(tmp_path, dynamic=True):
    model, spec, cfg = build_model("mlp", tiny=True)
    config = ExportConfig(formats=(ExportFormat.ONNX,), exporter="legacy", verify=False, dynamic=dynamic)
    path = export_model(model, spec, cfg, tmp_path, config).artifacts["onnx"]
    return model, spec, cfg, path


def test_verifier_passes_a_faithful_export(tmp_path):
    model, spec, cfg, path = _mlp_onnx(tmp_path)
    assert verify_artifacts(model, spec, cfg, {"onnx": path})["onnx"].passed


def test_verifier_fails_a_perturbed_artifact(tmp_path):
    model, spec, cfg, path = _mlp_onnx(tmp_path)
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:  # every weight moved by 1e-2: far outside atol 1e-5 at any batch
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 1e-2, init.name))
    onnx.save(proto, str(path))
    report = verify_artifacts(model, spec, cfg, {"onnx": path})["onnx"]
    assert not report.passed
    assert len(report.failures()) == 3  # every batch size fails, each reported
    assert all("exceeds atol" in why for *_, why in report.failures())
    assert report.worst()["needed_atol"] > spec.tolerance.atol


def test_verifier_fails_an_axis_exported_static(tmp_path):
    model, spec, cfg, path = _mlp_onnx(tmp_path, dynamic=False)
    report = verify_artifacts(model, spec, cfg, {"onnx": path})["onnx"]
    assert not report.passed
    failed = {c.batch for c in report.cases if c.failures}
    assert failed == {1, 3}  # the export batch (2) still runs; the other sizes cannot
    assert all(c.error for c in report.cases if c.failures)


def test_verifier_fails_on_nan_in_the_artifact():
    model, spec, cfg = build_model("mlp", tiny=True)
    cases = make_cases(spec, cfg, VerifyConfig())
    refs = reference_outputs(model, cases)

    def nan_runner(*inputs):
        out = model(*inputs).detach().clone()
        out[0, 0] = math.nan
        return (out,)

    report = verify_runner(nan_runner, cases, refs, spec, ElementwiseTolerance.of(spec.tolerance))
    assert not report.passed
    assert all("NaN" in why for *_, why in report.failures())
    assert report.cases[0].outputs[0].nan == 1


def test_verifier_fails_when_the_eager_model_gives_nan():
    model, spec, cfg = build_model("mlp", tiny=True)
    cases = make_cases(spec, cfg, VerifyConfig())
    nan_model = lambda *x: torch.full((x[0].shape[0], 2), math.nan)  # noqa: E731
    refs = reference_outputs(nan_model, cases)
    report = verify_runner(nan_model, cases, refs, spec, ElementwiseTolerance())
    assert not report.passed and "eager model itself" in report.failures()[0][2]


def test_a_task_level_criterion_plugs_in():
    """A slightly noisy candidate fails the elementwise tolerance but passes top-1 agreement."""
    model, spec, cfg = build_model("cnn", tiny=True)
    cases = make_cases(spec, cfg, VerifyConfig())
    refs = reference_outputs(model, cases)

    def noisy(*inputs):
        out = model(*inputs).detach()
        return (out + 1e-3 * torch.sign(out),)  # moves values, keeps every argmax

    assert not verify_runner(noisy, cases, refs, spec, ElementwiseTolerance.of(spec.tolerance)).passed
    report = verify_runner(noisy, cases, refs, spec, TopOneAgreement(1.0))
    assert report.passed and report.worst()["top1"] == 1.0
    flipped = lambda *x: (-model(*x).detach(),)  # noqa: E731
    assert not verify_runner(flipped, cases, refs, spec, TopOneAgreement(0.99)).passed
