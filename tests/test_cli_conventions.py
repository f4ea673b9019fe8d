"""Issue 19's CLI conventions: -q/-v everywhere, flags shown as flags, completion, -o/--output, bench options,
tables that fit 80 columns, one number format per quantity, and --print-config that round-trips."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def run(*args: str, columns: int = 80):
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns)})


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_offers_quiet_and_verbose_and_shows_flags_as_flags(command: str) -> None:
    text = run(command, "--help", columns=200).output
    assert re.search(r"--quiet\s+-q", text) and re.search(r"--verbose\s+-v", text), text
    assert "<bool>" not in text  # a flag takes no value; `--json <bool>` reads as if it did
    assert re.search(r"--help\s+Show this message", text), text


def test_completion_is_on_and_root_has_quiet_verbose() -> None:
    text = run("--help", columns=200).output
    assert "--install-completion" in text and "--show-completion" in text
    assert "-q" in text and "-v" in text and "<bool>" not in text


def test_quiet_prints_only_the_result_and_verbose_adds_detail(tmp_path) -> None:
    plain = run("list")
    assert "Stages:" in plain.output
    for args in (("-q", "list"), ("list", "-q"), ("list", "--quiet")):
        quiet = run(*args)
        assert quiet.exit_code == 0 and "Stages:" not in quiet.output and "resnet18" in quiet.output
    both = run("list", "-q", "-v")
    assert both.exit_code == 2 and "contradict" in both.output
    verbose = run("-v", "export", "mlp", "--tiny", "--format", "torchscript", "--out", str(tmp_path))
    assert verbose.exit_code == 0, verbose.output
    assert re.search(r"\d+\.\ds exporting mlp to torchscript", verbose.output), verbose.output  # timed step lines


def _manifest_copies(run_dir: str, stage: str) -> list[dict]:
    import json
    from pathlib import Path

    return json.loads((Path(run_dir) / "manifest.json").read_text())["stages"][stage]["copied_to"]


def test_export_output_file_picks_the_format_refuses_overwrite_and_is_recorded(tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.chdir(tmp_path)  # a relative -o, as a user types it
    args = ("export", "mlp", "--tiny", "--out", "runs", "--json", "-o", "deploy/model.ts")
    first = run(*args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    copy = tmp_path / "deploy" / "model.ts"
    assert list(data["artifacts"]) == ["torchscript"]  # the suffix chose the one format
    in_run = tmp_path / data["run"].split(str(tmp_path) + "/")[-1] / "model.ts"
    assert copy.read_bytes() == in_run.read_bytes()  # the run keeps its own copy
    assert _manifest_copies(data["run"], "export")[0]["path"] == str(copy.resolve())
    before = copy.read_bytes()
    again = run(*args)
    assert again.exit_code == 5 and "exists" in again.output and "--force" in again.output
    assert copy.read_bytes() == before and not list(copy.parent.glob(".*.tmp"))
    forced = run(*args, "--force")
    assert forced.exit_code == 0, forced.output
    clash = run("export", "mlp", "--tiny", "--out", "runs", "--format", "onnx", "-o", "x.ts")
    assert clash.exit_code == 2 and "--format" in clash.output


def test_prune_output_directory_gets_the_checkpoint(tmp_path) -> None:
    import json

    dest = tmp_path / "ship"
    res = run("prune", "mlp", "--tiny", "--finetune-epochs", "0", "--out", str(tmp_path / "runs"), "--json",
              "-o", f"{dest}/")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert sorted(p.name for p in dest.iterdir()) == ["model.json", "model.safetensors"]
    from dlopt.checkpoint import load_checkpoint

    assert load_checkpoint(dest / "model.json").spec.name == "mlp"  # the copy is a loadable checkpoint
    assert {c["from"] for c in _manifest_copies(data["run_dir"], "pruned")} == {"pruned/model.json",
                                                                                "pruned/model.safetensors"}
    wrong = run("prune", "mlp", "--tiny", "--out", str(tmp_path / "runs"), "-o", str(tmp_path / "x.onnx"))
    assert wrong.exit_code == 2 and ".json or .safetensors" in wrong.output


def test_quantize_output_file(tmp_path) -> None:
    dest = tmp_path / "q.onnx"
    res = run("quantize", "mlp", "--tiny", "--method", "dynamic", "--out", str(tmp_path / "runs"), "-o", str(dest))
    assert res.exit_code == 0, res.output
    import onnx

    onnx.checker.check_model(str(dest))
    assert "wrote" in res.output and str(dest) in res.output.replace("\n", "")
