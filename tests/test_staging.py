"""A killed, failed or interrupted stage never leaves results that later stages use.

Each kill test starts the real CLI as a subprocess, pauses it at a named point with the test-only hook
DLOPT_TEST_PAUSE_AT (dlopt.core.staging.pause_point), kills it there, then checks what `bench`, `report` and `runs`
make of the run: nothing stale used or listed, nothing done before lost, the stage shown as interrupted, and
a rerun that works.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.fileio import sha256_file
from dlopt.core.runs import Run
from dlopt.core.staging import clean_quantize_scratch

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
QUANTIZE = ["--method", "dynamic", "--max-drop", "100", "--exporter", "legacy"]
BENCH = ["--backend", "eager,onnxruntime", "--batch-size", "1", "--budget-s", "0.05", "--threads", "1"]
EXPORT = ["--format", "onnx", "--exporter", "legacy"]


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _ok(*args: object):
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A run with every stage done once: export (fp32 onnx), int8, pruned, bench."""
    out = tmp_path_factory.mktemp("base") / "artifacts"
    _ok("export", "mlp", "--tiny", *EXPORT, "--out", out)
    run = next(out.glob("mlp/*"))
    _ok("quantize", run, *QUANTIZE)
    _ok("prune", run, "--ratio", "0.3")
    _ok("bench", run, *BENCH)
    return run


@pytest.fixture
def run(base: Path, tmp_path: Path) -> Run:
    dest = tmp_path / "artifacts" / "mlp" / base.name
    shutil.copytree(base, dest)
    return Run(dest)


def _trusted(run: Run) -> dict[str, str]:
    files, _ = run.scan_artifacts((".onnx", ".json", ".safetensors"))
    return {str(p.relative_to(run.path)): sha256_file(p) for p in files}


def _start(args: list[object], pause: str, marker: Path, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "DLOPT_TEST_PAUSE_AT": pause,
           "DLOPT_TEST_PAUSE_MARKER": str(marker), "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "dlopt", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _stop_at(proc: subprocess.Popen, marker: Path, sig: int, timeout: float = 120) -> int:
    """Wait until the process pauses at its point, send `sig`, reap it; returns its exit code."""
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before pausing: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() - t0 < timeout, "never reached the pause point"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    return proc.returncode


def _manifest_valid(run: Run) -> dict:
    data = json.loads(run.manifest_path.read_text())
    assert isinstance(data["stages"], dict)
    for rec in data["stages"].values():
        assert rec["status"] in ("running", "done", "failed", "interrupted", "starting")
    return data


def _bench_rows(run: Run) -> dict[str, dict]:
    res = _ok("bench", run.path, *BENCH, "--json")
    return {r["variant"]: r for r in json.loads(res.stdout)["rows"]}


def _runs_listing(run: Run) -> dict:
    res = _ok("runs", "--out", run.path.parent.parent, "--json")
    return next(r for r in json.loads(res.stdout) if Path(r["path"]) == run.path)


KILLS = [  # (stage as recorded, where it is killed, command, new files it must not leave under final names)
    ("int8b", "built", lambda r: ["quantize", r, *QUANTIZE, "--name", "int8b"], ["int8b"]),  # scratch in use
    ("pruned2", "staged", lambda r: ["prune", r, "--ratio", "0.5", "--name", "pruned2"], ["pruned2"]),
    ("export", "staged", lambda r: ["export", r, *EXPORT], []),
    ("bench", "staged", lambda r: ["bench", r, *BENCH], []),
]


@pytest.mark.parametrize(("stage", "point", "command", "new"), KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_mid_stage_leaves_nothing_stale(run: Run, tmp_path: Path, monkeypatch, stage, point, command, new):
    before = _trusted(run)
    marker = tmp_path / "paused"
    proc = _start(command(run.path), f"{stage}:{point}", marker, tmp_path)
    assert _stop_at(proc, marker, signal.SIGKILL) == -signal.SIGKILL
    scratch = list(tmp_path.glob(f"dlopt-quantize-{proc.pid}-*"))
    assert bool(scratch) == (stage == "int8b"), "SIGKILL leaves quantize's scratch in $TMPDIR"
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the rerun below uses (and cleans) the same $TMPDIR
    data = _manifest_valid(run)
    assert data["stages"][stage]["status"] == "running" and run.stage_status(stage) == "interrupted"
    assert all(not (run.path / n).exists() for n in new)
    assert _trusted(run) == before, "a file done before the kill was lost, changed or no longer trusted"
    assert list((run.path / ".staging").iterdir()), "the staged files should still lie in .staging (SIGKILL)"
    listing = _runs_listing(run)
    assert listing["stages"][stage] == "interrupted"
    _ok("report", run.path)
    rows = _bench_rows(run)
    assert not [v for v in rows if any(n in v for n in new)], rows.keys()
    assert rows["onnxruntime:int8/model.onnx"]["status"] == "ok"  # the earlier variant is still measured
    _ok(*command(run.path))  # the rerun works, and clears what the killed process left
    assert run.stage_status(stage) == "done"
    assert not list((run.path / ".staging").iterdir())
    assert not [p for p in scratch if p.exists()], "the next quantize removes a dead process's scratch"


def test_scratch_of_a_live_process_is_never_removed(tmp_path: Path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    keep, stale = tmp_path / f"dlopt-quantize-{os.getpid()}-live", tmp_path / f"dlopt-quantize-{dead.pid}-gone"
    keep.mkdir()
    stale.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert clean_quantize_scratch() == [stale] and keep.is_dir() and not stale.exists()


def test_sigint_while_replacing_int8_keeps_the_old_variant_whole(run: Run, tmp_path: Path):
    old = {n: sha256_file(run.path / "int8" / n) for n in ("model.onnx", "quantize_report.json")}
    marker = tmp_path / "paused"
    proc = _start(["quantize", run.path, *QUANTIZE, "--calibration-samples", "17"], "int8:staged", marker,
                  tmp_path)
    assert _stop_at(proc, marker, signal.SIGINT) == 130
    assert {n: sha256_file(run.path / "int8" / n) for n in old} == old
    report = json.loads((run.path / "int8" / "quantize_report.json").read_text())
    assert report["artifact"] == "model.onnx"
    assert run.stage_status("int8") == "interrupted"
    assert run.artifact_status(run.path / "int8" / "model.onnx").trusted  # the old, complete variant is still used
    assert not list((run.path / ".staging").iterdir())  # Ctrl-C cleans up after itself


def test_kill_between_recording_done_and_moving_files_keeps_the_old_variant(run: Run, tmp_path: Path):
    """The manifest already lists the new int8 (done) but the files were not moved: the old ones, vouched for by
    the record kept as `previous`, are used; the new sha256s match nothing on disk."""
    old = sha256_file(run.path / "int8" / "model.onnx")
    marker = tmp_path / "paused"
    static = ["--method", "static", "--max-drop", "100", "--exporter", "legacy"]  # a different file from dynamic
    proc = _start(["quantize", run.path, *static], "int8:commit", marker, tmp_path)
    _stop_at(proc, marker, signal.SIGKILL)
    new = next(o["sha256"] for o in run.manifest()["stages"]["int8"]["outputs"] if o["path"] == "int8/model.onnx")
    assert new != old and sha256_file(run.path / "int8" / "model.onnx") == old
    status = run.artifact_status(run.path / "int8" / "model.onnx")
    assert status.trusted, status.reason
    _ok("quantize", run.path, *QUANTIZE)
    assert run.artifact_status(run.path / "int8" / "model.onnx").trusted
    assert "previous" not in run.manifest()["stages"]["int8"]


def test_a_stale_file_under_a_final_name_is_never_measured_or_listed(run: Run):
    """What a killed stage left before staging existed (or a file copied in by hand): a model.onnx under a final
    name while its stage is `running` with a dead process. bench, report and runs skip it and say why."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run.path / "int8x").mkdir()
    shutil.copyfile(run.path / "int8" / "model.onnx", run.path / "int8x" / "model.onnx")
    shutil.copyfile(run.path / "int8" / "quantize_report.json", run.path / "int8x" / "quantize_report.json")
    entry = {"path": "int8x/model.onnx", "sha256": sha256_file(run.path / "int8x" / "model.onnx")}
    run.record_stage("int8x", status="running", pid=dead.pid, host=socket.gethostname(), outputs=[entry])
    (run.path / "stray.onnx").write_bytes((run.path / "model.onnx").read_bytes())  # no stage recorded it
    res = _ok("bench", run.path, *BENCH, "--json")
    rows = {r["variant"]: r for r in json.loads(res.stdout)["rows"]}
    assert rows["onnxruntime:int8x/model.onnx"]["status"] == "unavailable"
    assert "stage int8x is interrupted" in rows["onnxruntime:int8x/model.onnx"]["reason"]
    assert "no finished stage recorded it" in rows["onnxruntime:stray.onnx"]["reason"]
    assert rows["onnxruntime:int8/model.onnx"]["status"] == "ok"
    assert _runs_listing(run)["stages"]["int8x"] == "interrupted"
    res = _invoke("report", run.path)
    assert res.exit_code == 0 and "int8x/model.onnx" in res.output and "interrupted" in res.output
    report = json.loads((run.path / "report.json").read_text())
    assert all("int8x" not in r["path"] for r in report["rows"])
    res = _invoke("bench", run.path / "int8x" / "model.onnx", *BENCH)  # named on the command line: refused
    assert res.exit_code != 0 and "stage int8x is interrupted" in res.output


def test_a_changed_file_is_not_trusted(run: Run):
    path = run.path / "int8" / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    status = run.artifact_status(path)
    assert not status.trusted and "sha256 differs" in status.reason
    rows = _bench_rows(run)
    assert rows["onnxruntime:int8/model.onnx"]["status"] == "unavailable"


def test_a_failed_export_keeps_the_earlier_files_usable(run: Run, monkeypatch):
    """A rerun that fails leaves the last done outputs in place and trusted (issue 21: a failed export used to
    wipe the earlier export record)."""
    import dlopt.export.stage as export_stage
    from dlopt.core.errors import OutputError

    def full_disk(*_a, **_k):
        raise OutputError("cannot write model.onnx: the disk is full")

    monkeypatch.setattr(export_stage, "export_model", full_disk)
    res = _invoke("export", run.path, *EXPORT)
    assert res.exit_code == 5, res.output
    assert run.stage_status("export") == "failed"
    assert run.artifact_status(run.path / "model.onnx").trusted


PIPELINE = """
stages = ["train", "quantize", "export", "bench"]
[train]
epochs = 1
limit = 96
[quantize]
method = "dynamic"
max_drop = 100
[export]
formats = ["onnx"]
exporter = "legacy"
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
budget_s = 0.05
threads = 1
"""


@pytest.mark.slow  # a whole pipeline twice (~40 s alone, minutes on a loaded machine); the stage kills above run in CI
def test_sigkill_mid_pipeline_then_resume(tmp_path: Path):
    """Killed while its quantize step is staged: the run shows int8 interrupted, nothing of it is used, and
    `--resume` reruns it and finishes with every variant measured."""
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE)
    out, marker = tmp_path / "artifacts", tmp_path / "paused"
    proc = _start(["pipeline", "mlp", "--tiny", "--config", config, "--out", out], "int8:staged", marker, tmp_path)
    _stop_at(proc, marker, signal.SIGKILL)
    run = Run(next(out.glob("mlp/*")))
    _manifest_valid(run)
    assert run.stage_status("int8") == "interrupted" and not (run.path / "int8").exists()
    assert _runs_listing(run)["stages"]["int8"] == "interrupted"
    res = _invoke("pipeline", "--resume", run.path, "--config", config, "--out", out)
    assert res.exit_code == 0, res.output
    assert run.stage_status("int8") == "done" and run.artifact_status(run.path / "int8" / "model.onnx").trusted
    report = json.loads((run.path / "report.json").read_text())
    assert ("int8", "onnxruntime") in {(r["variant"], r["runtime"]) for r in report["rows"]}
    assert not report["skipped"]


def test_two_prunes_of_one_name_at_once_the_second_is_refused(run: Run, tmp_path: Path):
    marker = tmp_path / "paused"
    proc = _start(["prune", run.path, "--ratio", "0.5", "--name", "twice"], "twice:staged", marker, tmp_path)
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.05)
        res = _invoke("prune", run.path, "--ratio", "0.4", "--name", "twice")
        assert res.exit_code == 5 and f"running in process {proc.pid}" in res.output, res.output
    finally:
        proc.kill()
        proc.communicate()
    _ok("prune", run.path, "--ratio", "0.4", "--name", "twice")  # its process is gone: the name is free again
    assert run.stage_status("twice") == "done"


def test_a_new_variant_made_meanwhile_by_another_process_is_kept(run: Run):
    from dlopt.core.errors import OutputError

    with pytest.raises(OutputError, match="created by another process"):
        with run.stage("mine", {}, fresh=("mine",)) as rec:
            rec.path("mine", "model.json").write_text("{}")
            rec.outputs.append(rec.path("mine", "model.json"))
            (run.path / "mine").mkdir()
            (run.path / "mine" / "model.json").write_text('{"theirs": 1}')
    assert json.loads((run.path / "mine" / "model.json").read_text()) == {"theirs": 1}
    assert run.stage_status("mine") == "failed"


def test_exporting_another_format_keeps_the_first_trusted(run: Run):
    """Same checkpoint, second export with another format: both files stay usable (the earlier one is carried
    into the new record because the stage's inputs are unchanged)."""
    _ok("export", run.path, "--format", "torchscript")
    assert run.artifact_status(run.path / "model.onnx").trusted and run.artifact_status(run.path / "model.ts").trusted


def test_a_timing_of_a_replaced_file_is_not_reported(run: Run):
    """bench.json timed int8 v1; quantize then replaced it (done, trusted): report and runs must not pair v2 with
    v1's latency. The bench stage records the sha256 of what it measured."""
    report = json.loads((_ok("report", run.path), run.path / "report.json")[1].read_text())
    assert any(r["variant"] == "int8" and r["latency"] for r in report["rows"])
    _ok("quantize", run.path, "--method", "static", "--max-drop", "100", "--exporter", "legacy")
    res = _ok("report", run.path)
    report = json.loads((run.path / "report.json").read_text())
    assert not any(r["variant"] == "int8" and r["latency"] for r in report["rows"])
    assert "timed an earlier version" in res.output
    fastest = _runs_listing(run)["fastest"]
    assert fastest is None or "int8" not in fastest["variant"]
