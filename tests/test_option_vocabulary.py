"""Issue 18: one vocabulary for options. A name means one thing in every command (derived from the Typer app, not
listed here); renamed options keep their old spelling for one release, with a one-line notice on stderr; every
command that builds a model by name takes --input-size and --input-shape; one enum per choice."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import typer
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import UnsupportedError

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
NOTICE = "the old spelling goes away in the next release"
USER_MODEL = ("import torch\n\ndef build():\n"
              "    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))\n")


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _shown_options(command: str) -> list:
    """The options `dlopt COMMAND --help` shows (hidden old spellings are not shown)."""
    return [p for p in GROUP.commands[command].params if p.param_type_name == "option" and not p.hidden]


def _type_name(annotation: object) -> str:
    """`dlopt.models.spec.Exporter`, `builtins.int`, `list[str]`: two enums of the same name are two types."""
    return f"{annotation.__module__}.{annotation.__qualname__}" if isinstance(annotation, type) else repr(annotation)


def vocabulary() -> dict[str, dict[tuple[str, str], list[str]]]:
    """option name -> {meaning: commands}; a meaning is the value it fills and its Python type (an enum is itself)."""
    names: dict[str, dict[tuple[str, str], list[str]]] = defaultdict(lambda: defaultdict(list))
    for command in COMMANDS:
        for p in _shown_options(command):
            meaning = (p.name, _type_name(p.type_descriptor.annotation))
            for flag in (*p.opts, *p.secondary_opts):
                names[flag][meaning].append(command)
    return names


def test_no_option_name_means_two_things_across_commands():
    names = vocabulary()
    assert len(names) > 40 and {"--exporter", "--batch-sizes", "--quant-format", "--input-shape"} <= set(names)
    clashes = {flag: dict(meanings) for flag, meanings in names.items() if len(meanings) > 1}
    assert not clashes, f"one option name, several meanings: {clashes}"


def test_the_help_shows_the_new_names_and_never_the_old_spellings():
    bench = " ".join(_invoke("bench", "--help").output.split())
    quantize = " ".join(_invoke("quantize", "--help").output.split())
    assert "--batch-sizes" in bench and "--batch-size " not in bench
    assert "--quant-format" in quantize and "--format " not in quantize


def test_exporter_is_one_enum_everywhere():
    from dlopt.bench.config import Exporter as BenchExporter
    from dlopt.models.spec import Exporter
    from dlopt.quantize.config import QuantizeConfig

    typed = {cmd: p.type_descriptor.annotation for cmd in COMMANDS for p in _shown_options(cmd) if p.name == "exporter"}
    assert set(typed) >= {"export", "quantize", "bench"} and set(typed.values()) == {Exporter}, typed
    assert BenchExporter is Exporter and QuantizeConfig(exporter="legacy").exporter is Exporter.LEGACY
    res = _invoke("quantize", "mlp", "--exporter", "fast")
    assert res.exit_code == 2 and "dynamo" in res.output and "legacy" in res.output


def test_quantization_method_is_one_enum_for_spec_config_and_cli():
    from dlopt.models.registry import get_spec
    from dlopt.models.spec import QuantMethod
    from dlopt.quantize.config import Method, QuantizeConfig

    assert Method is QuantMethod and QuantizeConfig(method="dynamic").method is QuantMethod.DYNAMIC
    assert all(isinstance(m, QuantMethod) for m in get_spec("mlp").quant_methods)
    shown = " ".join(_invoke("quantize", "--help").output.split())
    assert all(m.value in shown for m in QuantMethod)


@pytest.mark.parametrize("command", [c for c in COMMANDS if any(p.name == "sets" for p in _shown_options(c))])
def test_every_command_that_builds_by_name_takes_input_size_and_input_shape(command: str):
    names = {p.name for p in _shown_options(command)}
    assert {"input_size", "input_shape"} <= names, f"dlopt {command} builds a model by name (--set) but lacks them"


# -- renamed options: the new name works, the old spelling works with a notice -------------------------------------

@pytest.fixture
def captured(monkeypatch):
    """Stop bench/quantize at the library call and keep what the CLI built (no model is built or measured)."""
    seen: dict[str, object] = {}

    def fake(name: str):
        def stop(opts, cfg, *_args, **_kwargs):
            seen.update(opts=opts, cfg=cfg)
            raise UnsupportedError(f"{name} captured")
        return stop

    monkeypatch.setattr("dlopt.bench.runner.bench", fake("bench"))
    monkeypatch.setattr("dlopt.quantize.run_quantize", fake("quantize"))
    return seen


@pytest.mark.parametrize(("args", "key", "expected"), [
    (["bench", "mlp", "--batch-sizes", "2,3"], "batch_sizes", (2, 3)),
    (["quantize", "mlp", "--quant-format", "qoperator"], "quant_format", "qoperator"),
])
def test_new_names_reach_the_config_without_a_notice(captured, args, key, expected):
    res = _invoke(*args)
    assert res.exit_code == 4 and "captured" in res.output, res.output
    assert getattr(captured["cfg"], key) == expected and NOTICE not in res.output


@pytest.mark.parametrize(("args", "key", "expected", "notice"), [
    (["bench", "mlp", "--batch-size", "2,3"], "batch_sizes", (2, 3),
     "note: --batch-size is now --batch-sizes for lists; " + NOTICE),
    (["quantize", "mlp", "--format", "qoperator"], "quant_format", "qoperator",
     "note: --format is now --quant-format for qdq/qoperator; " + NOTICE),
])
def test_old_spellings_still_work_with_a_one_line_notice_on_stderr(captured, args, key, expected, notice):
    res = _invoke(*args)
    assert res.exit_code == 4 and "captured" in res.output, res.output
    assert getattr(captured["cfg"], key) == expected
    assert res.stderr.splitlines()[0] == notice and notice not in res.stdout
    quiet = _invoke(*args, "-q")  # -q: results and errors only
    assert quiet.exit_code == 4 and NOTICE not in quiet.output


def test_the_defaults_are_unchanged(captured):
    assert _invoke("bench", "mlp").exit_code == 4 and captured["cfg"].batch_sizes == (1, 8)
    assert _invoke("quantize", "mlp").exit_code == 4 and captured["cfg"].quant_format == "qdq"


@pytest.mark.parametrize(("args", "needle"), [
    (["bench", "mlp", "--batch-sizes", "1", "--batch-size", "2"], "--batch-size is the old spelling of --batch-sizes"),
    (["quantize", "mlp", "--quant-format", "qdq", "--format", "qdq"], "--format is the old spelling of --quant-format"),
    (["bench", "mlp", "--batch-size", "0"], "--batch-size '0' needs positive integers"),  # the spelling used
    (["bench", "mlp", "--batch-sizes", "0"], "--batch-sizes '0' needs positive integers"),
    (["quantize", "mlp", "--format", "xyz"], "unknown --format 'xyz'; choose one of qdq, qoperator"),
    (["quantize", "mlp", "--quant-format", "xyz"], "'xyz' is not one of 'qdq', 'qoperator'"),
])
def test_bad_or_doubled_spellings_are_one_line(captured, args, needle, tmp_path):
    res = _invoke(*args, "--out", tmp_path)
    assert res.exit_code == 2, res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("error:")] and needle in " ".join(res.output.split())
    assert "Traceback" not in res.output and not captured and not list(tmp_path.iterdir())


# -- --input-shape where a user model can start: real runs -------------------------------------------------------

@pytest.fixture
def user_model(tmp_path, monkeypatch) -> str:
    (tmp_path / "user_model.py").write_text(USER_MODEL)
    monkeypatch.chdir(tmp_path)  # a relative file.py:fn, as a user types it
    return "user_model.py:build"


def test_bench_of_a_user_model_takes_input_shape_and_batch_sizes(user_model, tmp_path):
    res = _invoke("bench", user_model, "--input-shape", "4", "--backend", "eager", "--batch-sizes", "1,3",
                  "--iterations", "3", "--out", tmp_path / "runs", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert sorted(r["batch_size"] for r in rows) == [1, 3] and all(r["status"] == "ok" for r in rows)


def test_prune_of_a_user_model_takes_input_shape(user_model, tmp_path):
    res = _invoke("prune", user_model, "--input-shape", "4", "--ratio", "0.5", "--out", tmp_path / "runs", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["params"]["after"] < data["params"]["before"]


def test_train_takes_input_shape_and_says_why_it_cannot_train_a_user_model(user_model, tmp_path):
    res = _invoke("train", user_model, "--input-shape", "4", "--out", tmp_path / "runs")
    assert res.exit_code == 4 and "cannot be trained" in res.output, res.output
    res = _invoke("train", "mlp", "--input-shape", "4", "--out", tmp_path / "runs")
    assert res.exit_code == 2 and "mlp takes no --input-shape" in res.output, res.output
    assert not (tmp_path / "runs").exists()


def test_pipeline_takes_input_shape_and_runs_a_user_model(user_model, tmp_path):
    shown = _invoke("pipeline", user_model, "--input-shape", "4", "--print-config")
    assert shown.exit_code == 0 and "sets = {input_shape = [4]}" in shown.output, shown.output
    res = _invoke("pipeline", user_model, "--input-shape", "4", "--stages", "export", "--out", tmp_path / "runs",
                  "--json")
    assert res.exit_code == 0, res.output  # the name on the command line is the user's: its later steps may run it
    steps = {s["name"]: s["status"] for s in json.loads(res.stdout)["steps"]}
    assert steps["export"] == "ran", steps


def test_input_shape_refused_where_the_model_has_no_such_option(tmp_path):
    for command in ("bench", "prune", "quantize", "export"):
        res = _invoke(command, "mlp", "--input-shape", "4", "--out", tmp_path)
        assert res.exit_code == 2 and "takes no --input-shape" in res.output, (command, res.output)
    assert not list(tmp_path.iterdir())

