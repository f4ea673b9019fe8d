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
    assert "debug: export config: ExportConfig(" in verbose.output.replace("\n", "")
    assert "debug:" not in run("export", "mlp", "--tiny", "--format", "torchscript", "--out", str(tmp_path)).output


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
    data = json.loads(res.stdout)
    assert sorted(p.name for p in dest.iterdir()) == ["model.json", "model.safetensors"]
    from dlopt.models.checkpoint import load_checkpoint

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


def _lines_fit(text: str, width: int) -> None:
    assert "…" not in text, text  # nothing cut
    assert max(len(line) for line in text.splitlines()) <= width, text


def test_bench_iterations_warmup_percentiles_and_throughput(tmp_path) -> None:
    import json

    res = run("bench", "mlp", "--tiny", "--backend", "eager", "--batch-size", "4", "--iterations", "7", "--warmup",
              "1", "--percentiles", "90,99,99.9", "--out", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    (row,) = data["rows"]
    assert row["stats"]["n"] == 7 and row["stop"] == "iterations" and row["warmup_calls"] == 1
    assert set(row["stats"]["percentiles_ms"]) == {"50", "90", "99", "99.9"}
    assert row["stats"]["percentiles_ms"]["50"] == row["stats"]["median_ms"]
    assert row["throughput_per_s"] == pytest.approx(4e3 / row["stats"]["median_ms"], rel=1e-3)
    table = run("bench", data["run"], "--backend", "eager", "--iterations", "5", "--percentiles", "99.9")
    assert table.exit_code == 0, table.output
    assert "p99.9" in table.output and "items/s" in table.output
    both = run("bench", data["run"], "--iterations", "5", "--budget-s", "1")
    assert both.exit_code == 2 and "give one of them" in both.output
    bad = run("bench", data["run"], "--percentiles", "50,101")
    assert bad.exit_code == 2 and "--percentiles" in bad.output


def test_bench_table_fits_80_columns_with_whole_numbers(tmp_path) -> None:
    import json

    from dlopt.cli.common import fmt_ms, fmt_speedup

    res = run("bench", "mlp", "--tiny", "--backend", "eager,torchscript", "--iterations", "20", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    table = res.output.split("hidden at")[0].split("load average")[0]
    _lines_fit(table, 80)
    data = json.loads(next(tmp_path.rglob("bench.json")).read_text())
    for r in data["rows"]:
        speedup = "noisy" if r.get("speedup_noisy") else fmt_speedup(r["speedup_vs_eager"])  # a loaded machine
        assert fmt_ms(r["stats"]["median_ms"]) in table and speedup in table
    assert "torchscript" in table.replace("\n", "")


def test_only_the_backends_asked_for(tmp_path) -> None:
    import json

    made = run("export", "mlp", "--tiny", "--format", "pt2", "--no-verify", "--out", str(tmp_path), "--json")
    assert made.exit_code == 0, made.output
    rundir = json.loads(made.output)["run"]
    rows = json.loads(run("bench", rundir, "--backend", "eager", "--iterations", "3", "--batch-sizes", "1",
                          "--json").output)["rows"]
    assert [r["variant"] for r in rows] == ["eager"]
    rows = json.loads(run("bench", rundir, "--backend", "eager,pt2", "--iterations", "3", "--batch-sizes", "1",
                          "--json").output)["rows"]
    assert [r["variant"] for r in rows] == ["eager", "pt2:model.pt2"]


def test_noisy_rows_are_marked_and_their_speedup_not_printed(tmp_path) -> None:
    from dlopt.bench.runner import _finish, _speedups
    from dlopt.cli.bench_cmds import _render

    ctx = {"percentiles": (50.0, 90.0, 99.0), "peak": {}}
    rows = {name: {"variant": name, "batch_size": 1, "precision": "fp32", "status": "unavailable"}
            for name in ("eager", "calm", "wild")}
    _finish(rows["eager"], [1e-3] * 20, "converged", None, ctx)
    _finish(rows["calm"], [5e-4] * 20, "converged", None, ctx)
    _finish(rows["wild"], [1e-4] * 10 + [5e-3] * 10, "budget", None, ctx)  # IQR far above the median
    _speedups(rows)
    assert rows["wild"]["noisy"] is True and "IQR" in rows["wild"]["noise_reason"]
    assert rows["wild"]["speedup_noisy"] is True and "noisy" not in rows["calm"]
    assert rows["calm"]["speedup_vs_eager"] == 2.0
    result = {"target": "t", "device": "cpu", "threads": 1, "rows": list(rows.values()), "notes": [],
              "config": {"percentiles": [50, 90, 99], "iqr_target": 0.1},
              "loadavg": {"start": [0.5], "end": [0.5], "cpus": 2}, "peak": {}}
    from dlopt.cli.common import console

    old, console.width = console.width, 120
    try:
        with console.capture() as cap:
            _render(result, tmp_path / "bench.json")
    finally:
        console.width = old
    text = cap.get()
    wild = next(line for line in text.splitlines() if "wild" in line)
    assert "noisy" in wild and not re.search(r"\d+\.\d\dx", wild)
    assert "2.00x" in next(line for line in text.splitlines() if "calm" in line)


def test_a_budget_overrun_says_why() -> None:
    import time

    from dlopt.bench.budget import Budget
    from dlopt.bench.config import BenchConfig
    from dlopt.bench.timing import round_robin

    cfg = BenchConfig(budget_s=0.05, min_calls=5, block_s=0.001)
    series = round_robin({"slow": lambda: time.sleep(0.02)}, {"slow": 0.02}, cfg, keep_budget=True)
    assert len(series["slow"].times) < 5 and series["slow"].stop == "budget spent"  # no call started past the budget
    budget = Budget(cfg, 1)
    note = budget.shape_done((1, None), 2.0, 0.05)
    assert note and "--budget-s 0.05" in note and "warm-up" in note
    assert Budget(BenchConfig(budget_s=10), 1).shape_done((1, None), 1.0, 9.0) is None
    assert round_robin({"f": lambda: None}, {"f": 1e-6}, BenchConfig(iterations=9))["f"].stop == "iterations"


def test_list_fits_80_columns_and_pipes_follow_columns() -> None:
    narrow = run("list", columns=80)
    _lines_fit(narrow.output, 80)
    assert "classification" in narrow.output and "accuracy" in narrow.output
    wide = runner.invoke(app, ["list"], env={"COLUMNS": None})  # piped, no COLUMNS: nothing wrapped or cut
    assert "onnx,ts,pt2,ov" in wide.output and "…" not in wide.output
    assert max(len(line) for line in wide.output.splitlines()) > 80
    _lines_fit(run("list", columns=100).output, 100)


def test_one_number_format_per_quantity() -> None:
    from dlopt.cli.common import fmt_bytes, fmt_ms, fmt_rate, fmt_speedup

    assert [fmt_ms(x) for x in (4013.2, 9.421, 0.01234, 99.96, 9.996)] == ["4013", "9.42", "0.0123", "100", "10.0"]
    assert fmt_speedup(4.9349) == "4.93x" and fmt_rate(28123.4) == "28.1k" and fmt_rate(512.0) == "512"
    assert fmt_bytes(1_234_567) == "1.23 MB" and fmt_bytes(2048) == "2.05 KB" and fmt_bytes(12) == "12 B"


def test_bench_result_carries_the_budget_note(tmp_path) -> None:
    from dlopt.bench.config import Backend, BenchConfig
    from dlopt.bench.runner import bench
    from dlopt.contract.target import TargetOptions

    cfg = BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1,), budget_s=0.01, min_calls=30_000, max_calls=30_000,
                      warmup_calls=1, threads=1)
    out = bench(TargetOptions(name="mlp", tiny=True, root=tmp_path), cfg)  # 30000 calls do not fit in 10 ms
    assert len(out.result["notes"]) == 1 and "budget spent" in out.result["notes"][0], out.result["notes"]
    assert "batch 1: eager" in out.result["notes"][0] and out.result["rows"][0]["stop"] == "budget spent"


def test_print_config_writes_every_key_and_loads_back_the_same(tmp_path) -> None:
    import json
    import tomllib

    from dlopt.cli.pipeline_cmds import _effective, _printable
    from dlopt.pipeline import load_config

    res = run("pipeline", "mlp", "--tiny", "--ratio", "0.5", "--epochs", "2", "--set", "num_classes=3",
              "--print-config")
    assert res.exit_code == 0, res.output
    text = res.output
    for key in ("round_to", "finetune_lr", "data_limit", "finetune_epochs", "target_speedup"):
        assert f"# {key} = (none: default)" in text  # a None default is a commented line, not dropped
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    expected = _effective("mlp", None, None, {"tiny": True, "sets": {"num_classes": "3"}, "train": {"epochs": 2},
                                              "prune": {"ratio": 0.5}})

    def same(cfg) -> dict:  # every key the stages get, library defaults included; tuples and enums as TOML has them
        return json.loads(json.dumps(_printable(cfg), default=str))

    loaded = load_config(path)
    assert same(loaded) == same(expected) and loaded.prune["ratio"] == 0.5 and loaded.tiny is True
    assert tomllib.loads(text)["sets"] == {"num_classes": "3"}
    printed = {k for section in tomllib.loads(text).values() if isinstance(section, dict) for k in section}
    every = {k for section in _printable(expected).values() if isinstance(section, dict) for k in section}
    none_keys = {line.split()[1] for line in text.splitlines() if line.endswith("(none: default)")}
    assert every - {"num_classes"} == (printed | none_keys) - {"num_classes"}


def test_csv_carries_percentiles_and_noise(tmp_path) -> None:
    import csv

    res = run("bench", "mlp", "--tiny", "--backend", "eager", "--batch-size", "1", "--iterations", "5",
              "--percentiles", "99.9", "--out", str(tmp_path), "--csv", str(tmp_path / "b.csv"))
    assert res.exit_code == 0, res.output
    (row,) = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert float(row["p99.9_ms"]) >= float(row["p50_ms"]) > 0 and "noisy" in row
