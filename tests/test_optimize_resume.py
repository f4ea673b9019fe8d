"""A `dlopt optimize` child process killed in the middle of a build: SIGKILL then `--resume` loses no finished
trial and never uses the half-built file; Ctrl-C exits 130 with the exact resume command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlopt.core.runs import Run

# With --seed 10 the sampler's first draws are (unpruned, fp32) then (prune 0.3, ...): one trial finishes, the next
# prunes, and the pause hook holds that prune with its files staged, not yet done (dlopt.core.staging.pause_point).
ARGS = ["--trials", "4", "--runtimes", "onnxruntime", "--threads", "1", "--finetune-epochs", "1", "--seed", "10"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    root = tmp_path_factory.mktemp("optimize-resume")
    return Path(train(TrainConfig(arch="mlp", out=root, tiny=True, epochs=3, progress=False)).run_dir)


def _copy(trained: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "artifacts" / "mlp" / trained.name
    shutil.copytree(trained, dest)
    return dest.resolve()


def _start(args: list[str], pause: str | None, marker: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    if pause:
        env.update(DLOPT_TEST_PAUSE_AT=pause, DLOPT_TEST_PAUSE_MARKER=str(marker), DLOPT_TEST_PAUSE_S="300")
    return subprocess.Popen([sys.executable, "-m", "dlopt", "optimize", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _held(proc: subprocess.Popen, marker: Path, timeout: float = 400.0) -> None:
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the child ended before the paused build (rc {proc.returncode}): {proc.stderr.read()[-800:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the child never reached the paused build")
        time.sleep(0.2)


def _trials(run: Path) -> dict[int, tuple[str, tuple[float, ...] | None, dict]]:
    import optuna

    study = optuna.load_study(study_name="optimize", storage=f"sqlite:///{run / 'optimize' / 'study.db'}")
    return {t.number: (t.state.name, tuple(t.values) if t.values else None, t.user_attrs) for t in study.trials}


def _staged_prunes(run: Path) -> list[Path]:
    return [p for p in (run / "optimize" / "cache").glob("*/.staging/pruned.*/pruned/model.json")]


def test_sigkill_mid_build_then_resume_keeps_every_finished_trial_and_rebuilds(trained, tmp_path):
    run, marker = _copy(trained, tmp_path), tmp_path / "paused"
    child = _start([str(run), *ARGS], "pruned:staged", marker)
    _held(child, marker)
    before = _trials(run)
    finished = {n: v for n, (s, v, _) in before.items() if s == "COMPLETE"}
    running = [n for n, (s, _, _) in before.items() if s == "RUNNING"]
    half = _staged_prunes(run)
    assert finished and running and half  # a finished trial, one mid-build, its pruned model staged only
    entry = half[0].parents[3]
    assert not (entry / "pruned" / "model.json").exists()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)

    done = subprocess.run([sys.executable, "-m", "dlopt", "optimize", "--resume", str(run)], check=False, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _trials(run)
    assert all(after[n][0] == "COMPLETE" and after[n][1] == v for n, v in finished.items())  # none lost or changed
    assert after[running[0]][0] == "FAIL" and "killed" in after[running[0]][2]["failed_because"]
    assert sum(s == "COMPLETE" for s, _, _ in after.values()) == 4
    assert not _staged_prunes(run)  # the staged half was removed, never moved into place
    stage = Run.open(entry).manifest()["stages"]["pruned"]
    if stage["status"] == "done":  # drawn again after the resume: rebuilt by the resuming process
        assert stage["pid"] != child.pid and (entry / "pruned" / "model.json").is_file()
    else:  # not drawn again: the killed build stays what it was, unusable
        assert Run.open(entry).stage_status("pruned") == "interrupted"
        assert not (entry / "pruned" / "model.json").exists()
    ran = Run.open(run)
    assert ran.manifest()["stages"]["optimize"]["status"] == "done"
    for t in [v for v in after.values() if v[0] == "COMPLETE"]:  # every finished trial's file is one a done
        art = run / t[2]["result"]["artifact"]  # stage vouches for, unchanged since
        owner = next(p for p in [art.parent, art.parent.parent] if (p / "manifest.json").is_file())
        assert Run.open(owner).artifact_status(art).trusted, art


def test_ctrl_c_exits_130_with_the_exact_resume_command(trained, tmp_path):
    run, marker = _copy(trained, tmp_path), tmp_path / "paused"
    child = _start([str(run), *ARGS], "pruned:staged", marker)
    _held(child, marker)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-1500:]
    assert f"dlopt optimize --resume {run}" in " ".join(err.split())
    states = {s for s, _, _ in _trials(run).values()}
    assert "RUNNING" not in states and "FAIL" in states  # the interrupted trial is failed at once, not left running
    assert not _staged_prunes(run)
