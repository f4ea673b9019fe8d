"""`dlopt prune` through the CLI: a success path, and bad input as one line with a non-zero exit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_prune_json_then_latest_run_default(tmp_path):
    res = _invoke("prune", "mlp", "--tiny", "--ratio", "0.5", "--limit", "64", "--out", tmp_path, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["params"]["after"] < data["params"]["before"] and data["record"].endswith("pruned/model.json")
    again = _invoke("prune", "--ratio", "0.3", "--method", "unstructured", "--name", "sparse", "--limit", "64",
                    "--out", tmp_path)  # no target: the latest run
    assert again.exit_code == 0, again.output
    assert "weight sparsity" in again.stdout
    stages = json.loads((tmp_path / "mlp" / data["run_dir"].split("/")[-1] / "manifest.json").read_text())["stages"]
    assert stages["pruned"]["status"] == stages["sparse"]["status"] == "done"  # both went into the same run


@pytest.mark.parametrize(("args", "needle", "code"), [
    (["--ratio", "0"], "between 0 and 1", 2),
    (["--ratio", "1.5"], "between 0 and 1", 2),
    (["--method", "magic"], "unknown pruning method", 2),
    (["--importance", "random"], "unknown importance", 2),
    (["--ratio", "0.95"], "would remove every one", 2),
])
def test_bad_input_is_one_line(tmp_path, args, needle, code):
    res = _invoke("prune", "mlp", "--tiny", *args, "--out", tmp_path)
    assert res.exit_code == code
    assert needle in _one_line_error(res)


def test_unsupported_arch_names_the_reason(tmp_path):
    res = _invoke("prune", "perceptron", "--out", tmp_path)
    assert res.exit_code == 4
    assert "no channels or neurons" in _one_line_error(res)
    res = _invoke("prune", "bilstm", "--tiny", "--out", tmp_path)
    assert res.exit_code == 4
    assert "unstructured (magnitude) pruning applies" in _one_line_error(res)
