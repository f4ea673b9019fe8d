"""Every registry architecture (tiny config) exports to every format its spec supports and passes verification.

The bulk uses the legacy ONNX exporter (about 5x faster than dynamo on 2 cores); a representative few run
the default dynamo exporter, including a recurrent model (where dynamo keeps the time axis dynamic through
while_loop decompositions or dlopt falls back to legacy and says so).
"""

from __future__ import annotations

import onnx
import pytest

from dlopt.export import ExportConfig, export_model
from dlopt.models.registry import build_model, list_names


def _export(name: str, tmp_path, exporter: str):
    model, spec, cfg = build_model(name, tiny=True)
    result = export_model(model, spec, cfg, tmp_path, ExportConfig(exporter=exporter))
    return spec, result


def _check(spec, result) -> None:
    assert not result.failures, result.failures
    expected = {f.value for f in ExportConfig().formats if spec.supports(f)}
    assert set(result.artifacts) == expected
    for fmt, report in result.verification.items():
        assert report.passed, (fmt, report.failures())
        batches = {c.batch for c in report.cases}
        assert len(batches) >= 3 and any(b % 2 and b != 2 for b in batches)
        if spec.takes_sequences:
            assert len({c.seq for c in report.cases}) >= 2
    if "onnx" in result.artifacts:
        proto = onnx.load(str(result.artifacts["onnx"]))
        assert [i.name for i in proto.graph.input] == list(spec.input_names)
        assert [o.name for o in proto.graph.output] == list(spec.output_names)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["arch"] == spec.name and "tolerance" in meta and "dlopt_version" in meta
        for t in spec.inputs:  # every declared dynamic axis is symbolic in the graph
            dims = next(i for i in proto.graph.input if i.name == t.name).type.tensor_type.shape.dim
            assert all(dims[a].dim_param for a in t.dynamic_axes), (t.name, dims)


@pytest.mark.parametrize("name", list_names())
def test_zoo_exports_and_verifies_legacy(name, tmp_path):
    spec, result = _export(name, tmp_path, "legacy")
    _check(spec, result)


@pytest.mark.parametrize("name", ["mlp", "transformer_classifier", "rnn"])
def test_zoo_exports_and_verifies_dynamo(name, tmp_path):
    spec, result = _export(name, tmp_path, "dynamo")
    _check(spec, result)
    assert result.details["onnx"]["opset"] >= 18 or result.details["onnx"]["exporter"] == "legacy"
