"""Long native calls stop (issue 21): an ONNX Loop of 10^9 steps is ended by the verify time limit and by Ctrl-C
(ONNX Runtime's RunOptions.terminate), promptly and with dlopt's own line and exit code; TorchScript calls, which
cannot be stopped mid-call, say so when the limit passes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import UsageError
from dlopt.models.checkpoint import save_checkpoint
from dlopt.models.registry import build_model
from dlopt.runtime.loader import TimeLimitError, load_artifact, time_limit

FEATURES = 20  # the tiny mlp's input width: the loop model takes the reference's inputs


def loop_model(path: Path, steps: int = 10**9) -> Path:
    """y = x + steps, one Add per Loop iteration: hours of native work that no Python code interrupts."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["x_in", "one"], ["x_out"])], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("x_in", T.FLOAT, None)],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("x_out", T.FLOAT, None)],
        [h.make_tensor("one", T.FLOAT, [], [1.0])])
    graph = h.make_graph([h.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)], "loop_bomb",
                         [h.make_tensor_value_info("x", T.FLOAT, [None, FEATURES])],
                         [h.make_tensor_value_info("y", T.FLOAT, [None, FEATURES])],
                         [h.make_tensor("M", T.INT64, [], [steps]), h.make_tensor("cond", T.BOOL, [], [True])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bomb")
    model, spec, cfg = build_model("mlp", tiny=True)
    return loop_model(folder / "loop.onnx"), save_checkpoint(model, spec, cfg, folder / "tiny.json")


def _ort_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dlopt-ort-run" and t.is_alive()]


def test_time_limit_terminates_the_native_loop_itself(files):
    # 3e6 steps take about 20 s here: long enough to see the stop, short enough that a regression fails, not hangs
    run = load_artifact(loop_model(files[0].with_name("medium.onnx"), steps=3 * 10**6))
    start = time.monotonic()
    with pytest.raises(TimeLimitError, match=r"medium\.onnx took longer than the 0\.5 s limit.*--time-limit-s"), \
            time_limit(0.5):
        run(torch.zeros(2, FEATURES))
    assert time.monotonic() - start < 3
    assert not _ort_workers()  # the run was stopped (RunOptions.terminate), not left spinning in the background
    ok = load_artifact(loop_model(files[0].with_name("short.onnx"), steps=3))
    with time_limit(5):
        assert torch.equal(ok(torch.zeros(2, FEATURES))[0], torch.full((2, FEATURES), 3.0))


def _dlopt(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dlopt", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def test_cli_verify_of_a_billion_step_loop_stops_at_its_time_limit_with_one_line(files, tmp_path):
    start = time.monotonic()
    result = _dlopt("verify", str(files[0]), "--checkpoint", str(files[1]), "--time-limit-s", "2", cwd=tmp_path,
                    timeout=90)  # without the limit: hours
    assert time.monotonic() - start < 45  # start-up (torch import, eager reference) on a loaded 2-core machine
    assert result.returncode == 1, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "loop.onnx" in lines[0] and "2 s limit" in lines[0] and "--time-limit-s" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", ["0", "-1", "nan"])
def test_a_time_limit_that_is_no_limit_is_refused(files, bad):
    result = CliRunner().invoke(app, ["verify", str(files[0]), "--checkpoint", str(files[1]), "--time-limit-s", bad])
    assert result.exit_code == 2, result.output
    with pytest.raises(UsageError, match="above 0"), time_limit(float(bad)):
        pass


DRIVER = """
import sys, pathlib, onnxruntime
marker, args = pathlib.Path(sys.argv[1]), sys.argv[2:]
original = onnxruntime.InferenceSession.run
def run(self, *a, **k):  # says when the native call has begun, so the signal lands inside it
    marker.touch()
    return original(self, *a, **k)
onnxruntime.InferenceSession.run = run
from dlopt.cli.app import main
sys.argv = ["dlopt", *args]
main()
"""


def test_ctrl_c_stops_a_native_onnx_loop_promptly_with_130(files, tmp_path):
    marker = tmp_path / "running"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), "verify", str(files[0]), "--checkpoint",
                             str(files[1])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    err = _ctrl_c(proc, marker, presses=1)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


def test_torchscript_past_the_limit_says_it_could_not_be_stopped_mid_call(tmp_path):
    class Loop(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(20000):
                x = x + 1
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(Loop()).save(str(tmp_path / "loop.ts"))
        run = load_artifact(tmp_path / "loop.ts", trust_pickle=True)
    with pytest.raises(TimeLimitError, match="cannot be stopped mid-call.*Ctrl-C twice"), time_limit(0.02):
        run(torch.zeros(2, FEATURES))


def test_export_verification_has_the_same_time_limit(files, tmp_path):
    """`dlopt export --time-limit-s` reaches the verification that follows the export (exit 1, one line)."""
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(files[1]), "--format", "onnx", "--exporter",
                                      "legacy", "--out", str(tmp_path), "--time-limit-s", "0.001"])
    assert result.exit_code == 1, result.output
    assert "model.onnx took longer than the 0.001 s limit" in result.output and "--time-limit-s" in result.output
    ok = CliRunner().invoke(app, ["export", "--checkpoint", str(files[1]), "--format", "onnx", "--exporter",
                                  "legacy", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output  # the default limit (300 s) leaves a normal export alone


TS_DRIVER = """
import sys, pathlib
import dlopt.runtime.archive as archive
marker, args = pathlib.Path(sys.argv[1]), sys.argv[2:]
load = archive.load_module
def load_module(*a, **k):  # says when the native call has begun, so the signals land inside it
    module = load(*a, **k)
    def call(*inputs):
        marker.touch()
        return module(*inputs)
    return call
archive.load_module = load_module
from dlopt.cli.app import main
sys.argv = ["dlopt", *args]
main()
"""


def _script_loop(path: Path, steps: int) -> Path:
    class Loop(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.steps = steps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(self.steps):
                x = x + 1
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(Loop()).save(str(path))
    return path


def test_ctrl_c_in_a_torchscript_call_says_why_and_a_second_quits_at_once(files, tmp_path):
    loop = _script_loop(tmp_path / "loop.ts", 10**9)
    marker = tmp_path / "running"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", TS_DRIVER, str(marker), "verify", str(loop), "--checkpoint",
                             str(files[1]), "--trust-pickle"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    err = _ctrl_c(proc, marker, presses=2)  # the first cannot stop the call: it says so (below) and waits
    assert proc.returncode == 130, err
    assert "cannot be stopped mid-call" in err and "Press Ctrl-C again" in err and "interrupted" in err


@pytest.mark.self_signal
def test_the_first_ctrl_c_in_a_torchscript_call_stops_dlopt_when_the_call_returns(tmp_path):
    run = load_artifact(_script_loop(tmp_path / "short.ts", 20000), trust_pickle=True)
    timer = threading.Timer(0.05, signal.raise_signal, (signal.SIGINT,))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run(torch.zeros(2, FEATURES))  # the call runs on; the interrupt is raised when it returns
    timer.join()
    assert signal.set_wakeup_fd(-1) == -1  # the Ctrl-C watcher is gone and left no wakeup fd behind


def _ctrl_c(proc: subprocess.Popen, marker: Path, presses: int) -> str:
    """Once the child is inside the native call (it wrote `marker`; at most 120 s), press Ctrl-C `presses` times
    2 s apart; the child must still run before the last press and end within 5 s of it. Returns its stderr."""
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.communicate(timeout=5)
        time.sleep(1.0)  # well inside the call now
        for _ in range(presses - 1):
            proc.send_signal(signal.SIGINT)
            time.sleep(2.0)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5
        return err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
