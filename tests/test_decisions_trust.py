"""Trust without friction, still safe: model code named on the command line is recorded (file sha256 + run) in a
per-user trust list; later commands on that run run it while the file is unchanged; a changed file or a run made
elsewhere is refused as before (exit 6). New runs are named `<file stem>-<fn>`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import UnsafeFileError
from dlopt.core.runs import Run, arch_folder
from dlopt.core.trust_list import read, trust_file
from dlopt.core.user_code import code_trust_scope, require_trusted, set_cli

MODEL = "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(12, 4))\n"


def _run_named_on_the_command_line(tmp_path: Path) -> tuple[Path, Path, dict]:
    code = tmp_path / "models" / "net.py"
    code.parent.mkdir()
    code.write_text(MODEL)
    ref = f"{code}:build"
    with code_trust_scope():
        set_cli(name=ref)  # what the CLI does for `dlopt export models/net.py:build`
        run = Run.create(tmp_path / "out", ref, {"arch": ref})
    import hashlib

    record = {"file": str(code), "sha256": hashlib.sha256(code.read_bytes()).hexdigest(), "attr": "build"}
    return run.path, code, record


def test_run_folder_is_the_file_stem_and_function() -> None:
    assert arch_folder("/home/u/models/cnn.py:build") == "cnn-build"
    assert arch_folder("../cnn.py:make_net") == "cnn-make_net"
    assert arch_folder("pkg.nets:build") == "pkg.nets-build"
    assert arch_folder("torchvision:resnet18") == "torchvision-resnet18"
    assert arch_folder("lenet5") == "lenet5"


def test_a_run_made_with_named_code_trusts_it_later_while_unchanged(tmp_path: Path) -> None:
    run, code, record = _run_named_on_the_command_line(tmp_path)
    assert run.parent.name == "net-build"
    listed = read()[str(code.resolve())]
    assert listed["sha256"] == record["sha256"] and listed["runs"] == [str(run.resolve())]
    require_trusted(f"{code}:build", record, run / "model.json")  # a later command, nothing named: trusted
    code.write_text(MODEL + "# changed\n")
    with pytest.raises(UnsafeFileError, match="--model-code"):
        require_trusted(f"{code}:build", record, run / "model.json")


def test_a_run_made_elsewhere_is_refused(tmp_path: Path) -> None:
    run, code, record = _run_named_on_the_command_line(tmp_path)
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)  # same code, same hash: but this run was not made by a command that named it
    with pytest.raises(UnsafeFileError, match="--model-code"):
        require_trusted(f"{code}:build", record, copy / "model.json")


@pytest.mark.parametrize("content", ["{not json", '{"schema": "other", "files": {}}',
                                     '{"schema": "dlopt.trusted_code/1", "files": {"/x.py": {"sha256": "zz"}}}'])
def test_a_trust_list_dlopt_did_not_write_counts_as_empty(tmp_path: Path, content: str) -> None:
    run, code, record = _run_named_on_the_command_line(tmp_path)
    trust_file().write_text(content)
    assert read() == {} or "/x.py" not in read()
    with pytest.raises(UnsafeFileError):
        require_trusted(f"{code}:build", record, run / "model.json")


def test_the_list_lives_under_xdg_config_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DLOPT_TRUST_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert trust_file() == tmp_path / "cfg" / "dlopt" / "trusted_code.json"
    _run, code, _record = _run_named_on_the_command_line(tmp_path)
    data = json.loads(trust_file().read_text())
    assert data["schema"] == "dlopt.trusted_code/1" and str(code.resolve()) in data["files"]


def test_cli_export_then_verify_without_naming_the_code_again(tmp_path: Path, monkeypatch) -> None:
    code = tmp_path / "net.py"
    code.write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    made = cli.invoke(app, ["export", "net.py:build", "--input-shape", "12", "--format", "onnx", "--exporter",
                            "legacy", "--out", "out", "--json"])
    assert made.exit_code == 0, made.output
    run = Path(json.loads(made.stdout)["run"])
    assert run.parent.name == "net-build"
    again = cli.invoke(app, ["verify", str(run)])
    assert again.exit_code == 0, again.output
    code.write_text(MODEL + "# changed\n")
    refused = cli.invoke(app, ["verify", str(run)])
    assert refused.exit_code == 6 and "--model-code" in refused.output, refused.output
