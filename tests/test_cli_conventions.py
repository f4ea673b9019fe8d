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
