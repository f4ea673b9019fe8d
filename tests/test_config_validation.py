"""Configs that would fail late, names that would collide, sizes that would exhaust memory (issue 21).

Each bad value is refused before any step runs and before a run directory exists, in one line that names the
section.key, the value and what is allowed; a CLI flag and its pipeline.toml key share the stage config's
validator, so they say the same thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import ConfigError, DloptError

runner = CliRunner()
BIG = "1" + "0" * 400  # an integer of 401 digits


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result, code: int = 2) -> str:
    """The command exited `code` with exactly one 'error:' line and no traceback; returns that line, unwrapped."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    line = " ".join(result.output[result.output.index("error:"):].split())
    assert len(line) < 400, line  # one readable line, even for a 401-digit value
    return line


def _pipeline(tmp_path: Path, toml: str, *extra: object):
    path = tmp_path / "pipeline.toml"
    path.write_text(toml)
    return _invoke("pipeline", "mlp", "--tiny", "--config", path, "--out", tmp_path / "out", *extra)


# (pipeline.toml text, fragments the one error line must hold: the section.key, the value, the allowed range)
BAD_TOML = [
    ("[train]\nepochs = -3\n", ["train.epochs", "-3", "at least 1"]),
    ("[train]\nepochs = " + BIG + "\n", ["train.epochs", "401 characters", "at most 1,000,000"]),
    ("[train]\nlr = nan\n", ["train.lr", "nan", "finite", "above 0"]),
    ("[train]\nlr = -0.1\n", ["train.lr", "-0.1", "above 0"]),
    ("[train]\nbatch_size = -1\n", ["train.batch_size", "-1", "at least 1"]),
    ("[train]\nlimit = -5\n", ["train.limit", "-5", "at least 1"]),
    ("[export]\nformats = [\"onnx\", \"xyz\"]\n", ["export.formats", "'xyz'", "choose one of onnx"]),
    ("[export]\nformats = []\n", ["export.formats", "non-empty"]),
    ("[export]\nexporter = \"fast\"\n", ["export.exporter", "'fast'", "dynamo, legacy"]),
    ("[export]\nbatch_size = 1\n", ["export.batch_size", "1", "at least 2"]),
    ("[bench]\nbudget_s = -1.0\n", ["bench.budget_s", "-1.0", "above 0"]),
    ("[bench]\nbudget_s = nan\n", ["bench.budget_s", "nan", "finite"]),
    ("[bench]\nbudget_s = inf\n", ["bench.budget_s", "inf", "finite"]),
    ("[bench]\nbatch_sizes = []\n", ["bench.batch_sizes", "()", "non-empty"]),
    ("[bench]\nbatch_sizes = [1, 0]\n", ["bench.batch_sizes", "0", "at least 1"]),
    ("[bench]\nthreads = -2\n", ["bench.threads", "-2", "at least 1"]),
    ("[bench]\nbackends = [\"eager\", \"warp\"]\n", ["bench.backends", "'warp'", "choose one of eager"]),
    ("[prune]\nratio = 0.9999999\n", ["prune.ratio", "0.9999999", "at most 0.95"]),
    ("[prune]\nratio = 0\n", ["prune.ratio", "0", "between 0 and 1"]),
    ("[prune]\nratio = nan\n", ["prune.ratio", "nan", "between 0 and 1"]),
    ("[prune]\niterative_steps = 0\n", ["prune.iterative_steps", "0", "at least 1"]),
    ("[prune]\nround_to = -8\n", ["prune.round_to", "-8", "at least 1"]),
    ("[prune]\nfinetune_lr = nan\n", ["prune.finetune_lr", "nan", "finite"]),
    ("[prune]\ndata_limit = " + BIG + "\n", ["prune.data_limit", "401 characters", "at most"]),
    ("[prune]\nmethod = \"magic\"\n", ["unknown pruning method", "'magic'"]),
    ("[quantize]\ncalibration_samples = 0\n", ["quantize.calibration_samples", "0", "at least 1"]),
    ("[quantize]\nmax_drop = nan\n", ["quantize.max_drop", "nan", ">= 0"]),
    ("[quantize]\nmin_agreement = 1.5\n", ["quantize.min_agreement", "1.5", "at most 1"]),
    ("[quantize]\nmethod = \"int4\"\n", ["quantize.method", "'int4'", "choose one of auto"]),
    ("seed = -1\n", ["seed = -1", "at least 0"]),
    ("seed = " + BIG + "\n", ["seed = ", "401 characters", "at most 4,294,967,295"]),
    ("input_size = -4\n", ["input_size = -4", "at least 0"]),
    ("stages = []\n", ["stages", "at least one"]),
    ("[train]\nepoch = 3\n", ["train.epoch", "did you mean epochs"]),
    ("[prune]\nname = \"x\"\n", ["prune.name", "valid keys"]),  # the pipeline names its variants itself
    ("[tran]\nepochs = 3\n", ["unknown key tran", "did you mean train"]),
    ("[verify]\ntolerance = 1\n", ["[verify] takes no options"]),
    ("[train]\nepochs = \"three\"\n", ["train.epochs", "'three'", "wrong type"]),
    ("[bench]\nthreads = 1.5\n", ["bench.threads", "1.5", "wrong type"]),
    ("[prune]\nratio = \"0.3\"\n", ["prune.ratio", "'0.3'", "wrong type"]),
    ("[prune]\nround_to = \"8\"\n", ["prune.round_to", "'8'", "wrong type"]),
    ("[bench]\nbudget_s = true\n", ["bench.budget_s", "True", "wrong type"]),
    ("sets = { num_classes = " + BIG + " }\n", ["num_classes", "401 characters", "out of range"]),
    ("[train]\ndata = \"digitz\"\n", ["train.data", "unknown dataset 'digitz'", "valid: digits"]),
    ("sets = { hidden_sizes = [100000000] }\n", ["mlp", "parameters", "--max-params"]),
]


@pytest.mark.parametrize(("toml", "fragments"), BAD_TOML, ids=[" ".join(t.split())[:40] for t, _ in BAD_TOML])
def test_bad_pipeline_config_is_refused_before_anything_runs(tmp_path: Path, toml: str, fragments: list[str]):
    line = _error_line(_pipeline(tmp_path, toml))
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "out").exists()  # no run directory, no step ran


# The same value through a command's flag and through its pipeline.toml key: the very same message.
SAME_MESSAGE = [
    (["prune", "mlp", "--tiny", "--ratio", "0.9999999"], "[prune]\nratio = 0.9999999\n"),
    (["prune", "mlp", "--tiny", "--ratio", "nan"], "[prune]\nratio = nan\n"),
    (["prune", "mlp", "--tiny", "--iterative-steps", "0"], "[prune]\niterative_steps = 0\n"),
    (["prune", "mlp", "--tiny", "--round-to", "0"], "[prune]\nround_to = 0\n"),
    (["quantize", "mlp", "--tiny", "--calibration-samples", "0"], "[quantize]\ncalibration_samples = 0\n"),
    (["quantize", "mlp", "--tiny", "--max-drop", "nan"], "[quantize]\nmax_drop = nan\n"),
    (["quantize", "mlp", "--tiny", "--calibration-method", "kl"], "[quantize]\ncalibration_method = \"kl\"\n"),
    (["export", "mlp", "--tiny", "--batch-size", "1"], "[export]\nbatch_size = 1\n"),
    (["pipeline", "mlp", "--tiny", "--ratio", "0.9999999"], "[prune]\nratio = 0.9999999\n"),
    (["pipeline", "mlp", "--tiny", "--budget-s", "nan"], "[bench]\nbudget_s = nan\n"),
    (["pipeline", "mlp", "--tiny", "--epochs", "-3"], "[train]\nepochs = -3\n"),
]


@pytest.mark.parametrize(("args", "toml"), SAME_MESSAGE, ids=[" ".join(a[0::3] + a[3:4]) for a, _ in SAME_MESSAGE])
def test_a_flag_and_its_config_key_share_one_validator(tmp_path: Path, args: list[str], toml: str):
    from_flag = _error_line(_invoke(*args, "--out", tmp_path / "cli"))
    from_file = _error_line(_pipeline(tmp_path, toml))
    assert from_flag == from_file
    assert not (tmp_path / "cli").exists() and not (tmp_path / "out").exists()


def test_a_valid_config_passes_and_keeps_the_table_defaults():
    from dlopt.pipeline.config import PipelineConfig, apply, validate

    cfg = validate(apply(PipelineConfig(arch="mlp", tiny=True), {
        "seed": 4_294_967_295, "train": {"epochs": 0, "lr": 0}, "prune": {"ratio": 0.95},
        "bench": {"threads": 0, "batch_sizes": [1]}, "export": {"formats": ["onnx"]}}))
    assert cfg.prune["ratio"] == 0.95 and cfg.train.epochs == 0 and cfg.bench.threads == 0


# -- names that would collide with another stage's record or change on the way to a directory ----------------

RESERVED = ["train", "export", "int8", "pruned-int8", "model", "bench", "report", "verify", "pipeline", "Train",
            "verify-pruned", "manifest.json", "model.json", "model.xml", "model.bin", "x.onnx_data"]  # + every format's files
MALFORMED = [".staging", "a" * 300, "a\nb", "a/b", "../up", "two words", "naïve", "-dash", ""]


@pytest.mark.parametrize("name", RESERVED + MALFORMED)
def test_prune_refuses_a_name_it_would_change_or_that_is_taken(tmp_path: Path, name: str):
    line = _error_line(_invoke("prune", "mlp", "--tiny", "--name", name, "--out", tmp_path))
    assert "prune.name" in line and ("reserved" if name in RESERVED else "not allowed") in line, line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["pruned", "train", "report", "a" * 65, "a\tb"])
def test_quantize_refuses_a_name_it_would_change_or_that_is_taken(tmp_path: Path, name: str):
    line = _error_line(_invoke("quantize", "mlp", "--tiny", "--name", name, "--out", tmp_path))
    assert "quantize.name" in line, line
    assert not any(tmp_path.iterdir())


def test_names_a_user_would_pick_are_kept_exactly():
    from dlopt.prune import PruneConfig
    from dlopt.quantize import QuantizeConfig

    for name in ("pruned", "pruned-0.5", "sparse_90", "p" * 64, "int8-fast"):
        assert PruneConfig(name=name).name == name
    for name in ("int8", "pruned-int8", "fp16", "int8-static"):
        assert QuantizeConfig(name=name).name == name
    with pytest.raises(ConfigError, match="reserved"):
        QuantizeConfig(name="PRUNED")  # one directory on a case-insensitive file system


# -- size ceilings --------------------------------------------------------------------------------------------

def test_a_huge_model_is_refused_before_it_is_built(tmp_path: Path):
    line = _error_line(_invoke("train", "mlp", "--set", "hidden_sizes=[100000000]", "--out", tmp_path))
    assert "mlp" in line and "parameters" in line and "--max-params" in line
    assert not any(tmp_path.iterdir())
    line = _error_line(_invoke("info", "mlp", "--set", "hidden_sizes=[100000000]"))
    assert "GB" in line


def test_the_ceiling_can_be_lowered_and_raised_per_command():
    assert "264 parameters" in _error_line(_invoke("--max-params", "100", "info", "mlp", "--tiny"))
    assert _invoke("--max-params", "1000", "info", "mlp", "--tiny").exit_code == 0
    assert _invoke("info", "mlp", "--tiny").exit_code == 0  # the override lasted one command only
    assert "finite number" in _error_line(_invoke("--max-params", "1e400", "info", "mlp", "--tiny"))
    assert _invoke("info", "mlp", "--tiny").exit_code == 0  # a refused ceiling is not kept either


def test_the_estimate_uses_no_memory(monkeypatch):
    """10**10 float32 weights would be 40 GB: sized on the meta device, it takes no time and no memory."""
    import time

    from dlopt.models.options import check_model_size, estimate_size, set_max_params
    from dlopt.models.registry import _builder, get_spec, make_model_config

    set_max_params(None)  # as a command without --max-params leaves it
    spec = get_spec("mlp")
    cfg = make_model_config(spec, {"hidden_sizes": "[100000, 100000]"})
    t0 = time.perf_counter()
    count, nbytes = estimate_size(_builder(spec), cfg)
    assert count > 10**10 and nbytes >= 4 * count and time.perf_counter() - t0 < 5
    monkeypatch.delenv("DLOPT_MAX_PARAMS", raising=False)
    with pytest.raises(ConfigError, match="above the ceiling of 2e\\+09"):
        check_model_size("mlp", _builder(spec), cfg)
    monkeypatch.setenv("DLOPT_MAX_PARAMS", "5e9")
    with pytest.raises(ConfigError, match="above the ceiling of 5e\\+09"):
        check_model_size("mlp", _builder(spec), cfg)
    monkeypatch.setenv("DLOPT_MAX_PARAMS", "2e10")
    check_model_size("mlp", _builder(spec), cfg)  # raised by the user: refused no more (not built here)


@pytest.mark.parametrize("item", [f"num_classes={BIG}", f"hidden_sizes=[8, {BIG}]", "num_classes=" + "9" * 5000,
                                  "hidden_sizes=" + "[" * 3000 + "]" * 3000, "hidden_sizes=[" + "1," * 6000 + "1]"])
def test_absurd_set_values_are_one_line(item: str):
    line = _error_line(_invoke("info", "mlp", "--set", item))
    assert item.split("=")[0] in line


# -- late failures must say what failed ------------------------------------------------------------------------

def test_failed_steps_are_named_with_their_reason_even_without_a_report():
    from dlopt.cli.pipeline_cmds import failure_message
    from dlopt.pipeline import PipelineOutcome, StepOutcome

    steps = [StepOutcome("train", "ran"), StepOutcome("export", "failed", 1.0, "disk full\nwhile writing model.onnx")]
    line = failure_message(PipelineOutcome("runs/mlp/1", steps, report=None))
    assert "export: disk full while writing model.onnx" in line and "no report was written" in line
    assert "see the report" not in line and "\n" not in line and "--resume runs/mlp/1" in line
    line = failure_message(PipelineOutcome("runs/mlp/1", steps, report="runs/mlp/1/report.html"))
    assert "details in runs/mlp/1/report.html" in line


def test_a_missing_data_path_is_refused_before_the_run(tmp_path: Path):
    line = _error_line(_pipeline(tmp_path, '[train]\ndata = "npz"\ndata_path = "no/such.npz"\n'), code=3)
    assert "train.data_path = 'no/such.npz' does not exist" in line
    assert not (tmp_path / "out").exists()


def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path: Path):
    import os

    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)  # reading it would block forever
    line = _error_line(_invoke("pipeline", "mlp", "--config", fifo, "--out", tmp_path / "out"), code=3)
    assert "not a regular file" in line
    big = tmp_path / "big.toml"
    big.write_text("# x\n" * 300_000)
    assert "kB" in _error_line(_invoke("pipeline", "mlp", "--config", big, "--out", tmp_path / "out"), code=3)


values = st.one_of(st.integers(-(10**30), 10**30), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.text(max_size=8), st.lists(st.one_of(st.integers(-3, 10**20), st.text(max_size=4)), max_size=3))
keys = st.sampled_from([("train", "epochs"), ("train", "lr"), ("train", "limit"), ("prune", "ratio"),
                        ("prune", "round_to"), ("prune", "finetune_epochs"), ("prune", "method"),
                        ("quantize", "calibration_samples"), ("quantize", "auto_backends"), ("quantize", "max_drop"),
                        ("export", "formats"), ("export", "batch_size"), ("bench", "backends"),
                        ("bench", "batch_sizes"), ("bench", "threads"), ("bench", "budget_s"), ("", "seed")])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys, value=values)
def test_any_value_gives_a_config_or_one_line(key: tuple[str, str], value: object):
    """Whatever a TOML table holds, validation returns a config or raises a one-line DloptError, never another."""
    from dlopt.pipeline.config import PipelineConfig, apply, validate

    section, name = key
    try:
        validate(apply(PipelineConfig(), {section: {name: value}} if section else {name: value}))
    except DloptError as exc:
        assert str(exc) and "\n" not in str(exc) and len(str(exc)) < 400


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("config", "kwargs"), [
    ("dlopt.prune:PruneConfig", {"ratio": NAN}), ("dlopt.prune:PruneConfig", {"finetune_lr": INF}),
    ("dlopt.prune:PruneConfig", {"bench_budget_s": NAN}), ("dlopt.quantize:QuantizeConfig", {"max_drop": INF}),
    ("dlopt.quantize:QuantizeConfig", {"max_rel_error": NAN}),
    ("dlopt.quantize:QuantizeConfig", {"search_budget_s": INF}),
    ("dlopt.bench.config:BenchConfig", {"budget_s": INF}), ("dlopt.bench.config:BenchConfig", {"iqr_target": NAN}),
    ("dlopt.train.config:TrainConfig", {"arch": "mlp", "lr": INF}),
])
def test_each_stage_config_refuses_non_finite_numbers(config: str, kwargs: dict):
    """NaN compares false with every bound and infinity passes a lower bound: both must still be refused."""
    import importlib

    module, name = config.split(":")
    cls = getattr(importlib.import_module(module), name)
    key = next(k for k in kwargs if k != "arch")
    with pytest.raises(ConfigError, match=rf"\.{key} = (nan|inf) is out of range"):
        cls(**kwargs)


@pytest.mark.parametrize("args", [
    ["train", "mlp", "--epochs"], ["train", "mlp", "--tiny", "--limit"], ["prune", "mlp", "--tiny", "--iterative-steps"],
    ["prune", "mlp", "--tiny", "--seed"], ["quantize", "mlp", "--tiny", "--calibration-samples"],
    ["bench", "mlp", "--tiny", "--batch-size"], ["bench", "mlp", "--tiny", "--threads"],
    ["export", "mlp", "--tiny", "--opset"], ["pipeline", "mlp", "--tiny", "--input-size"],
], ids=lambda a: " ".join(a[::2]))
def test_a_401_digit_flag_is_one_line_before_any_run(tmp_path: Path, args: list[str]):
    line = _error_line(_invoke(*args, BIG, "--out", tmp_path / "out"))
    assert "(401 characters) is out of range" in line and args[-1] in line
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_record_asking_for_a_huge_model_is_refused_before_it_is_built(tmp_path: Path):
    """A record is data: its config goes through the same ceiling as --set (10 GB of weights are never allocated)."""
    import json

    from dlopt.models.checkpoint import save_checkpoint
    from dlopt.models.registry import create_model, get_spec, make_model_config

    spec = get_spec("mlp")
    cfg = make_model_config(spec, {}, tiny=True)
    record = save_checkpoint(create_model(spec, cfg), spec, cfg, tmp_path / "ck" / "model.json")
    data = json.loads(record.read_text())
    data["config"]["hidden_sizes"] = [100_000_000]
    record.write_text(json.dumps(data))
    line = _error_line(_invoke("export", "--checkpoint", record, "--format", "onnx", "--out", tmp_path / "out"))
    assert "parameters" in line and "checkpoint record's config" in line
    assert not (tmp_path / "out").exists()
