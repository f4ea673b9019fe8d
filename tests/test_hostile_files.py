"""Hostile files (issue 21): nothing a file says runs code, every file read is bounded, regular, schema-checked,
and its paths stay inside the run. Each class is tested through the CLI: exit code, one line, no traceback,
and the marker a payload would create never appears. (test_reliability.py covers plain pickle checkpoints.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()

EVIL = "import pathlib\npathlib.Path({marker!r}).touch()\n\ndef f():\n    pathlib.Path({marker!r}).touch()\n"
USER_MODEL = "import torch\n\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh())\n"


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _refused(result, code: int, *fragments: str) -> str:
    """Exit `code`, one error line containing the fragments, no traceback."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    flat = " ".join(out.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, out)
    return flat


def _make_run(root: Path, name: str, **opts) -> Path:
    """A run as dlopt writes it (model record + a TorchScript and a .pt2 file recorded with their sha256), made
    through the library so these tests do not depend on the export stage's own code."""
    from dlopt.export.pt2 import export_pt2
    from dlopt.export.torchscript import export_torchscript
    from dlopt.registry import make_inputs
    from dlopt.runs import file_entry
    from dlopt.target import TargetOptions, resolve_target

    target = resolve_target(TargetOptions(name=name, root=root, **opts))
    example = make_inputs(target.spec, target.config, 2)
    files = [target.run.path / "model.ts", target.run.path / "model.pt2"]
    export_torchscript(target.model, example, target.spec, files[0])
    export_pt2(target.model, example, target.spec, target.config, files[1])
    target.run.update(lambda m: m["stages"].update(
        export={"status": "done", "config": {}, "inputs": [], "metrics": {},
                "outputs": [file_entry(f, target.run.path) for f in files]}))
    return target.run.path


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    return _make_run(tmp_path_factory.mktemp("base") / "artifacts", "mlp", tiny=True)


@pytest.fixture
def run_copy(mlp_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "artifacts" / "mlp" / mlp_run.name
    shutil.copytree(mlp_run, dst)
    return dst


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- class 1: a record names code ----------------------------------------------------------------------------------

def _code_refs(tmp_path: Path, marker: Path) -> dict[str, str]:
    evil = tmp_path / "x" / "evil.py"
    evil.parent.mkdir()
    evil.write_text(EVIL.format(marker=str(marker)))
    (tmp_path / "x" / "evil_mod.py").write_text(EVIL.format(marker=str(marker)))
    return {"abs_file": f"{evil}:f", "rel_file": "../x/evil.py:f", "module": "evil_mod:f", "stdlib": "os:system"}


@pytest.mark.parametrize("kind", ["abs_file", "rel_file", "module", "stdlib"])
@pytest.mark.parametrize("how", ["checkpoint", "run_dir", "latest_run", "verify", "bench", "prune", "quantize"])
def test_a_record_naming_code_is_refused(kind, how, run_copy: Path, tmp_path: Path, monkeypatch):
    marker = tmp_path / "pwned"
    ref = _code_refs(tmp_path, marker)[kind]
    monkeypatch.syspath_prepend(str(tmp_path / "x"))  # the module form would import if anything asked
    monkeypatch.chdir(run_copy)
    _edit_json(run_copy / "model.json", lambda r: r.update(arch=ref))
    out = tmp_path / "artifacts"
    args = {"checkpoint": ["export", "--checkpoint", run_copy / "model.json", "--out", tmp_path / "o"],
            "run_dir": ["export", run_copy, "--out", out], "latest_run": ["export", "--out", out],
            "verify": ["verify", run_copy], "bench": ["bench", run_copy, "--budget-s", "0.05", "--out", out],
            "prune": ["prune", run_copy, "--out", out], "quantize": ["quantize", run_copy, "--out", out]}[how]
    flat = _refused(_invoke(*args), 6, "--trust-code", "--model-code")
    assert ("evil" in flat) if kind != "stdlib" else ("module os" in flat)
    assert not marker.exists()


def test_recorded_code_file_is_what_is_judged_not_the_arch(run_copy: Path, tmp_path: Path):
    """A record that names a harmless reference but points its code at another file is judged by that file."""
    marker = tmp_path / "pwned"
    refs = _code_refs(tmp_path, marker)
    mine = tmp_path / "mine.py"
    mine.write_text(USER_MODEL)
    evil = Path(refs["abs_file"].rpartition(":")[0])
    _edit_json(run_copy / "model.json", lambda r: r.update(
        arch=f"{mine}:build", code={"file": str(evil), "sha256": hashlib.sha256(evil.read_bytes()).hexdigest(),
                                    "attr": "build"}))
    flat = _refused(_invoke("verify", run_copy, "--model-code", f"{mine}:build"), 6, str(evil))
    assert not marker.exists() and "--trust-code" in flat


@pytest.fixture
def user_run(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A run made from a user model named by a relative path, as `dlopt export ../models/my_models.py:build`."""
    src = tmp_path / "models" / "my_models.py"
    src.parent.mkdir()
    src.write_text(USER_MODEL)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return _make_run(Path("artifacts"), "../models/my_models.py:build", input_shape=(6,)), src


def test_a_user_model_run_records_its_code_and_works_from_any_directory(user_run, tmp_path: Path, monkeypatch):
    run, src = user_run
    record = json.loads((run / "model.json").read_text())
    assert record["code"] == {"file": str(src.resolve()), "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                              "attr": "build"}
    monkeypatch.chdir(tmp_path)  # another directory: the relative reference in "arch" no longer resolves
    _refused(_invoke("verify", run), 6, "my_models.py", "--trust-code")
    for trust in (["--trust-code"], ["--model-code", f"{src}:build"]):
        res = _invoke("verify", run, *trust)
        assert res.exit_code == 0, res.output
    _refused(_invoke("verify", run, "--model-code", f"{tmp_path / 'other.py'}:build"), 6, "--trust-code")


def test_a_changed_user_model_file_is_refused(user_run, tmp_path: Path):
    run, src = user_run
    marker = tmp_path / "pwned"
    src.write_text(USER_MODEL + EVIL.format(marker=str(marker)))
    _refused(_invoke("verify", run, "--trust-code"), 6, "changed since the run recorded it")
    assert not marker.exists()


def test_trust_does_not_leak_into_the_next_command(user_run, run_copy: Path, tmp_path: Path):
    run, _ = user_run
    assert _invoke("verify", run, "--trust-code").exit_code == 0
    marker = tmp_path / "pwned"
    ref = _code_refs(tmp_path, marker)["abs_file"]
    _edit_json(run_copy / "model.json", lambda r: r.update(arch=ref))
    _refused(_invoke("bench", run_copy, "--budget-s", "0.05", "--out", tmp_path / "b"), 6, "--trust-code")
    assert not marker.exists()
