"""Run directories: exclusive creation, atomic manifests, stage records, latest run, names that cannot escape."""

from __future__ import annotations

import json
import threading

import pytest

from dlopt.core.errors import InputFileError, OutputError
from dlopt.core.fileio import atomic_path, safe_name
from dlopt.core.runs import Run, latest_run, list_runs, resolve_run


def test_create_and_manifest(out_root) -> None:
    run = Run.create(out_root, "lenet5", {"arch": "lenet5"})
    m = run.manifest()
    assert m["schema_version"] == 1 and m["arch"] == "lenet5" and m["stages"] == {}
    env = m["environment"]
    assert env["python"] and env["packages"]["torch"] and env["cpu"]["cores"] >= 1
    assert run.path.parent.name == "lenet5"


def test_run_ids_are_exclusive(out_root) -> None:
    Run.create(out_root, "mlp", {}, run_id="same")
    with pytest.raises(OutputError, match="already exists"):
        Run.create(out_root, "mlp", {}, run_id="same")


def test_concurrent_runs_never_share_a_directory(out_root) -> None:
    runs: list[Run] = []
    threads = [threading.Thread(target=lambda: runs.append(Run.create(out_root, "mlp", {}))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.path for r in runs}) == 8


def test_stage_records_status_and_outputs(out_root) -> None:
    run = Run.create(out_root, "mlp", {})
    with run.stage("export", {"format": "onnx"}) as rec:
        out = run.file("model.onnx")
        out.write_bytes(b"x")
        rec.outputs.append(out)
        rec.metrics["seconds"] = 1.0
    stage = run.manifest()["stages"]["export"]
    assert stage["status"] == "done" and stage["config"] == {"format": "onnx"}
    assert stage["outputs"][0]["path"] == "model.onnx" and len(stage["outputs"][0]["sha256"]) == 64
    assert stage["metrics"] == {"seconds": 1.0} and stage["duration_s"] >= 0


@pytest.mark.parametrize("exc,status", [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_stage_failure_is_recorded(out_root, exc, status) -> None:
    run = Run.create(out_root, "mlp", {})
    with pytest.raises(type(exc)), run.stage("train", {}):
        raise exc
    assert run.manifest()["stages"]["train"]["status"] == status


def test_latest_run_and_resolve(out_root) -> None:
    with pytest.raises(InputFileError, match="no runs"):
        resolve_run(out_root)
    first = Run.create(out_root, "mlp", {})
    second = Run.create(out_root, "lenet5", {})
    assert latest_run(out_root) == second and list_runs(out_root) == [first, second]
    assert resolve_run(out_root, first.path) == first
    with pytest.raises(InputFileError, match="not a dlopt run"):
        Run.open(out_root)


@pytest.mark.parametrize("evil", ["../../etc/passwd", "/abs/path", "a/../../b", ".hidden"])
def test_user_names_cannot_escape(out_root, evil: str) -> None:
    run = Run.create(out_root, "mlp", {})
    assert run.path.resolve() in run.file(evil).parents
    assert out_root.resolve() in Run.create(out_root, evil, {}).path.resolve().parents
    assert "/" not in safe_name(evil) and not safe_name(evil).startswith(".")


@pytest.mark.parametrize("empty", ["..", "/", "..."])
def test_names_with_nothing_usable_are_refused(out_root, empty: str) -> None:
    with pytest.raises(OutputError, match="no usable characters"):
        Run.create(out_root, "mlp", {}, run_id=empty)


def test_atomic_write_keeps_old_file_on_failure(tmp_path) -> None:
    target = tmp_path / "manifest.json"
    target.write_text(json.dumps({"ok": 1}))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("interrupted mid-write")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_root_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(OutputError, match="cannot create|choose a writable"):
        Run.create(blocker / "root", "mlp", {})


def test_damaged_manifests_are_named_not_silently_skipped(out_root) -> None:
    from typer.testing import CliRunner

    from dlopt.cli.app import app
    from dlopt.core.runs import scan_runs

    good = Run.create(out_root, "mlp", {})
    bad = Run.create(out_root, "lenet5", {})
    (bad.path / "manifest.json").write_text('{"arch": "lenet5", "crea')  # truncated
    runs, damaged = scan_runs(out_root)
    assert runs == [good] and [p for p, _ in damaged] == [bad.path] and "cannot be read" in damaged[0][1]
    result = CliRunner().invoke(app, ["runs", "--out", str(out_root), "--json"])
    assert result.exit_code == 0
    assert [r["path"] for r in json.loads(result.stdout)] == [str(good.path)]
    assert "skipped" in result.stderr and bad.path.name in result.stderr
