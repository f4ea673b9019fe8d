"""A full or read-only disk (issue 21): each ends with exit 5 and one line, the earlier results intact (files and
their manifest record), nothing left `running`, and a rerun that works once the disk is fixed.

Two kinds of test: simulations that always run (a file-size limit, RLIMIT_FSIZE, makes torch's own zip writer
fail as a full disk does; a read-only file system is simulated at the os.open/open level), and the real thing on a
small tmpfs (mount, and remount ro) where this process may mount (root); elsewhere those skip and say why.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

EXPORT = ["--exporter", "legacy"]  # the fast ONNX exporter; .ts and .pt2 go through torch's zip writer


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _dlopt(*args: object, cwd: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limited() -> None:  # in the child: a write past the limit fails with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dlopt", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300, preexec_fn=limited if limit_bytes else None)


def _hashes(run: Path, manifest: bool = True) -> dict[str, str]:
    skip = {".manifest.lock", *(() if manifest else ("manifest.json",))}
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file() and ".staging" not in p.parts and p.name not in skip}


def _stage(run: Path, name: str) -> dict:
    return json.loads((run / "manifest.json").read_text())["stages"].get(name, {})


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A tiny run with a done export (onnx, ts, pt2), to copy."""
    root = tmp_path_factory.mktemp("base")
    code, out = _cli("export", "mlp", "--tiny", *EXPORT, "--out", root)
    assert code == 0, out
    return next(root.glob("mlp/*"))


def _copy(base: Path, dest: Path) -> Path:
    run = dest / "mlp" / base.name
    shutil.copytree(base, run)
    return run


def _one_error_line(text: str, *needles: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    assert all(n in lines[0] for n in needles), lines[0]
    assert "terminate called" not in text and "Traceback" not in text


def _check_failed_export_kept_the_earlier(run: Path, before_files: dict, before_record: dict) -> None:
    assert _hashes(run, manifest=False) == before_files  # every earlier file intact, byte for byte
    rec = _stage(run, "export")
    assert rec["status"] == "failed"  # not `running`: the process ended cleanly
    kept = rec["previous"]
    for key in ("outputs", "inputs", "config", "metrics", "finished"):
        assert kept[key] == before_record[key], key  # the earlier export's record, not only its file list
    assert not any((run / ".staging").iterdir())


def test_export_past_a_file_size_limit_exits_5_and_keeps_the_earlier_export(base_run, tmp_path):
    run = _copy(base_run, tmp_path)
    sizes = {p.name: p.stat().st_size for p in run.iterdir() if p.is_file()}
    limit = (max(sizes["model.onnx"], sizes["model.ts"], sizes["verify-report.json"], sizes["manifest.json"]) * 3
             // 2)
    assert limit < sizes["model.pt2"], sizes  # the .pt2 (torch's zip writer) is the file that cannot be written
    before_files, before_record = _hashes(run, manifest=False), _stage(run, "export")

    result = _dlopt("export", run, *EXPORT, cwd=tmp_path, limit_bytes=limit)
    assert result.returncode == 5, result.stderr[-2000:]  # was -6 (SIGABRT, a C++ stack) with the stage `running`
    _one_error_line(result.stderr, "model.pt2", "ulimit -f")
    _check_failed_export_kept_the_earlier(run, before_files, before_record)

    code, out = _cli("verify", run)  # the earlier artifacts are still the run's (trusted, checked)
    assert code == 0, out
    code, out = _cli("export", run, *EXPORT)  # and the rerun works
    assert code == 0, out
    assert _stage(run, "export")["status"] == "done" and "previous" not in _stage(run, "export")


@pytest.fixture
def read_only(monkeypatch):
    """Writes under the folder given to the returned function fail with EROFS, as on a read-only mount."""
    roots: list[str] = []
    os_open, io_open, mkdir = os.open, io.open, os.mkdir

    def denied(path: object) -> bool:
        return any(os.path.abspath(os.fsdecode(path)).startswith(r) for r in roots)

    def refuse(path: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def fake_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and denied(path):
            refuse(path)
        return os_open(path, flags, *a, **k)

    def fake_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and denied(file):
            refuse(file)
        return io_open(file, mode, *a, **k)

    def fake_mkdir(path, *a, **k):
        if denied(path):
            refuse(path)
        return mkdir(path, *a, **k)

    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return lambda folder: roots.append(os.path.abspath(folder))


def test_a_read_only_run_exits_5_for_every_stage_and_changes_nothing(base_run, tmp_path, read_only, monkeypatch):
    run = _copy(base_run, tmp_path)
    before = _hashes(run)
    read_only(run)
    for args in (("export", run, *EXPORT), ("prune", "--run", run), ("verify", run)):
        code, out = _cli(*args)
        assert code == 5, (args, out)  # was 70, an internal error on .manifest.lock
        _one_error_line(out, "Read-only file system", str(run))
    assert _hashes(run) == before
    monkeypatch.undo()  # the disk is writable again
    code, out = _cli("export", run, *EXPORT)
    assert code == 0, out


# --- the real thing: a small tmpfs (needs permission to mount) ---------------------------------------------------

def _mount(point: Path, *options: str) -> str | None:
    """None when mounted, else why not."""
    if shutil.which("mount") is None:
        return "no mount command"
    result = subprocess.run(["mount", *options, str(point)], capture_output=True, text=True)
    return None if result.returncode == 0 else f"mount not permitted here ({result.stderr.strip()[:80]})"


@pytest.fixture
def small_fs(tmp_path):
    point = tmp_path / "fs"
    point.mkdir()
    why = _mount(point, "-t", "tmpfs", "-o", "size=2m", "tmpfs")
    if why:
        pytest.skip(f"{why}; the simulations above cover these cases")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(point: Path, free_kb: int) -> Path:
    """Leave about free_kb KiB free on the file system at `point`."""
    filler = point / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(point)
    with open(filler, "wb") as fh:
        fh.truncate(0)
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_kb * 1024))
    return filler


def test_full_tmpfs_during_export_exits_5_keeps_the_earlier_export_and_reruns(base_run, small_fs, tmp_path):
    failures = 0
    for free_kb in (12, 24, 40):  # space ends in the .ts, the .pt2 or the report, depending on the amount
        shutil.rmtree(small_fs / "mlp", ignore_errors=True)
        run = _copy(base_run, small_fs)
        before_files, before_record = _hashes(run, manifest=False), _stage(run, "export")
        filler = _fill(small_fs, free_kb)
        result = _dlopt("export", run, *EXPORT, cwd=tmp_path)
        if result.returncode == 0:
            continue
        failures += 1
        assert result.returncode == 5, (free_kb, result.stderr[-2000:])  # was 134 (a C++ stack) at 12 and 24
        _one_error_line(result.stderr, "disk is full")
        _check_failed_export_kept_the_earlier(run, before_files, before_record)
        filler.unlink()
        code, out = _cli("export", run, *EXPORT)
        assert code == 0 and _stage(run, "export")["status"] == "done", out
    assert failures >= 2  # the sweep did run out of space, in more than one place


def test_prune_that_failed_on_a_full_tmpfs_reruns_once_space_is_freed(base_run, small_fs):
    run = _copy(base_run, small_fs)
    filler = _fill(small_fs, 16)
    code, out = _cli("prune", "--run", run)
    assert code == 5, out
    _one_error_line(out, "disk is full")
    assert not (run / "pruned").exists() and _stage(run, "pruned").get("status") in (None, "failed")
    filler.unlink()
    code, out = _cli("prune", "--run", run)  # not "already has a pruned model"
    assert code == 0, out
    assert (run / "pruned" / "model.json").is_file() and _stage(run, "pruned")["status"] == "done"


def test_read_only_tmpfs_under_a_run_exits_5_and_a_rerun_works_when_writable(base_run, small_fs):
    run = _copy(base_run, small_fs)
    before = _hashes(run)
    why = _mount(small_fs, "-o", "remount,ro")
    if why:
        pytest.skip(why)
    try:
        for args in (("export", run, *EXPORT), ("prune", "--run", run), ("verify", run)):
            code, out = _cli(*args)
            assert code == 5, (args, out)
            _one_error_line(out, "Read-only file system")
    finally:
        assert _mount(small_fs, "-o", "remount,rw") is None
    assert _hashes(run) == before
    code, out = _cli("export", run, *EXPORT)
    assert code == 0, out


def test_a_library_write_on_a_full_disk_in_any_stage_is_exit_5_and_the_stage_failed(tmp_path, monkeypatch):
    """The stage machinery's safety net: a writer that is not dlopt's own (a library's save) raising ENOSPC, and a
    staging directory that cannot be made, both end as OutputError (exit 5) with the stage recorded `failed`."""
    from dlopt.core.errors import OutputError
    from dlopt.core.runs import Run

    run = Run.create(tmp_path, "mlp", {})
    with pytest.raises(OutputError, match="disk is full"), run.stage("export", {}):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run.path / "model.onnx"))
    assert _stage(run.path, "export")["status"] == "failed"

    def no_space(*_a: object) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run.path / ".staging"))

    monkeypatch.setattr("dlopt.core.runs.new_staging", no_space)
    with pytest.raises(OutputError, match="disk is full"), run.stage("prune", {}):
        pass
    assert _stage(run.path, "prune")["status"] == "failed"
