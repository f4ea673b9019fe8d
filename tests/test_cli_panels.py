"""The CLI reads in panels: one shared set of target options, option groups per command, choices shown, the
commands in workflow order, backends that cannot run here named with why, and Ctrl-C that prints the exact resume
command. Typer's CliRunner throughout; nothing is trained or measured (the library calls are stubbed)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from dlopt.cli.app import COMMAND_ORDER, app
from dlopt.cli.groups import ADVANCED, BUILD, OUTPUT, TARGET, grouped
from dlopt.cli.target_opts import TargetArgs
from dlopt.core.errors import UnsupportedError

runner = CliRunner()
GROUP = typer.main.get_command(app)
TARGET_COMMANDS = ("prune", "quantize", "export", "bench")  # the commands that build a TargetOptions
SHARED = {"--checkpoint": TARGET, "--run": TARGET, "--weights": TARGET, "--trust-code": TARGET,
          "--model-code": TARGET, "--trust-pickle": TARGET, "--set": BUILD, "--input-size": BUILD,
          "--input-shape": BUILD, "--max-length": BUILD, "--tiny": BUILD, "--out": OUTPUT}


def _invoke(*args: object, columns: int = 100):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


def _options(command: str) -> dict[str, object]:
    return {o: p for p in GROUP.commands[command].params if p.param_type_name == "option" and not p.hidden
            for o in p.opts}


# -- one target dependency ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", TARGET_COMMANDS)
def test_every_target_command_shows_the_shared_target_options_in_the_same_panels(command: str) -> None:
    opts = _options(command)
    assert {flag: getattr(opts.get(flag), "rich_help_panel", None) for flag in SHARED} == SHARED


@pytest.fixture
def captured(monkeypatch) -> list:
    """Stop each command where it hands its TargetOptions to the library, and keep them."""
    seen: list = []

    def stop(opts, *_args, **_kwargs):
        seen.append(opts)
        raise UnsupportedError("captured")

    import dlopt.bench.runner  # noqa: F401  imported before the stub: a module importing resolve_target by name
    import dlopt.bench.variants  # noqa: F401  while it is patched would keep the stub after the test

    monkeypatch.setattr("dlopt.contract.target.resolve_target", stop)
    monkeypatch.setattr("dlopt.bench.variants.open_source", stop)
    monkeypatch.setattr("dlopt.bench.runner.check_measurable", lambda cfg: None)
    return seen


def test_the_same_flags_make_the_same_target_options_in_every_command(captured, tmp_path) -> None:
    flags = ["mlp", "--set", "num_classes=3", "--input-size", "5", "--tiny", "--run", tmp_path / "r",
             "--checkpoint", tmp_path / "c.json", "--weights", "DEFAULT", "--max-length", "7", "--out", tmp_path]
    for command in TARGET_COMMANDS:
        res = _invoke(command, *flags)
        assert res.exit_code == 4 and "captured" in res.output, (command, res.output)
    base = [{k: v for k, v in vars(o).items() if k not in ("seed", "variant", "trust_pickle")} for o in captured]
    assert len(base) == 4 and all(b == base[0] for b in base), base
    assert base[0] == {"name": "mlp", "checkpoint": tmp_path / "c.json", "run": tmp_path / "r", "root": tmp_path,
                       "sets": {"num_classes": "3"}, "input_size": 5, "input_shape": None, "tiny": True,
                       "weights": "DEFAULT", "open_run": None, "max_length": 7}
    assert TargetArgs(sets=["num_classes=3"], out=tmp_path).options("mlp", seed=7).seed == 7


def test_each_command_adds_only_its_own_target_fields(captured, tmp_path) -> None:
    _invoke("prune", "mlp", "--seed", "5", "--out", tmp_path)
    _invoke("quantize", "mlp", "--variant", "pruned/model.json", "--out", tmp_path)
    _invoke("export", "mlp", "--trust-pickle", "--out", tmp_path)
    prune, quantize, export = captured
    assert (prune.seed, quantize.variant, export.trust_pickle) == (5, "pruned/model.json", True)


# -- option groups -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knobs:
    size: Annotated[int, typer.Option("--size", rich_help_panel=ADVANCED)] = 1
    name: Annotated[str, typer.Option("--label", rich_help_panel="Knobs")] = "x"


@dataclass(frozen=True)
class Clash:
    path: Annotated[str, typer.Option("--path")] = ""


def test_grouped_flattens_groups_into_options_and_rebuilds_them() -> None:
    got: list = []

    @grouped
    def cmd(path: Annotated[str, typer.Argument()], *, knobs: Knobs) -> None:
        got.append((path, knobs))

    assert list(inspect.signature(cmd).parameters) == ["path", "name", "size"]  # Advanced after the command's own
    one = typer.Typer()
    one.command()(cmd)
    assert runner.invoke(one, ["p", "--size", "3"]).exit_code == 0
    assert got == [("p", Knobs(size=3, name="x"))]

    def clashing(path: Annotated[str, typer.Argument()], *, c: Clash) -> None:
        return None

    with pytest.raises(TypeError, match="repeat path"):
        grouped(clashing)


@pytest.mark.parametrize("command", sorted(GROUP.commands))
def test_no_command_function_is_over_60_lines(command: str) -> None:
    source = inspect.getsource(inspect.unwrap(GROUP.commands[command].callback))
    assert len(source.splitlines()) <= 60, f"dlopt {command}: {len(source.splitlines())} lines"


# -- the help: panels, choices, width ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["prune", "bench", "quantize"])
def test_the_big_commands_help_fits_100_columns_in_panels_with_whole_option_names(command: str) -> None:
    text = _invoke(command, "--help").output
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in text
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert panels[:2] == ["Arguments", "Options"] and panels[-4:] == [TARGET, BUILD, OUTPUT, ADVANCED], panels
    assert f"{command.capitalize()} options" in panels
    words = set(re.findall(r"--[a-z][a-z0-9-]*", text))
    assert set(_options(command)) - {"-o", "-q", "-v"} <= words  # each option name whole, on one line


CHOICES = {("prune", "--method"): "<structured|unstructured>", ("prune", "--importance"): "<l1|l2|taylor|bn-scale>",
           ("prune", "--target-runtime"): "<onnxruntime|eager>",
           ("quantize", "--method"): "<auto|static|dynamic|fp16|bf16>",
           ("quantize", "--calibration-method"): "<minmax|entropy|percentile>",
           ("quantize", "--quant-format"): "<qdq|qoperator>", ("bench", "--device"): "<cpu|cuda>",
           ("train", "--optimizer"): "<adamw|sgd>", ("export", "--exporter"): "<dynamo|legacy>"}


@pytest.mark.parametrize(("command", "flag"), sorted(CHOICES))
def test_choices_are_shown_instead_of_str(command: str, flag: str) -> None:
    text = _invoke(command, "--help", columns=200).output
    line = next(ln for ln in text.splitlines() if re.search(rf"│ {flag}\s", ln))
    assert CHOICES[command, flag] in line and "<str>" not in line, line


def test_quantize_choices_written_out_match_the_library() -> None:
    from dlopt.cli.quantize_cmds import BACKENDS, CALIBRATION_METHODS
    from dlopt.prune.config import PruneConfig
    from dlopt.quantize.config import CalibrationMethod, QBackend

    assert list(BACKENDS) == [b.value for b in QBackend]
    assert list(CALIBRATION_METHODS) == [m.value for m in CalibrationMethod]
    for runtime in ("onnxruntime", "eager"):
        assert PruneConfig(target_runtime=runtime).target_runtime == runtime


def test_commands_are_listed_in_workflow_order_and_unknown_ones_last() -> None:
    import click

    group = typer.main.get_command(app)
    group.add_command(click.Command("aaa-new"))
    listed = group.list_commands(click.Context(group))
    assert listed[-1] == "aaa-new"
    assert [c for c in listed if c in COMMAND_ORDER] == [c for c in COMMAND_ORDER if c in listed]
    text = _invoke("--help").output
    shown = [c for c in re.findall(r"│ ([a-z]+) ", text) if c in group.commands]
    assert shown == [c for c in listed if c != "aaa-new"]


def test_bench_backend_help_offers_what_runs_here_and_says_why_not_for_the_rest(monkeypatch) -> None:
    import importlib.util

    from dlopt.cli.bench_cmds import _backend_help

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    monkeypatch.setattr("glob.glob", lambda pattern: [])  # no /dev/nvidia0: no CUDA GPU
    text = _backend_help()
    offered, _, away = text.partition("Unavailable here:")
    assert "tensorrt (no CUDA GPU" in away and "openvino (openvino is not installed" in away
    assert "eager" in offered and "onnxruntime" in offered and "tensorrt" not in offered.split("(default")[0]
    assert "openvino" not in offered.split("(default")[0]


def test_backend_help_imports_no_runtime() -> None:
    code = ("import sys; from dlopt.cli.app import app; from typer.testing import CliRunner; "
            "rs = [CliRunner().invoke(app, [c, '--help']) for c in ('bench', 'quantize', 'prune')]; "
            "assert all(r.exit_code == 0 for r in rs); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'openvino', 'nncf', "
            "'torchao')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- Ctrl-C prints the exact resume command ----------------------------------------------------------------------

def _interrupt_after_making_a_run(root_of):
    def run(*args, **kwargs):
        from dlopt.core.runs import Run

        Run.create(root_of(*args, **kwargs), "mlp", {"arch": "mlp"})
        raise KeyboardInterrupt
    return run


def test_ctrl_c_in_pipeline_prints_the_resume_command_for_the_run_it_made(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("dlopt.pipeline.run_pipeline", _interrupt_after_making_a_run(lambda cfg, root, *a, **k: root))
    res = _invoke("pipeline", "mlp", "--tiny", "--epochs", "1", "--out", tmp_path, columns=400)
    (run_dir,) = list(tmp_path.glob("mlp/*"))
    assert res.exit_code == 130, res.output
    assert f"resume with: dlopt pipeline --resume {run_dir} mlp --tiny --epochs 1 --out {tmp_path}" in res.output


def test_ctrl_c_in_a_resumed_pipeline_names_that_run_once(monkeypatch, tmp_path) -> None:
    from dlopt.core.runs import Run

    run = Run.create(tmp_path, "mlp", {"arch": "mlp"})
    monkeypatch.setattr("dlopt.pipeline.run_pipeline", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr("dlopt.cli.pipeline_cmds._effective", lambda *a: None)
    res = _invoke("-q", "pipeline", f"--resume={run.path}", "--stages", "export", columns=400)
    assert res.exit_code == 130
    assert f"resume with: dlopt -q pipeline --resume {run.path} --stages export" in res.output


def test_ctrl_c_in_train_prints_its_resume_command(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("dlopt.train.train", _interrupt_after_making_a_run(lambda cfg: cfg.out))
    res = _invoke("train", "mlp", "--epochs", "2", "--out", tmp_path, columns=400)
    (run_dir,) = list(tmp_path.glob("mlp/*"))
    assert res.exit_code == 130
    assert f"resume with: dlopt train --resume {run_dir} mlp --epochs 2 --out {tmp_path}" in res.output


def test_ctrl_c_before_a_run_exists_or_in_a_command_without_resume_says_rerun(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("dlopt.pipeline.run_pipeline", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    res = _invoke("pipeline", "mlp", "--out", tmp_path)
    assert res.exit_code == 130 and "rerun the command" in res.output and "--resume" not in res.output
    monkeypatch.setattr("dlopt.contract.target.resolve_target", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    res = _invoke("prune", "mlp", "--out", tmp_path)
    assert res.exit_code == 130 and "rerun the command" in res.output and "--resume" not in res.output


def test_the_resume_line_is_quoted_for_the_shell() -> None:
    from dlopt.cli.resume import command_line

    line = command_line(["-v", "pipeline", "my model.py:build", "--resume", "old"], "pipeline", Path("a b/r1"))
    assert line == "dlopt -v pipeline --resume 'a b/r1' 'my model.py:build'"


def test_quantize_backend_offers_what_is_installed_and_says_why_not(monkeypatch) -> None:
    import importlib.util

    from dlopt.cli.quantize_cmds import _backend_option

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "nncf" else real(n, *a))
    option = _backend_option()
    assert option.metavar == "<onnxruntime|torch>" and "Unavailable here: openvino (nncf not installed)." in option.help
