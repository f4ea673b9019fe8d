"""Faults, not typos: hostile files, names that try to escape, Ctrl-C, crashes mid-write, concurrent runs."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import OutputError
from dlopt.core.runs import Run

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


# -- pickles ----------------------------------------------------------------------------------------------------

class Trap:
    """Unpickling this creates the marker file: proof that a loader ran code hidden in the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture
def trap(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Trap(marker))
    pickle.loads(payload)  # the trap is armed: loading it really does create the marker
    assert marker.exists()
    marker.unlink()
    return payload, marker


@pytest.mark.parametrize(("args", "name"), [
    (["export", "--checkpoint", "{f}"], "model.pt"),
    (["export", "--checkpoint", "{f}"], "weights.pkl"),
    (["verify", "{f}", "--checkpoint", "{f}"], "model.pt2"),
    (["verify", "{f}", "--checkpoint", "{f}"], "model.ts"),
])
def test_booby_trapped_pickle_does_nothing_without_trust_pickle(args, name, trap, tmp_path: Path):
    payload, marker = trap
    hostile = tmp_path / name
    hostile.write_bytes(payload)
    result = _invoke(*[a.format(f=hostile) for a in args], "--out", tmp_path / "out")
    assert result.exit_code == 6, result.output
    assert "--trust-pickle" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_trusting_a_pickle_checkpoint_still_never_unpickles_it(trap, tmp_path: Path):
    """dlopt has no pickle checkpoint loader at all: with --trust-pickle it asks for the safetensors record."""
    payload, marker = trap
    (tmp_path / "model.pt").write_bytes(payload)
    result = _invoke("export", "--checkpoint", tmp_path / "model.pt", "--trust-pickle", "--out", tmp_path / "out")
    assert result.exit_code == 3 and "not found" in result.output
    assert not marker.exists()


def test_tampered_cifar_batches_are_refused_before_unpickling(trap, tmp_path: Path):
    """CIFAR-10's python batches are pickles: torchvision unpickles them only when their md5 is the official one."""
    payload, marker = trap
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (folder / name).write_bytes(payload)
    result = _invoke("train", "simple_cnn", "--tiny", "--data", "cifar10", "--data-path", tmp_path,
                     "--out", tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert not marker.exists()


# -- names that try to leave the output root ---------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["../../escaped", "/tmp/escaped-abs", "..", "a/../../b", "~/x"])
def test_run_ids_cannot_escape_the_root(run_id: str, out_root: Path):
    try:
        run = Run.create(out_root, "mlp", {}, run_id=run_id)
    except OutputError:
        return  # refused outright is fine too
    assert out_root.resolve() in run.path.resolve().parents
    assert not (out_root.parent / "escaped").exists() and not Path("/tmp/escaped-abs").exists()


def test_names_inside_a_run_cannot_escape(out_root: Path, tmp_path: Path):
    run = Run.create(out_root, "mlp", {})
    for parts in [("..", "..", "x"), ("../x",), ("/etc/passwd",), ("..",)]:
        try:
            assert run.path.resolve() in run.file(*parts).parents  # made safe: stays inside
        except OutputError:
            pass  # or refused outright
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (run.path / "link.json").symlink_to(outside)  # a symlink planted in the run points out of it
    with pytest.raises(OutputError, match="outside"):
        run.file("link.json")


def test_a_variant_path_cannot_leave_its_run(out_root: Path):
    from dlopt.contract.target import TargetOptions, resolve_target

    run = Run.create(out_root, "mlp", {"arch": "mlp", "checkpoint": "model.json"})
    with pytest.raises(OutputError, match="outside"):
        resolve_target(TargetOptions(name=str(run.path), variant="../../../../etc/model.json"))


# -- Ctrl-C, crashes, kills ----------------------------------------------------------------------------------------

def test_ctrl_c_during_export_removes_the_partial_file(tmp_path: Path, monkeypatch):
    import onnx

    def interrupted_save(proto, path, *args, **kwargs):
        Path(path).write_bytes(b"half an onnx file")  # the exporter was mid-write when Ctrl-C came
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save_model", interrupted_save)
    result = _invoke("export", "mlp", "--tiny", "--format", "onnx", "--exporter", "legacy", "--no-verify",
                     "--out", tmp_path)
    assert result.exit_code == 130 and "interrupted" in result.output
    [run] = list(tmp_path.glob("mlp/*"))
    assert not (run / "model.onnx").exists() and not _temps(tmp_path)
    assert json.loads((run / "manifest.json").read_text())["stages"]["export"]["status"] == "interrupted"


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _stage_status(root: Path, stage: str) -> str | None:
    for manifest in root.glob("*/*/manifest.json"):
        try:
            return json.loads(manifest.read_text())["stages"].get(stage, {}).get("status")
        except json.JSONDecodeError:
            return None
    return None


@pytest.mark.parametrize(("args", "stage", "ready"), [
    (["train", "mlp", "--set", "hidden_sizes=512,512", "--epochs", "500", "--limit", "512"], "train",
     lambda root: any(root.glob("*/*/train_state.safetensors"))),
    (["bench", "mlp", "--tiny", "--backend", "eager", "--budget-s", "60"], "bench",
     lambda root: _stage_status(root, "bench") == "running"),
])
def test_sigint_stops_cleanly(args, stage, ready, tmp_path: Path):
    """A real Ctrl-C (SIGINT) to a running dlopt: exit 130, the stage marked interrupted, no temporary files."""
    proc = subprocess.Popen([sys.executable, "-m", "dlopt", *args, "--out", str(tmp_path)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: ready(tmp_path), proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _stage_status(tmp_path, stage) == "interrupted"
    assert not _temps(tmp_path)
    if stage == "bench":
        assert not list(tmp_path.glob("*/*/bench*.json"))  # no result file from a run that did not finish


def test_crash_between_state_tensors_and_json_copy_still_resumes(tmp_path: Path, monkeypatch):
    """The state commits in one file: a process dying before the readable JSON copy loses nothing."""
    from dlopt.train import state

    objects = {"model": {"w": torch.arange(4.0)}}
    state.save_state(tmp_path, objects, state.TrainState(epoch=1))

    def die(*_a, **_k):
        raise SystemExit("killed")

    monkeypatch.setattr(state, "write_json_atomic", die)
    with pytest.raises(SystemExit):
        state.save_state(tmp_path, {"model": {"w": torch.arange(4.0) * 2}}, state.TrainState(epoch=2))
    loaded, progress = state.load_state(tmp_path)
    assert progress.epoch == 2 and torch.equal(loaded["model"]["w"], torch.arange(4.0) * 2)


def test_run_killed_before_its_first_epoch_resumes_to_the_same_weights(tmp_path: Path):
    from dlopt.train import TrainConfig, train

    cfg = TrainConfig(arch="mlp", tiny=True, epochs=2, limit=64, out=tmp_path / "a", progress=False)
    full = Path(train(cfg).run_dir)

    class Killed(KeyboardInterrupt):
        pass

    def kill(epoch: int, row: dict) -> None:
        raise Killed

    with pytest.raises(Killed):
        train(TrainConfig(**{**cfg.__dict__, "out": tmp_path / "b"}), on_epoch=kill)
    [run] = list((tmp_path / "b" / "mlp").iterdir())
    for name in ("train_state.safetensors", "train_state.json", "metrics.jsonl"):  # as if killed before epoch 1 ended
        (run / name).unlink()
    (run / ".model.safetensors.k1ll3d00.tmp").write_bytes(b"left by SIGKILL")
    train(TrainConfig(arch="", resume=run, progress=False))
    a, b = load_file(str(full / "train_state.safetensors")), load_file(str(run / "train_state.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not _temps(run)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_epoch(tmp_path: Path, monkeypatch):
    from dlopt.models.registry import get_spec
    from dlopt.train.families import get_family
    from dlopt.train.family import NonFiniteLoss

    family = get_family(get_spec("mlp"))
    real = family.run_epoch

    def blow_up(self, model, opts, scheds, epoch, on_step):
        if epoch >= 1:
            raise NonFiniteLoss(epoch, 2, {"loss": float("nan")})
        return real(self, model, opts, scheds, epoch, on_step)

    monkeypatch.setattr(family, "run_epoch", blow_up)
    result = _invoke("train", "mlp", "--tiny", "--epochs", "3", "--limit", "64", "--out", tmp_path, "--json")
    assert result.exit_code == 1 and "non-finite loss" in result.output and "Traceback" not in result.output
    [run] = list(tmp_path.glob("mlp/*"))
    assert json.loads((run / "model.json").read_text())["metrics"]["epoch"] == 1
    weights = load_file(str(run / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


# -- concurrency -------------------------------------------------------------------------------------------------

def test_two_trainings_on_one_root_never_share_a_directory(tmp_path: Path):
    cmd = [sys.executable, "-m", "dlopt", "train", "mlp", "--tiny", "--epochs", "1", "--limit", "32",
           "--out", str(tmp_path), "--json"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    dirs = {json.loads(out)["run_dir"] for out, _ in outs}
    assert len(dirs) == 2
    for d in dirs:
        manifest = json.loads((Path(d) / "manifest.json").read_text())
        assert manifest["run_id"] == Path(d).name and manifest["stages"]["train"]["status"] == "done"
        assert load_file(str(Path(d) / "model.safetensors"))


def test_a_generated_run_id_that_is_taken_is_drawn_again(out_root: Path, monkeypatch):
    import dlopt.core.runs

    ids = iter(["20260101-000000-aaaa", "20260101-000000-aaaa", "20260101-000000-bbbb"])
    monkeypatch.setattr(dlopt.core.runs, "new_run_id", lambda: next(ids))
    first = Run.create(out_root, "mlp", {})
    second = Run.create(out_root, "mlp", {})  # same second, same random part: a real race, made certain here
    assert first.path != second.path and second.run_id.endswith("bbbb")
