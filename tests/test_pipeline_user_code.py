"""A pipeline.toml is a file like any other: user model code it names (arch = "file.py:fn") runs only when the user
names it on the command line (NAME, --model-code) or says --trust-code; `--resume` of such a run the same way."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()

MODEL = '''
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
'''


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _setup(tmp_path):
    code = tmp_path / "net.py"
    code.write_text(MODEL)
    marker = tmp_path / "ran.txt"  # the code leaves a trace when imported: proof it did not run
    code.write_text(MODEL + f"\nopen({str(marker)!r}, 'a').write('imported\\n')\n")
    ref = f"{code}:build"
    toml = tmp_path / "pipeline.toml"
    toml.write_text(f'arch = "{ref}"\nstages = ["export"]\nsets = {{ input_shape = [12] }}\n'
                    '[export]\nformats = ["onnx"]\n')
    return ref, toml, marker


def _one_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_code_named_only_in_the_toml_is_refused_before_anything_runs(tmp_path):
    ref, toml, marker = _setup(tmp_path)
    res = _invoke("pipeline", "--config", toml, "--out", tmp_path / "out")
    assert res.exit_code == 6, res.output
    line = _one_line(res)
    assert str(toml) in line and "--model-code" in line
    assert not marker.exists() and not (tmp_path / "out").exists()  # no code ran, no run directory


def test_code_named_on_the_command_line_runs_every_step_and_resumes(tmp_path):
    ref, toml, marker = _setup(tmp_path)
    res = _invoke("pipeline", "--config", toml, "--model-code", ref, "--out", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {s["name"]: s["status"] for s in data["steps"]}["export"] == "ran", data
    run = data["run_dir"]
    res = _invoke("pipeline", "--resume", run, "--model-code", ref, "--out", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    assert {s["name"]: s["status"] for s in json.loads(res.stdout)["steps"]}["export"] == "skipped"
    # The run was made with the code named: the per-user trust list vouches for that file in this run while it is
    # unchanged (dlopt.core.trust_list); a changed file is refused as before.
    res = _invoke("pipeline", "--resume", run, "--out", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    code = ref.rpartition(":")[0]
    Path(code).write_text(Path(code).read_text() + "\n# changed\n")
    res = _invoke("pipeline", "--resume", run, "--out", tmp_path / "out")
    assert res.exit_code == 6 and "--model-code" in _one_line(res), res.output


def test_trust_code_runs_what_the_toml_names(tmp_path):
    ref, toml, marker = _setup(tmp_path)
    res = _invoke("pipeline", "--config", toml, "--trust-code", "--out", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    assert marker.exists()


def test_a_relative_reference_resumes_from_another_directory(tmp_path, monkeypatch):
    """The run records the code's file absolute: `--resume` from elsewhere finds the same file, not a namesake."""
    _ref, toml, _marker = _setup(tmp_path)
    toml.write_text(toml.read_text().replace(f'arch = "{_ref}"', 'arch = "net.py:build"'))
    monkeypatch.chdir(tmp_path)
    res = _invoke("pipeline", "--config", toml.name, "--model-code", "net.py:build", "--out", "out", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)["run_dir"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "net.py").write_text("raise SystemExit('the wrong file ran')\n")  # a namesake where the user now is
    monkeypatch.chdir(other)
    res = _invoke("pipeline", "--resume", run, "--model-code", str(tmp_path / "net.py") + ":build", "--out",
                  tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    assert {s["name"]: s["status"] for s in json.loads(res.stdout)["steps"]}["export"] == "skipped"
