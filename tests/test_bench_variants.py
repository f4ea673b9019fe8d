"""What a run holds becomes rows: exported files, other checkpoints; a failing backend is one failed row."""

from __future__ import annotations

import os

import pytest

from dlopt.bench import backends
from dlopt.bench.config import Backend, BenchConfig
from dlopt.bench.runner import bench
from dlopt.contract.target import TargetOptions, resolve_target
from dlopt.models.checkpoint import save_checkpoint
from dlopt.models.spec import ExportFormat

CFG = BenchConfig(backends=(Backend.EAGER, Backend.TORCHSCRIPT, Backend.PT2), batch_sizes=(3,), budget_s=0.05,
                  min_calls=5, warmup_calls=1, threads=1)


@pytest.fixture(autouse=True)
def _peak_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLOPT_CACHE_DIR", str(tmp_path / "cache"))


def test_run_artifacts_and_checkpoints_become_rows(tmp_path):
    from dlopt.export import ExportConfig, export_model

    t = resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path))
    with t.run.stage("export", {}) as rec:  # only files a done stage vouches for become rows
        res = export_model(t.model, t.spec, t.config, rec.dir("export"),
                           ExportConfig(formats=(ExportFormat.TORCHSCRIPT, ExportFormat.PT2), verify=False))
        record = save_checkpoint(t.model, t.spec, t.config, rec.path("pruned", "model.json"))
        rec.outputs += [*res.artifacts.values(), record, record.with_suffix(".safetensors")]
    out = bench(TargetOptions(name=str(t.run.path), root=tmp_path), CFG)
    rows = {r["variant"]: r for r in out.result["rows"]}
    assert set(rows) == {"eager", "torchscript", "torchscript-file:export/model.ts", "pt2:export/model.pt2",
                         "eager:pruned/model"}
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row.get("reason"))
        assert row["speedup_vs_eager"] > 0
    assert rows["torchscript-file:export/model.ts"]["model_bytes_source"] == "file"


def test_named_artifact_benches_it_and_eager_only(tmp_path):
    from dlopt.export import ExportConfig, export_model

    t = resolve_target(TargetOptions(name="mlp", tiny=True, root=tmp_path))
    with t.run.stage("export", {}) as rec:
        res = export_model(t.model, t.spec, t.config, rec.dir(), ExportConfig(formats=(ExportFormat.TORCHSCRIPT,),
                                                                             verify=False))
        rec.outputs += list(res.artifacts.values())
    out = bench(TargetOptions(name=str(t.run.path / "model.ts"), root=tmp_path), CFG)
    assert [r["variant"] for r in out.result["rows"]] == ["eager", "torchscript-file:model.ts"]
    assert out.result["run"] == str(t.run.path)


def test_one_failing_backend_is_a_failed_row(tmp_path, monkeypatch):
    def broken(v, inputs, device, threads):
        raise RuntimeError("inductor needs a C++ compiler\nmore detail")

    monkeypatch.setattr(backends, "prepare_compile", broken)  # the runtime record names it; resolved at each call
    cfg = BenchConfig(backends=(Backend.EAGER, Backend.COMPILE), batch_sizes=(1,), budget_s=0.05, min_calls=5,
                      threads=1)
    out = bench(TargetOptions(name="dqn", tiny=True, root=tmp_path), cfg)
    rows = {r["variant"]: r for r in out.result["rows"]}
    assert rows["eager"]["status"] == "ok"
    assert rows["compile"]["status"] == "failed"
    assert rows["compile"]["reason"] == "RuntimeError: inductor needs a C++ compiler"


def test_threads_recorded_and_restored(tmp_path):
    import torch

    before = torch.get_num_threads()
    out = bench(TargetOptions(name="perceptron", root=tmp_path),
                BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1,), budget_s=0.05, min_calls=5,
                            threads=2 if before != 2 else 1))
    assert out.result["threads"] == (2 if before != 2 else 1) == out.result["environment"]["threads"]
    assert torch.get_num_threads() == before
    assert os.path.isfile(out.result["peak"]["cache"])


def test_seq_lens_make_one_row_per_shape(tmp_path):
    cfg = BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1, 2), seq_lens=(4, 9), budget_s=0.05, min_calls=5,
                      threads=1)
    out = bench(TargetOptions(name="lstm", tiny=True, root=tmp_path), cfg)
    shapes = [(r["batch_size"], r["seq_len"]) for r in out.result["rows"]]
    assert shapes == [(1, 4), (1, 9), (2, 4), (2, 9)]
    flops = {(r["batch_size"], r["seq_len"]): r["flops"] for r in out.result["rows"]}
    assert flops[(2, 9)] > flops[(2, 4)] > flops[(1, 4)]


def test_unloadable_checkpoint_is_an_unavailable_row(tmp_path):
    import json

    t = resolve_target(TargetOptions(name="perceptron", root=tmp_path))
    with t.run.stage("broken", {}) as rec:  # a done stage vouches for it: bench tries it, and says why it fails
        rec.path("broken.safetensors").write_bytes(b"not safetensors")
        rec.path("broken.json").write_text(json.dumps({"format": "dlopt-checkpoint", "arch": "perceptron",
                                                       "config": {}, "weights": "broken.safetensors"}))
        rec.outputs += [rec.path("broken.safetensors"), rec.path("broken.json")]
    (t.run.path / "notes.json").write_text("{}")  # not a checkpoint: ignored
    out = bench(TargetOptions(name=str(t.run.path), root=tmp_path),
                BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1,), budget_s=0.05, min_calls=5, threads=1))
    rows = {r["variant"]: r for r in out.result["rows"]}
    assert set(rows) == {"eager", "eager:broken"}
    assert rows["eager"]["status"] == "ok"
    assert rows["eager:broken"]["status"] == "unavailable" and "cannot load broken.json" in rows["eager:broken"]["reason"]



def test_openvino_is_measured_by_default():
    """issue 16: `dlopt bench` without --backend measures OpenVINO beside ONNX Runtime (the best fp32 runtime a CPU
    user can get must be among the rows)."""
    assert {Backend.ONNXRUNTIME, Backend.OPENVINO} <= set(BenchConfig().backends)
