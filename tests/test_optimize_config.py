"""`dlopt optimize`'s goals and options: parsed, and every bad one refused as one line with exit 2 before any run
directory exists (the library config and the CLI apart)."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import UsageError
from dlopt.models.registry import get_spec
from dlopt.optimize.config import Goal, OptimizeConfig, Runtime, parse_duration, parse_runtimes, parse_threads
from dlopt.optimize.space import build_space

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_goals_parse_into_one_kind_each():
    assert Goal().kind == "fastest" and Goal().max_drop == 1.0 and Goal().batch_size == 1
    assert Goal(target_latency_ms=2.5).kind == "latency"
    assert Goal(target_speedup=3).kind == "speedup" and "3x faster" in Goal(target_speedup=3).describe()
    assert Goal(max_size_mb=4, max_drop=0.5).kind == "size" and "0.5 points" in Goal(max_size_mb=4,
                                                                                    max_drop=0.5).describe()
    with pytest.raises(UsageError, match="two goals"):
        Goal(target_latency_ms=1, target_speedup=2)
    with pytest.raises(UsageError):
        Goal(max_drop=-1)


def test_durations_threads_and_runtimes_parse():
    assert parse_duration("20m") == 1200 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    for bad in ("soon", "20x", "-5", "0"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    assert parse_threads("2") == (2,) and parse_threads("1,2") == (1, 2) and parse_threads("auto")[0] == 1
    assert parse_runtimes("openvino,onnxruntime") == (Runtime.OPENVINO, Runtime.ONNXRUNTIME)
    assert parse_runtimes(None) == ()
    with pytest.raises(UsageError, match="unknown runtime 'tensorflow'"):
        parse_runtimes("onnxruntime,tensorflow")


def test_config_survives_its_json_round_trip():
    cfg = OptimizeConfig(goal=Goal(target_speedup=2.0, batch_size=4), runtimes=("openvino",), threads=(1, 2),
                         trials=7, time_budget_s=60.0)
    assert OptimizeConfig.from_json(cfg.to_json()) == cfg
    assert cfg.stop == (7, 60.0) and OptimizeConfig().stop == (20, None)


@pytest.mark.parametrize(("args", "needle"), [
    (["--target-latency", "2", "--max-size", "3"], "two goals"),
    (["--target-latency", "2", "--target-speedup", "3"], "two goals"),
    (["--runtimes", "tensorrt"], "unknown runtime 'tensorrt'"),
    (["--storage", "just some words", "--study", "s"], "not a database URL"),
    (["--storage", "oracle://u@h/db", "--study", "s"], "unsupported database 'oracle'"),
    (["--storage", "sqlite://", "--study", "s"], "in-memory"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/db", "--study", "s"], "cannot open it"),
    (["--storage", "sqlite:////nonexistent-dir/x/study.db", "--study", "s"], "cannot open it"),
    (["--storage", "sqlite:///study.db"], "give --study NAME"),
    (["--time-budget", "soon"], "--time-budget"),
    (["--max-drop", "-1"], "--max-drop"),
    (["--threads", "0"], "at least 1 thread"),
    (["--inputs", "missing.npz"], "cannot be read"),
])
def test_bad_options_are_one_line_and_create_nothing(tmp_path, args, needle):
    out = tmp_path / "artifacts"
    res = _invoke("optimize", "mlp", "--tiny", *args, "--out", out)
    assert res.exit_code in (2, 3), res.output
    assert needle in _one_line_error(res) or needle in res.output
    assert not out.exists()  # refused before any run directory was made


def test_resume_refuses_other_search_options_and_a_run_without_a_study(tmp_path):
    import json

    res = _invoke("optimize", "--resume", tmp_path)
    assert res.exit_code == 2 and "no optimize study to resume" in _one_line_error(res)
    (tmp_path / "optimize").mkdir()
    (tmp_path / "optimize" / "config.json").write_text(json.dumps(OptimizeConfig(threads=(1,)).to_json()))
    res = _invoke("optimize", "--resume", tmp_path, "--max-drop", "2")
    assert res.exit_code == 2 and "drop --max-drop (the study has 1.0)" in _one_line_error(res)
    same = _invoke("optimize", "--resume", tmp_path, "--max-drop", "1", "--threads", "1", "--trials", "50")
    assert "drop --" not in same.output  # the study's own options (as the printed resume line repeats them) pass
    assert same.exit_code == 3 and "no manifest.json" in _one_line_error(same)  # ...and this folder is no run


def test_capabilities_rule_out_what_the_spec_cannot_do():
    spec = get_spec("mlp")
    no_quant = dataclasses.replace(spec, stages=spec.stages - {"quantize"},
                                   limits={**spec.limits, "quantize": "this test's spec is not quantized"})
    space = build_space(no_quant, OptimizeConfig())
    assert space.formats and all(f.startswith("fp32@") for f in space.formats)
    assert space.left_out["int8@onnxruntime"] == "this test's spec is not quantized"
    perceptron = build_space(get_spec("perceptron"), OptimizeConfig())
    assert perceptron.ratios == (0.0,) and "pruning" in perceptron.left_out
    only_ov = build_space(spec, OptimizeConfig(runtimes=("openvino",)))
    assert {f.split("@")[1] for f in only_ov.formats} == {"openvino"}


def test_the_goal_rule_orders_finalists():
    from dlopt.optimize.pick import Finalist, ranked

    def row(n, ms, drop, size=1_000_000, speedup=2.0):
        cand = {"ratio": 0.0, "precision": "int8", "runtime": "onnxruntime", "threads": 1}
        return Finalist(n, {"label": f"c{n}", "candidate": cand, "p50_ms": ms, "verdict": {"drop": drop},
                            "size_bytes": size, "speedup_vs_eager": speedup, "quantized": None})

    rows = [row(0, 1.0, 0.9), row(1, 1.03, 0.0), row(2, 2.0, 0.0), row(3, 0.5, 3.0)]
    assert [f.trial for f in ranked(Goal(), rows)] == [1, 0, 2]  # 3 is over the budget; 0 and 1 tie on speed
    assert [f.trial for f in ranked(Goal(target_latency_ms=1.5), rows)] == [1, 0]  # most accurate under 1.5 ms
    assert [f.trial for f in ranked(Goal(target_speedup=3.0), rows)] == []
    sized = [row(0, 1.0, 0.0, size=5_000_000), row(1, 2.0, 0.0, size=500_000)]
    assert [f.trial for f in ranked(Goal(max_size_mb=1.0), sized)] == [1]


def test_a_small_space_the_study_can_afford_is_tried_whole_and_a_large_one_starts_from_int8():
    import optuna

    from dlopt.optimize.space import Space
    from dlopt.optimize.study import warm_start

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    small = Space((0.0,), ("fp32@onnxruntime", "int8@onnxruntime", "int8@openvino"), (1, 2), {})
    study = optuna.create_study(directions=["minimize", "minimize"])
    first = warm_start(study, small, OptimizeConfig(trials=None, time_budget_s=60.0), ({"prune": 0.0, "format":
                       "fp32@onnxruntime", "threads": 1},))
    waiting = {tuple(sorted(t.system_attrs["fixed_params"].items())) for t in study.trials}
    assert len(first) == 7 and len(waiting) == 6  # every candidate once (the given one is not enqueued twice)
    big = Space((0.0, 0.3, 0.5), small.formats, (1, 2), {})
    study = optuna.create_study(directions=["minimize", "minimize"])
    assert [p["format"] for p in warm_start(study, big, OptimizeConfig(trials=40))] == ["int8@onnxruntime",
                                                                                        "int8@openvino"]
    study = optuna.create_study(directions=["minimize", "minimize"])
    assert warm_start(study, small, OptimizeConfig(trials=4)) == []  # cannot afford all 6: the sampler chooses
