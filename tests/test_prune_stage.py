"""The prune stage on a run: fine-tuning on the run's data, the saved record (structure + weights), the report,
the manifest, and the checks around loading a pruned checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from dlopt.contract.target import TargetOptions, resolve_target
from dlopt.core.errors import ConfigError, InputFileError, UnsupportedError
from dlopt.models.checkpoint import load_checkpoint
from dlopt.models.registry import entry_module, make_inputs
from dlopt.prune import PruneConfig
from dlopt.prune.stage import REPORT, run_prune

FAST = {"data_limit": 64, "finetune_epochs": 2, "iterative_steps": 2}


@pytest.fixture(scope="module")
def pruned_cnn(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    outcome = run_prune(TargetOptions(name="cnn", tiny=True, root=root), PruneConfig(ratio=0.5, **FAST))
    return root, outcome


def test_stage_writes_record_report_and_manifest(pruned_cnn):
    _, outcome = pruned_cnn
    assert outcome.record == outcome.run_dir / "pruned" / "model.json"
    report = json.loads((outcome.record.parent / REPORT).read_text())
    assert report["params"]["after"] < report["params"]["before"]
    assert report["file_bytes"]["after"] < report["file_bytes"]["before"]
    assert report["metric"]["before"] is not None and report["metric"]["after_finetune"] is not None
    assert [f["step"] for f in report["finetune"]] == [1, 2]  # fine-tuning spread over the iterative steps
    assert report["widths"]["after"]["features.0"]["out"] == 2  # tiny widths (4, 8, 8) at ratio 0.5
    stage = json.loads((outcome.run_dir / "manifest.json").read_text())["stages"]["pruned"]
    assert stage["status"] == "done" and stage["metrics"]["params_after"] == report["params"]["after"]
    outputs = {o["path"] for o in stage["outputs"]}
    assert {"pruned/model.json", "pruned/model.safetensors", f"pruned/{REPORT}"} <= outputs
    json.dumps(outcome.to_json())  # JSON-serializable as promised


def test_pruned_checkpoint_is_a_variant_later_stages_can_use(pruned_cnn):
    root, outcome = pruned_cnn
    target = resolve_target(TargetOptions(name=str(outcome.run_dir), root=root, variant="pruned/model.json"))
    assert target.model.features[0].out_channels == 2
    x = make_inputs(target.spec, target.config, 2)
    assert target.model(*x).shape == (2, target.config.num_classes)


def test_same_stage_name_twice_is_refused_and_another_name_works(pruned_cnn):
    root, outcome = pruned_cnn
    with pytest.raises(ConfigError, match="--name"):
        run_prune(TargetOptions(name=str(outcome.run_dir), root=root), PruneConfig(ratio=0.3, data_limit=64))
    second = run_prune(TargetOptions(name=str(outcome.run_dir), root=root),
                       PruneConfig(ratio=0.3, method="unstructured", name="sparse", data_limit=64))
    assert second.result["sparsity"]["weights"] >= 0.3
    assert second.result["params"]["after"] == second.result["params"]["before"]
    assert "structure" not in json.loads(second.record.read_text())  # shapes unchanged: a plain checkpoint


def test_tampered_structure_or_weights_are_refused(pruned_cnn, tmp_path):
    _, outcome = pruned_cnn
    record = json.loads(outcome.record.read_text())
    bad = tmp_path / "model.json"
    (tmp_path / "model.safetensors").write_bytes(outcome.record.with_suffix(".safetensors").read_bytes())
    record["structure"]["shapes"]["features.0.weight"] = [3, 1, 3, 3]  # one channel more than the weights hold
    bad.write_text(json.dumps(record))
    with pytest.raises(InputFileError, match="does not fit"):
        load_checkpoint(bad)
    record["structure"] = {"format": "something-else"}
    bad.write_text(json.dumps(record))
    with pytest.raises(InputFileError, match="pruned-structure format"):
        load_checkpoint(bad)


def test_taylor_importance_uses_the_training_loss_and_bn_scale_needs_batchnorm(tmp_path):
    out = run_prune(TargetOptions(name="cnn", tiny=True, root=tmp_path),
                    PruneConfig(ratio=0.5, importance="taylor", data_limit=64))
    assert out.result["params"]["after"] < out.result["params"]["before"]
    with pytest.raises(ConfigError, match="bn-scale"):
        run_prune(TargetOptions(name="dqn", tiny=True, root=tmp_path), PruneConfig(ratio=0.5, importance="bn-scale"))


def test_global_pruning_and_unsupported_arch_before_any_run(tmp_path):
    out = run_prune(TargetOptions(name="mlp", tiny=True, root=tmp_path),
                    PruneConfig(ratio=0.5, global_pruning=True, data_limit=64))
    model = load_checkpoint(out.record).model
    assert model.head.in_features == model.features[4].out_features < 4
    with pytest.raises(UnsupportedError, match="Torch-Pruning"):
        run_prune(TargetOptions(name="seq2seq_gru", tiny=True, root=tmp_path / "none"), PruneConfig())
    assert not (tmp_path / "none").exists()  # refused before a run directory was made


def test_entry_module_is_what_gets_pruned(tmp_path):
    out = run_prune(TargetOptions(name="gan", tiny=True, root=tmp_path), PruneConfig(ratio=0.5, data_limit=64))
    ck = load_checkpoint(out.record)
    assert ck.model.generator[0].out_features == 8  # tiny gen_hidden 16 at ratio 0.5
    assert ck.model.discriminator[0].out_features == 8  # training-only half: left as it was
    z = make_inputs(ck.spec, ck.config, 2)
    assert entry_module(ck.model, ck.spec)(*z).shape == (2, 64)
    assert torch.isfinite(ck.model(*z)).all()


def test_bench_measures_before_and_after_through_the_bench_stage(tmp_path):
    out = run_prune(TargetOptions(name="mlp", tiny=True, root=tmp_path),
                    PruneConfig(ratio=0.5, data_limit=64, bench=True, bench_budget_s=0.2))
    rows = out.result["latency"]["rows"]
    assert set(rows) == {"eager@b1", "eager@b8", "onnxruntime@b1", "onnxruntime@b8", "openvino@b1", "openvino@b8"}
    assert all(r["before_ms"] > 0 and r["after_ms"] > 0 and r["speedup"] > 0 for r in rows.values())
    assert (out.run_dir / "pruned" / "model.onnx").is_file() and out.result["latency"]["problems"] == []
    assert json.loads((out.record.parent / REPORT).read_text())["latency"]["rows"] == rows


def test_width_note_names_slow_widths_without_quoting_another_model():
    from dlopt.prune.report import _width_note

    rows = [{"before": 64, "after": 44}, {"before": 128, "after": 89}, {"before": 10, "after": 7}]
    exact = _width_note(PruneConfig(ratio=0.3, round_to=1), rows)
    assert "44, 89" in exact and "7" not in exact.split("are not")[0] and "nearest multiple of 8" in exact
    assert "ResNet" not in exact and "0.72x" not in exact  # no other model's figures on this one
    assert "--round-to 8" in _width_note(PruneConfig(ratio=0.3, global_pruning=True), rows)
    assert _width_note(PruneConfig(ratio=0.3), [{"before": 64, "after": 48}, {"before": 6, "after": 4}]) is None
