"""The CLI frame: list, info, errors as one line with documented exit codes, fast start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.models.registry import list_specs

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(result) -> str:
    text = result.output.strip()
    assert "Traceback" not in text
    assert text.startswith("error:"), text
    return text


def test_list_table_names_every_architecture() -> None:
    result = run("list")
    assert result.exit_code == 0
    for spec in list_specs():
        assert spec.name in result.output


def test_list_json_and_filters() -> None:
    rows = json.loads(run("list", "--json").output)
    assert [r["name"] for r in rows] == [s.name for s in list_specs()] and {"name", "task", "stages", "formats", "limits"} <= set(rows[0])
    prunable = {r["name"] for r in json.loads(run("list", "--stage", "prune", "--json").output)}
    assert "perceptron" not in prunable and "resnet18" in prunable
    regression = {r["name"] for r in json.loads(run("list", "--task", "regression", "--json").output)}
    assert regression == {"rnn", "lstm", "bilstm", "gru"}


def test_info_resnet18_json() -> None:
    result = run("info", "resnet18", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["parameters"] == 11_689_512
    assert 1.7e9 < info["macs"] < 1.9e9  # ResNet-18 at 224x224: 1.8 GMACs
    assert info["inputs"][0]["shape"] == [1, 3, 224, 224]
    assert info["inputs"][0]["dynamic_axes"] == {"0": "batch"}  # JSON object keys are strings


def test_info_table_and_options() -> None:
    result = run("info", "lstm", "--set", "hidden_size=32", "--batch-size", "4")
    assert result.exit_code == 0
    assert "hidden_size=32" in result.output and "series" in result.output
    sized = json.loads(run("info", "resnet18", "--input-size", "64", "--json").output)
    assert sized["inputs"][0]["shape"] == [1, 3, 64, 64]


def test_info_lstm_counts_recurrent_flops() -> None:
    info = json.loads(run("info", "lstm", "--json").output)
    # 2 layers x 19 steps x 4 gates x 64 x (in + 64), in = 1 then 64; x2 for multiply-add; plus the head
    expected = 2 * 19 * 4 * 64 * (1 + 64) + 2 * 19 * 4 * 64 * (64 + 64) + 2 * 64
    assert info["flops"] == expected


@pytest.mark.parametrize("args,code,needle", [
    (("info", "resnet19"), 2, "did you mean resnet18"),
    (("info", "lenet5", "--batch-size", "0"), 2, "--batch-size"),
    (("info", "mlp", "--set", "colour=red"), 2, "valid options"),
    (("info", "text_lstm", "--input-size", "64"), 2, "takes no --input-size"),
    (("list", "--stage", "fly"), 2, "--stage"),
    (("info", "missing.py:build"), 3, "not found"),
    (("info", "torchvision:resnet5"), 2, "did you mean torchvision:resnet50"),
    (("info", "mlp", "--set", "dropout=2"), 2, "out of range"),
])
def test_bad_input_is_one_line_with_exit_code(args, code, needle) -> None:
    result = run(*args)
    assert result.exit_code == code, result.output
    assert needle in one_line_error(result)


def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "info", "resnet19")
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "UnknownArchError"


def test_torchvision_model_by_name() -> None:
    info = json.loads(run("info", "torchvision:mobilenet_v3_small", "--set", "num_classes=5", "--json").output)
    assert info["outputs"][0]["shape"] == [1, 5] and info["parameters"] > 1_000_000


def test_user_model_file(tmp_path) -> None:
    src = tmp_path / "mymodel.py"
    src.write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))\n")
    result = run("info", f"{src}:build", "--input-shape", "3,2,2", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["parameters"] == 12 * 3 + 3 and info["inputs"][0]["shape"] == [1, 3, 2, 2]
    missing_shape = run("info", f"{src}:build")
    assert missing_shape.exit_code == 2 and "--input-shape" in one_line_error(missing_shape)
    not_fn = run("info", f"{src}:nothing", "--input-shape", "3")
    assert not_fn.exit_code == 2 and "no callable" in one_line_error(not_fn)


def test_missing_optional_extra_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    result = run("info", "bert_classifier", "--tiny")
    assert result.exit_code == 7
    assert "pip install 'dlopt[hf]'" in one_line_error(result)


def test_help_and_list_do_not_import_torch() -> None:
    code = ("import sys; from dlopt.cli.app import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['list']); assert r.exit_code == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_no_arguments_shows_help() -> None:
    result = run()
    assert result.exit_code == 0 and "Commands" in result.output
