"""bf16 on OpenVINO: an IR marked to compute in bf16 runs so through every dlopt runner (loader, bench) without
their knowing; `dlopt quantize --method bf16 --backend openvino` writes one; the optimize space offers bf16 and
int8+bf16 on OpenVINO only where the CPU has bf16 instructions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlopt.bench.backends import Variant, prepare
from dlopt.bench.config import Backend, Device
from dlopt.core.errors import InputFileError, UnsupportedError
from dlopt.export import ExportConfig, export_model, load_artifact
from dlopt.models.registry import build_model, get_spec, make_inputs
from dlopt.models.spec import ExportFormat
from dlopt.optimize.config import Goal, OptimizeConfig
from dlopt.optimize.space import bf16_cpu, build_space
from dlopt.runtime.openvino import PRECISION_KEY, compile_ir, mark_ir, read_ir_metadata, save_ir

BF16 = bf16_cpu()
needs_bf16 = pytest.mark.skipif(not BF16, reason="this CPU has no bf16 instructions (the refusal is tested instead)")


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    torch.manual_seed(0)
    model, spec, cfg = build_model("cnn", tiny=True)
    out = tmp_path_factory.mktemp("ov-bf16")
    result = export_model(model, spec, cfg, out, ExportConfig(formats=(ExportFormat.OPENVINO,), exporter="legacy"))
    xml = result.artifacts["openvino"]
    return xml, mark_ir(xml, out / "bf16" / "model.xml", "bf16"), make_inputs(spec, cfg, 4)


def _hint(xml, **kw) -> str:
    return compile_ir(xml, threads=1, **kw).get_property("INFERENCE_PRECISION_HINT").get_type_name()


def test_the_marker_is_kept_beside_the_ir_metadata(ir):
    fp32, marked, _ = ir
    meta = read_ir_metadata(marked)
    assert meta[PRECISION_KEY] == "bf16" and meta["arch"] == "cnn"  # the export's own metadata carried over
    assert PRECISION_KEY not in read_ir_metadata(fp32)


@needs_bf16
def test_a_marked_ir_compiles_in_bf16_and_an_explicit_precision_wins(ir):
    fp32, marked, _ = ir
    assert _hint(marked) == "bf16" and _hint(fp32) == "f32"
    assert _hint(marked, precision="f32") == "f32"  # asked for: fp32 means fp32


@needs_bf16
def test_loader_and_bench_run_the_marked_file_in_bf16_without_knowing(ir):
    fp32, marked, x = ir
    ref = load_artifact(fp32, threads=1)(*x)[0].numpy()
    got = load_artifact(marked, threads=1)(*x)[0].numpy()
    bench = {p: prepare(Variant(p.name, Backend.OPENVINO, path=p), x, Device.CPU, threads=1).fn()[0]
             for p in (fp32, marked)}
    scale = float(np.abs(ref).max())
    for out, f32 in ((got, ref), (bench[marked], bench[fp32])):
        assert not np.array_equal(out, f32)  # computed in bf16: not the fp32 result bit for bit ...
        np.testing.assert_allclose(out, f32, atol=0.05 * scale)  # ... but the same function at bf16's precision
    np.testing.assert_allclose(bench[fp32], ref, atol=1e-5, rtol=1e-4)


def test_an_unknown_marker_is_one_clear_error(ir, tmp_path):
    import openvino as ov

    odd = save_ir(ov.Core().read_model(str(ir[0])), tmp_path / "odd.xml", {PRECISION_KEY: "int3"})
    with pytest.raises(InputFileError, match="inference precision 'int3'"):
        compile_ir(odd, threads=1)


def _quantize(root):
    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize

    return run_quantize(TargetOptions(name="cnn", root=root, tiny=True),
                        QuantizeConfig(method="bf16", backend="openvino", exporter="legacy", timing_budget_s=0.05,
                                       max_drop=100.0, min_agreement=0.0, max_rel_error=10.0))


@needs_bf16
def test_quantize_bf16_on_openvino_writes_the_marked_ir(out_root):
    from dlopt.bench.variants import quantized_precision

    q = _quantize(out_root)
    r = q.result
    assert q.artifact.suffix == ".xml" and (r["method"], r["backend"]) == ("bf16", "openvino")
    assert read_ir_metadata(q.artifact)[PRECISION_KEY] == "bf16" and r["verified"], r["verification"]
    assert quantized_precision(q.artifact) == "bf16"  # bench rows name it bf16
    assert "openvino fp32" in r["latency_ms_b1"]  # timed against the fp32 file on its own runtime


@pytest.mark.skipif(BF16, reason="this CPU has bf16 instructions")
def test_quantize_bf16_on_openvino_is_refused_without_bf16_instructions(out_root):
    with pytest.raises(UnsupportedError, match="bf16 instructions"):
        _quantize(out_root)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_the_space_offers_bf16_on_openvino_only_on_a_bf16_cpu(monkeypatch, has_bf16):
    from dlopt.optimize import space

    monkeypatch.setattr(space, "bf16_cpu", lambda: has_bf16)
    got = build_space(get_spec("mlp"), OptimizeConfig(runtimes=("openvino",)))
    for fmt in ("bf16@openvino", "int8+bf16@openvino"):
        if has_bf16:
            assert fmt in got.formats and fmt not in got.left_out
        else:
            assert fmt not in got.formats and "no bf16 instructions" in got.left_out[fmt]
    assert "int8@openvino" in got.formats


def test_int8_bf16_needs_nncf_and_a_spec_that_quantizes(monkeypatch):
    from dlopt.optimize import space

    monkeypatch.setattr(space, "bf16_cpu", lambda: True)
    monkeypatch.setattr(space, "installed", lambda m: m != "nncf")
    got = build_space(get_spec("mlp"), OptimizeConfig(runtimes=("openvino",)))
    assert "nncf not installed" in got.left_out["int8+bf16@openvino"] and "bf16@openvino" in got.formats
    spec = get_spec("mlp")
    no_bf16 = dataclasses.replace(spec, quant_methods=spec.quant_methods - {"bf16"},
                                  limits={**spec.limits, "quantize:bf16": "no bf16 in this test"})
    assert build_space(no_bf16, OptimizeConfig(runtimes=("openvino",))).left_out["bf16@openvino"] == \
        "no bf16 in this test"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from dlopt.core.runs import Run
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    root = tmp_path_factory.mktemp("bf16-optimize")
    return Run.open(train(TrainConfig(arch="mlp", out=root, tiny=True, epochs=2, progress=False)).run_dir)


@needs_bf16
def test_the_optimize_cache_builds_bf16_and_int8_bf16_irs_once(trained_run):
    from dlopt.optimize.cache import Cache, quantize_verdict
    from dlopt.optimize.config import Precision, Runtime
    from dlopt.quantize.ov_quant import _quantized
    from dlopt.runtime.openvino import require_openvino

    cache = Cache(trained_run, OptimizeConfig(threads=(1,)))
    both = cache.artifact(cache.base(), Precision.INT8_BF16, Runtime.OPENVINO)
    half = cache.artifact(cache.base(), Precision.BF16, Runtime.OPENVINO)
    int8 = cache.artifact(cache.base(), Precision.INT8, Runtime.OPENVINO)
    for art in (both, half):
        assert read_ir_metadata(art.path)[PRECISION_KEY] == "bf16" and art.path.with_suffix(".bin").is_file()
    assert PRECISION_KEY not in read_ir_metadata(int8.path)
    q, _ = _quantized(require_openvino().Core().read_model(str(both.path)))
    assert q  # the NNCF int8 file itself, only marked
    assert quantize_verdict(both)["method"] == "static" and quantize_verdict(half)["method"] == "bf16"
    assert dict(cache.builds) == {"quantize": 2, "mark": 1}
    assert cache.artifact(cache.base(), Precision.INT8_BF16, Runtime.OPENVINO) == both
    assert dict(cache.builds) == {"quantize": 2, "mark": 1}  # found: nothing built twice


@needs_bf16
def test_an_int8_bf16_study_picks_verifies_and_ships_the_marked_ir(trained_run):
    from dlopt.contract.target import Target
    from dlopt.optimize.stage import run_optimize

    out = run_optimize(Target.of_run(trained_run), OptimizeConfig(
        threads=(1,), trials=1, prune_ratios=(0.0,), runtimes=("openvino",), precisions=("int8+bf16",),
        trial_timing_s=0.2, final_timing_s=0.4, goal=Goal(max_drop=100.0)))
    assert out.reached and out.report.verification["passed"], out.report.verification
    assert out.report.pick["candidate"]["precision"] == "int8+bf16" and "int8+bf16" in out.report.pick["label"]
    shipped = trained_run.path / next(f for f in out.report.shipped if f.endswith(".xml"))
    assert read_ir_metadata(shipped)[PRECISION_KEY] == "bf16"
