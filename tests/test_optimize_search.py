"""The optimize search on a trained tiny MLP, in process: the capability filter, the build cache (a prune is made
once per study, a changed or half-built file is never used), the pick and its record, an unreachable goal."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.contract.target import Target
from dlopt.core.runs import Run
from dlopt.optimize.config import OptimizeConfig

QUICK = {"threads": (1,), "finetune_epochs": 1, "trial_timing_s": 0.2, "final_timing_s": 0.4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    root = tmp_path_factory.mktemp("optimize-trained")
    return Path(train(TrainConfig(arch="mlp", out=root, tiny=True, epochs=3, progress=False)).run_dir)


def _copy(trained: Path, tmp_path: Path) -> Run:
    dest = tmp_path / "artifacts" / "mlp" / trained.name
    shutil.copytree(trained, dest)
    return Run.open(dest)


def _optimize(run: Run, spec=None, **kw):
    from dlopt.optimize.stage import run_optimize

    target = Target.of_run(run)
    if spec is not None:
        target = dataclasses.replace(target, spec=spec)
    return run_optimize(target, OptimizeConfig(**{**QUICK, **kw}))


def test_a_prune_ratio_is_pruned_once_however_many_trials_use_it(trained, tmp_path, monkeypatch):
    from dlopt.prune import stage as prune_stage

    calls = []
    real = prune_stage.run_prune
    monkeypatch.setattr(prune_stage, "run_prune", lambda *a, **k: (calls.append(a[1].ratio), real(*a, **k))[1])
    run = _copy(trained, tmp_path)
    out = _optimize(run, trials=3, prune_ratios=(0.5,), runtimes=("eager", "torchscript"), precisions=("fp32",))
    done = [t for t in out.report.trials if t["state"] == "complete"]
    assert len(done) == 2 and {t["candidate"]["ratio"] for t in done} == {0.5}
    assert calls == [0.5] and out.report.builds["prune"] == 1  # two trials, one prune (and one fine-tuning)
    # the space holds 2 candidates: a third trial would only time the same file again
    assert out.report.search["stopped"] == "every one of the 2 candidates was tried"
    again = _optimize(run, trials=4, prune_ratios=(0.5,), runtimes=("eager", "torchscript"), precisions=("fp32",))
    assert calls == [0.5] and "prune" not in again.report.builds  # a later process finds it in the run's cache


def test_a_changed_or_unfinished_file_is_built_again(trained, tmp_path):
    from dlopt.optimize.cache import Cache
    from dlopt.optimize.config import Precision, Runtime

    run = _copy(trained, tmp_path)
    cache = Cache(run, OptimizeConfig(**QUICK))
    art = cache.artifact(cache.base(), Precision.FP32, Runtime.ONNXRUNTIME)
    assert cache.builds["export"] == 1 and cache.artifact(cache.base(), Precision.FP32, Runtime.ONNXRUNTIME) == art
    assert cache.builds["export"] == 1  # found: same key, done stage, same sha256
    art.path.write_bytes(art.path.read_bytes() + b"tampered")
    rebuilt = cache.artifact(cache.base(), Precision.FP32, Runtime.ONNXRUNTIME)
    assert cache.builds["export"] == 2 and rebuilt.path == art.path and not art.path.read_bytes().endswith(b"tampered")
    entry = Run.open(art.path.parent)  # a build whose process died: its stage is `running` under a dead pid
    entry.record_stage("export", status="running", pid=2 ** 22 + 7, host=socket.gethostname())
    assert not entry.artifact_status(art.path).trusted
    cache.artifact(cache.base(), Precision.FP32, Runtime.ONNXRUNTIME)
    assert cache.builds["export"] == 3 and Run.open(art.path.parent).stage_status("export") == "done"


def test_a_spec_without_quantize_never_gets_a_quantized_trial(trained, tmp_path):
    import optuna

    from dlopt.optimize.study import storage_url

    run = _copy(trained, tmp_path)
    spec = Target.of_run(run).spec
    no_quant = dataclasses.replace(spec, stages=spec.stages - {"quantize"},
                                   limits={**spec.limits, "quantize": "not quantized in this test"})
    out = _optimize(run, spec=no_quant, trials=2, prune_ratios=(0.0,), runtimes=("onnxruntime", "openvino"))
    study = optuna.load_study(study_name="optimize", storage=storage_url(run.path, OptimizeConfig()))
    offered = {c for t in study.trials for c in t.distributions["format"].choices}
    assert offered == {"fp32@onnxruntime", "fp32@openvino"}  # int8 and fp16 on these runtimes were never offered
    assert out.report.space["left_out"]["int8@openvino"] == "not quantized in this test"
    with_quant = _optimize(_copy(trained, tmp_path / "b"), trials=1, prune_ratios=(0.0,),
                           runtimes=("onnxruntime", "openvino"))
    assert "int8@openvino" in with_quant.report.space["formats"]  # the same options offer it when the spec allows


def test_the_pick_is_re_timed_verified_and_recorded_as_a_stage(trained, tmp_path):
    run = _copy(trained, tmp_path)
    out = _optimize(run, trials=3, prune_ratios=(0.0, 0.5), runtimes=("onnxruntime",))
    r = out.report
    assert r.reached and r.pick is not None and r.pick["retimed"] and r.pick["verdict"]["drop"] <= 1.0
    assert {"fp32 eager", "fp32 onnxruntime"} <= set(r.pick["timing"]) and r.pick["speedup_vs_eager"] > 0
    assert r.verification and r.verification["passed"] and r.shipped == ("optimized/model.onnx",)
    assert all(f["retimed"] for f in r.finalists) and r.fingerprint["cpu"]["cores"] >= 1
    stage = run.manifest()["stages"]["optimize"]
    assert stage["status"] == "done" and stage["metrics"]["reached"] is True
    assert {o["path"] for o in stage["outputs"]} == {"optimized/model.onnx", "optimized/optimize_report.json",
                                                     "optimized/optimize_report.md", "optimized/optimize_pareto.png"}
    assert r.pick["label"] in (run.path / "optimized" / "optimize_report.md").read_text()
    assert run.artifact_status(run.path / "optimized" / "model.onnx").trusted
    from dlopt.core.results import read_result
    from dlopt.optimize.record import OptimizeReport

    assert read_result(OptimizeReport, out.report_path).pick["label"] == r.pick["label"]
    assert str(run.path) not in out.report_path.read_text()  # run files never say where the run lives
    from dlopt.bench.config import Backend, BenchConfig
    from dlopt.bench.runner import bench
    from dlopt.report import write_report

    bench(Target.of_run(run), BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1,), budget_s=0.2))
    md, page, _ = write_report(run)  # the run report gains the optimize section: the pick, the plot, every trial
    text = md.read_text()
    assert "## Optimize" in text and f"Pick: {r.pick['label']}" in text and "report_optimize.png" in text
    assert all(f"| {t['number']} | {t['state']} |" in text for t in r.trials)
    assert "<h2>Optimize</h2>" in page.read_text() and (run.path / "report_optimize.png").stat().st_size > 1000
    from dlopt.runtime.formats import ARTIFACT_SUFFIXES

    trusted, skipped = run.scan_artifacts(ARTIFACT_SUFFIXES)  # the cache's entries are runs of their own: the run
    assert run.path / "optimized" / "model.onnx" in trusted and not skipped  # lists none of them, even as skipped
    assert "optimize/cache" not in text


def test_an_unreachable_goal_exits_1_naming_the_best_and_ships_nothing(trained, tmp_path):
    run = _copy(trained, tmp_path)
    res = CliRunner().invoke(app, ["optimize", str(run.path), "--target-latency", "0.000001", "--trials", "2",
                                   "--runtimes", "eager", "--threads", "1", "--finetune-epochs", "0",
                                   "--max-drop", "100"])
    assert res.exit_code == 1, res.output
    line = [ln for ln in res.output.splitlines() if ln.startswith("error")]
    assert len(line) == 1 and "goal not reached" in line[0] and "the best within 100 points is" in line[0]
    assert "limited by latency" in line[0] and " ms (" in line[0]
    assert not list((run.path / "optimized").glob("model.*"))  # nothing shipped, only the report
    report = json.loads((run.path / "optimized" / "optimize_report.json").read_text())
    assert report["reached"] is False and report["pick"] is None and report["shipped"] == []
    assert run.manifest()["stages"]["optimize"]["metrics"]["reached"] is False


def test_a_model_without_data_is_judged_on_held_out_rows_of_its_inputs_file(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(4, 16), "
                                     "torch.nn.ReLU(), torch.nn.Linear(16, 3))\n")
    np.savez(tmp_path / "x.npz", np.random.default_rng(0).standard_normal((64, 4)).astype("float32"))
    res = CliRunner().invoke(app, ["optimize", "net.py:build", "--input-shape", "4", "--inputs", "x.npz", "--trials",
                                   "2", "--runtimes", "onnxruntime", "--threads", "1", "--max-drop", "100",
                                   "--out", str(tmp_path / "a"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["basis"].startswith("agreement with fp32 on inputs file x.npz")
    assert "rows 48-63 (16 samples held out from calibration)" in report["basis"]
    assert all(t["drop"] is not None for t in report["trials"] if t["state"] == "complete")
