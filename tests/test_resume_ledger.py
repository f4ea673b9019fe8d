"""`dlopt pipeline --resume` trusts only what it hashed: cascading reruns, relative --out from another working
directory, missing outputs, and ledger entries whose hashes are None (issue 14)."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.fileio import sha256_file
from dlopt.core.runs import Run
from dlopt.pipeline import PipelineConfig, apply, ledger, run_pipeline

runner = CliRunner()

# No [train]: the fp32 model is built (seeded), so the whole chain runs in a few seconds.
SMALL = """
arch = "lenet5"
tiny = true
stages = ["prune", "quantize", "export", "bench"]
[prune]
ratio = 0.3
finetune_epochs = 0
data_limit = 64
[quantize]
exporter = "legacy"
calibration_samples = 16
timing_budget_s = 0.02
[export]
formats = ["onnx"]
exporter = "legacy"
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
budget_s = 0.02
threads = 1
"""
ALL = ["build", "prune", "quantize", "quantize-pruned", "export", "export-pruned", "evaluate", "bench", "report"]
PRUNE_AND_DOWN = {"prune", "quantize-pruned", "export-pruned", "evaluate", "bench", "report"}


def _steps(outcome_json: dict) -> dict[str, dict]:
    return {s["name"]: s for s in outcome_json["steps"]}


def _ledger(run_dir: Path) -> dict[str, dict]:
    return Run(run_dir).manifest()["pipeline"]["steps"]


def _resume(run_dir: Path | str, text: str = SMALL) -> dict[str, object]:
    cfg = apply(PipelineConfig(), tomllib.loads(text))
    outcome = run_pipeline(cfg, Path("unused"), resume=Path(run_dir), show_bars=False)
    assert not outcome.failed, outcome.steps
    return {s.name: s for s in outcome.steps}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A run made by the CLI with a RELATIVE --out from its own working directory (as `make demo` does)."""
    home = tmp_path_factory.mktemp("home")
    (home / "p.toml").write_text(SMALL)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        result = runner.invoke(app, ["pipeline", "--config", "p.toml", "--out", "artifacts", "--json"])
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in json.loads(result.stdout)["steps"]] == ALL
    return next((home / "artifacts" / "lenet5").iterdir())


def _copy(base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy" / base.name
    shutil.copytree(base, dst)
    return dst


def test_every_ledger_key_is_run_relative_and_hashed(base: Path) -> None:
    steps = _ledger(base)
    assert set(steps) == set(ALL)
    for name, entry in steps.items():
        assert entry["status"] == "done" and entry["outputs"], name
        for files in (entry["inputs"], entry["outputs"]):
            for k, v in files.items():
                assert isinstance(v, str) and len(v) == 64, (name, k, v)
                assert not Path(k).is_absolute() and not k.startswith("artifacts"), (name, k)
                assert sha256_file(base / k) == v, (name, k)


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
def test_resume_from_another_directory_skips_unchanged_steps(base: Path, tmp_path: Path, monkeypatch, how: str) -> None:
    before = {k: (v["inputs"], v["outputs"]) for k, v in _ledger(base).items() if k != "report"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    if how == "absolute":
        target = str(base)
    elif how == "relative":
        target = os.path.relpath(base, elsewhere)
    else:
        (elsewhere / "link").symlink_to(base.parent.parent, target_is_directory=True)
        target = f"link/lenet5/{base.name}"
    (elsewhere / "p.toml").write_text(SMALL)
    result = runner.invoke(app, ["pipeline", "--resume", target, "--config", "p.toml", "--json"])
    assert result.exit_code == 0, result.output
    steps = _steps(json.loads(result.stdout))
    assert {n for n, s in steps.items() if s["status"] == "skipped"} == set(ALL) - {"report"}, steps
    assert steps["report"]["reason"] == "rewritten on every run"
    assert not (elsewhere / "artifacts").exists()  # the resumed run is the same run, nothing new was made
    after = {k: (v["inputs"], v["outputs"]) for k, v in _ledger(base).items() if k != "report"}
    assert after == before


def test_a_new_prune_ratio_reruns_everything_downstream_of_prune(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)  # keys are run-relative, so a copied run resumes as itself
    old_int8 = sha256_file(run / "pruned-int8" / "model.onnx")
    old_fp32_onnx = json.loads((run / "pruned-int8" / "quantize_report.json").read_text())["size_bytes"]["fp32"]
    old_params = json.loads((run / "pruned" / "prune_report.json").read_text())["params"]["after"]
    steps = _resume(run, SMALL.replace("ratio = 0.3", "ratio = 0.4"))
    ran = {n for n, s in steps.items() if s.status == "ran"}
    assert ran == PRUNE_AND_DOWN, {n: (s.status, s.reason) for n, s in steps.items()}
    assert steps["prune"].reason == "its configuration changed"
    for name in PRUNE_AND_DOWN - {"prune"}:
        assert steps[name].reason == "upstream step prune reran", (name, steps[name].reason)
    new_params = json.loads((run / "pruned" / "prune_report.json").read_text())["params"]["after"]
    assert new_params < old_params
    assert sha256_file(run / "pruned-int8" / "model.onnx") != old_int8  # re-quantized from the new pruned model
    quant = json.loads((run / "pruned-int8" / "quantize_report.json").read_text())
    assert quant["size_bytes"]["fp32"] < old_fp32_onnx  # measured on the smaller (0.4) pruned model
    report = json.loads((run / "report.json").read_text())
    assert report["prune"]["pruned"]["ratio"] == 0.4
    row = next(r for r in report["rows"] if r["variant"] == "pruned-int8")
    assert row["parameters"] == new_params


def test_a_deleted_output_reruns_its_step_and_everything_downstream(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    (run / "int8" / "model.onnx").unlink()
    steps = _resume(run)
    ran = {n for n, s in steps.items() if s.status == "ran"}
    assert ran == {"quantize", "evaluate", "bench", "report"}, {n: (s.status, s.reason) for n, s in steps.items()}
    assert steps["quantize"].reason == "output missing: int8/model.onnx"
    assert steps["evaluate"].reason == steps["bench"].reason == "upstream step quantize reran"
    assert (run / "int8" / "model.onnx").is_file()


def test_a_killed_resume_still_reruns_downstream_next_time(base: Path, tmp_path: Path) -> None:
    """prune reran, then the process died before quantize-pruned: the next resume must not trust it."""
    run = _copy(base, tmp_path)
    cfg = apply(PipelineConfig(), tomllib.loads(SMALL.replace("ratio = 0.3", "ratio = 0.4")))
    from dlopt.models.registry import get_spec
    from dlopt.pipeline import runner as prunner
    from dlopt.pipeline import steps as psteps

    spec = get_spec("lenet5")
    ctx = psteps.Context(Run(run), cfg, spec, lambda _m: None, False)
    prune = next(s for s in prunner.plan(cfg, spec) if s.name == "prune")
    assert prunner._do(prune, ctx, resume=True).status == "ran"  # ... and here the process is killed
    steps = _resume(run, SMALL.replace("ratio = 0.3", "ratio = 0.4"))
    assert steps["prune"].status == "skipped"
    assert steps["quantize-pruned"].status == "ran" and steps["quantize-pruned"].reason


# --- the ledger on its own ---------------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run.create(tmp_path / "artifacts", "lenet5", {"arch": "lenet5"})


def _set(run: Run, step: str, **fields: object) -> None:
    run.update(lambda m: m["pipeline"]["steps"][step].update(fields))


def test_an_entry_whose_hashes_are_none_is_not_skipped(run: Run) -> None:
    (run.path / "in.bin").write_bytes(b"in")
    (run.path / "out.bin").write_bytes(b"out")
    ledger.record(run, "s", {"a": 1}, [run.path / "in.bin"], [run.path / "out.bin"], 0.1)
    assert ledger.why_rerun(run, "s", {"a": 1}, [run.path / "in.bin"]) is None
    _set(run, "s", outputs={"out.bin": None})
    assert ledger.why_rerun(run, "s", {"a": 1}, [run.path / "in.bin"]) == "output never hashed: out.bin"
    _set(run, "s", outputs={"out.bin": sha256_file(run.path / "out.bin")}, inputs={"in.bin": None})
    assert ledger.why_rerun(run, "s", {"a": 1}, [run.path / "in.bin"]) == "input never hashed: in.bin"


def test_a_file_missing_on_both_sides_is_not_unchanged(run: Run) -> None:
    (run.path / "out.bin").write_bytes(b"out")
    ledger.record(run, "s", {}, [run.path / "gone.bin"], [run.path / "out.bin", run.path / "never.bin"], 0.1)
    entry = _ledger(run.path)["s"]
    assert entry["inputs"] == {"gone.bin": None} and entry["outputs"]["never.bin"] is None  # recorded, not dropped
    assert ledger.why_rerun(run, "s", {}, [run.path / "gone.bin"]) == "input missing: gone.bin"
    (run.path / "gone.bin").write_bytes(b"now here")
    assert ledger.why_rerun(run, "s", {}, [run.path / "gone.bin"]) == "input never hashed: gone.bin"


def test_an_entry_without_outputs_or_an_input_is_not_trusted(run: Run) -> None:
    (run.path / "in.bin").write_bytes(b"in")
    (run.path / "out.bin").write_bytes(b"out")
    ledger.record(run, "s", {}, [], [run.path / "out.bin"], 0.1)
    assert ledger.why_rerun(run, "s", {}, [run.path / "in.bin"]) == "input changed: in.bin"  # a new input
    ledger.record(run, "s", {}, [run.path / "in.bin"], [], 0.1)
    assert ledger.why_rerun(run, "s", {}, [run.path / "in.bin"]) == "no outputs recorded"


def test_changed_input_output_and_upstream_are_each_a_reason(run: Run) -> None:
    for name in ("in.bin", "out.bin", "up.bin"):
        (run.path / name).write_bytes(name.encode())
    ledger.record(run, "up", {}, [], [run.path / "up.bin"], 0.1)
    ledger.record(run, "s", {}, [run.path / "in.bin"], [run.path / "out.bin"], 0.1)
    assert ledger.why_rerun(run, "s", {}, [run.path / "in.bin"], after=("up",)) is None
    assert ledger.why_rerun(run, "s", {"x": 1}, [run.path / "in.bin"]) == "its configuration changed"
    (run.path / "in.bin").write_bytes(b"changed")
    assert ledger.why_rerun(run, "s", {}, [run.path / "in.bin"]) == "input changed: in.bin"
    ledger.record(run, "s", {}, [run.path / "in.bin"], [run.path / "out.bin"], 0.1)
    (run.path / "out.bin").write_bytes(b"changed")
    assert ledger.why_rerun(run, "s", {}, [run.path / "in.bin"]) == "output changed: out.bin"
    ledger.record(run, "s", {}, [run.path / "in.bin"], [run.path / "out.bin"], 0.1)
    ledger.record(run, "up", {}, [], [run.path / "up.bin"], 0.1)  # the upstream step reran after s
    assert ledger.why_rerun(run, "s", {}, [run.path / "in.bin"], after=("up",)) == "upstream step up reran"


def test_keys_are_the_same_whichever_path_names_the_file(run: Run, tmp_path: Path, monkeypatch) -> None:
    (run.path / "sub").mkdir()
    (run.path / "sub" / "f.bin").write_bytes(b"f")
    link = tmp_path / "link"
    link.symlink_to(run.path, target_is_directory=True)
    monkeypatch.chdir(run.path.parent)
    names = [run.path / "sub" / "f.bin", Path("sub/f.bin"), link / "sub" / "f.bin",
             run.path / "sub" / ".." / "sub" / "f.bin"]
    assert {ledger.key(run, p) for p in names} == {"sub/f.bin"}
    assert ledger.hashes(run, [run.path / "sub"]) == {"sub/f.bin": sha256_file(run.path / "sub" / "f.bin")}
    assert ledger.hashes(Run(link), [link / "sub" / "f.bin"]) == ledger.hashes(run, ["sub/f.bin"])


# --- dlopt train --resume RUN --epochs N -------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    result = runner.invoke(app, ["train", "mlp", "--tiny", "--epochs", "1", "--limit", "64", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["run_dir"])


def test_train_resume_with_more_epochs_trains_on_to_that_total(one_epoch: Path, tmp_path: Path) -> None:
    run = _copy(one_epoch, tmp_path)
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_dir"] == str(run) and data["epochs_run"] == 3 and data["hparams"]["epochs"] == 3
    assert [r["epoch"] for r in data["history"]] == [1, 2, 3]  # epoch 1 kept, 2 and 3 trained on top of it
    assert data["history"][0] == json.loads((one_epoch / "metrics.jsonl").read_text().splitlines()[0])
    assert Run(run).manifest()["stages"]["train"]["config"]["train"]["epochs"] == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "1"], "has already trained 1 epoch(s), so --epochs 1 leaves nothing to train"),
    (["--lr", "0.5"], "--lr cannot change when resuming"),
    (["--batch-size", "3"], "--batch-size cannot change when resuming"),
    (["cnn"], "NAME cannot change when resuming"),
])
def test_train_resume_that_cannot_do_what_was_asked_says_why(one_epoch: Path, args: list[str], message: str) -> None:
    before = (one_epoch / "train_state.safetensors").read_bytes()
    result = runner.invoke(app, ["train", *args, "--resume", str(one_epoch)])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert (one_epoch / "train_state.safetensors").read_bytes() == before  # nothing trained, nothing rewritten


def test_train_resume_of_an_early_stopped_run_says_why(one_epoch: Path, monkeypatch) -> None:
    from dlopt.train import state

    stopped = state.TrainState(epoch=1, best=0.5, best_epoch=1, bad_epochs=9)
    monkeypatch.setattr(state, "saved_progress", lambda _run: stopped)
    result = runner.invoke(app, ["train", "--resume", str(one_epoch), "--epochs", "4"])
    assert result.exit_code == 2 and "stopped early after epoch 1" in result.output, result.output


def test_a_changed_inputs_file_reruns_the_steps_that_read_it(tmp_path: Path) -> None:
    """--resume compared the --inputs path in the config, never the file: new samples in the same file were skipped."""
    import numpy as np

    run = Run.create(tmp_path / "runs", "lenet5", {"arch": "lenet5"})
    samples = tmp_path / "mine.npz"
    np.savez(samples, x=np.zeros((4, 1, 28, 28), np.float32))
    ledger.store_config(run, {"inputs": str(samples)})
    out = run.path / "out.bin"
    out.write_bytes(b"x")
    for step in ("build", "quantize", "bench"):
        ledger.record(run, step, {}, [], [out], 1.0)
    assert all(ledger.why_rerun(run, s, {}, []) is None for s in ("build", "quantize", "bench"))
    np.savez(samples, x=np.ones((4, 1, 28, 28), np.float32))  # same path, other samples
    assert ledger.why_rerun(run, "build", {}, []) is None  # never reads it
    for step in ("quantize", "bench"):
        assert ledger.why_rerun(run, step, {}, []) == f"input changed: {samples.resolve()}"
    ledger.store_config(run, {"inputs": ""})  # resumed without --inputs: what they used is gone
    assert ledger.why_rerun(run, "bench", {}, []) == f"input changed: {samples.resolve()}"
