"""bench.json keeps every variant measured: a later, narrower bench adds its rows (keyed by variant, runtime,
batch and threads, each with when it was measured) instead of replacing the file, and the report shows them all."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from dlopt.bench.history import merge
from dlopt.cli.app import app


def _row(variant: str, backend: str, batch: int, artifact: str | None = None, ms: float = 1.0) -> dict:
    stats = {"n": 10, "median_ms": ms, "mean_ms": ms, "p90_ms": ms, "p99_ms": ms, "min_ms": ms, "iqr_ms": 0.01,
             "iqr_ratio": 0.01}
    return {"variant": variant, "backend": backend, "batch_size": batch, "status": "ok", "stats": stats,
            "artifact": artifact}


def _result(created: str, threads: int, *rows: dict) -> dict:
    return {"schema": "dlopt.bench/1", "created": created, "target": "t", "device": "cpu", "threads": threads,
            "config": {}, "loadavg": {}, "environment": {}, "peak": {}, "rows": list(rows), "notes": []}


def test_a_narrower_bench_adds_its_rows_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "model.pt2").write_bytes(b"pt2")
    full = _result("2026-12-06T10:00:00+00:00", 2, _row("eager", "eager", 1), _row("eager", "eager", 8),
                   _row("onnxruntime:model.onnx", "onnxruntime", 1, "model.onnx"),
                   _row("pt2:model.pt2", "pt2", 1, "model.pt2"))
    (tmp_path / "bench.json").write_text(json.dumps(merge(full, tmp_path / "bench.json")))
    (tmp_path / "model.pt2").write_bytes(b"pt2, exported again")  # its old timing is of another file now
    narrow = _result("2026-12-06T11:00:00+00:00", 2, _row("onnxruntime:model.onnx", "onnxruntime", 1, "model.onnx",
                                                          ms=0.5))
    merged = merge(narrow, tmp_path / "bench.json")
    keys = [(r["variant"], r["batch_size"], r["measured"]) for r in merged["rows"]]
    assert keys == [("eager", 1, "2026-12-06T10:00:00+00:00"), ("eager", 8, "2026-12-06T10:00:00+00:00"),
                    ("onnxruntime:model.onnx", 1, "2026-12-06T11:00:00+00:00")]  # replaced by the newer one
    assert merged["rows"][-1]["stats"]["median_ms"] == 0.5 and merged["rows"][-1]["threads"] == 2
    assert any("kept 2 row(s)" in n for n in merged["notes"]) and any("dropped 1" in n for n in merged["notes"])
    other_threads = merge(_result("2026-12-06T12:00:00+00:00", 1, _row("eager", "eager", 1)), tmp_path / "bench.json")
    assert len([r for r in other_threads["rows"] if (r["variant"], r["batch_size"]) == ("eager", 1)]) == 2  # 1, 2 threads


def test_cli_narrow_bench_after_a_full_one_keeps_every_variant_in_the_report(tmp_path: Path) -> None:
    cli = CliRunner()
    made = cli.invoke(app, ["export", "mlp", "--tiny", "--format", "onnx", "--exporter", "legacy", "--out",
                            str(tmp_path), "--json"])
    assert made.exit_code == 0, made.output
    run = Path(json.loads(made.stdout)["run"])
    first = cli.invoke(app, ["bench", str(run), "--backend", "eager,onnxruntime", "--batch-sizes",
                             "1,2", "--budget-s", "0.2", "--threads", "1"])
    assert first.exit_code == 0, first.output
    time.sleep(1.1)  # bench.json times are to the second
    second = cli.invoke(app, ["bench", str(run), "--backend", "onnxruntime", "--batch-sizes", "1", "--budget-s",
                              "0.2", "--threads", "1"])
    assert second.exit_code == 0, second.output
    data = json.loads((run / "bench.json").read_text())
    measured = {(r["variant"], r["batch_size"]): r["measured"] for r in data["rows"]}
    assert ("eager", 1) in measured and ("eager", 2) in measured and len(measured) == 4
    assert measured["eager", 1] < measured["onnxruntime:model.onnx", 1]  # the narrow bench's row is the newer
    dated = sorted(run.glob("bench-*.json"))
    assert len(json.loads(dated[-1].read_text())["rows"]) == 1  # the dated copy: what that bench measured
    rep = cli.invoke(app, ["report", str(run)])
    assert rep.exit_code == 0, rep.output
    md = (run / "report.md").read_text()
    assert "| fp32 | eager |" in md and "| fp32 | onnxruntime |" in md and "| bench | done |" in md
    assert md.count("- measured ") == 2  # the two benches, each with the rows it timed


def test_two_benches_in_the_same_second_keep_both_dated_copies(tmp_path: Path, monkeypatch) -> None:
    """The dated copy's name was the time to the second: the second bench's copy replaced the first's."""
    from datetime import UTC, datetime

    from dlopt.bench import runner
    from dlopt.bench.config import Backend, BenchConfig
    from dlopt.contract.target import TargetOptions

    same = datetime(2026, 12, 6, 12, 0, 0, 250_000, tzinfo=UTC)
    monkeypatch.setattr(runner, "_now", lambda: same)
    cfg = BenchConfig(backends=(Backend.EAGER,), batch_sizes=(1,), budget_s=0.05, min_calls=5, warmup_calls=1,
                      threads=1)
    first = runner.bench(TargetOptions(name="mlp", tiny=True, root=tmp_path), cfg)
    runner.bench(TargetOptions(name=str(first.run_dir), root=tmp_path), cfg)
    dated = sorted(first.run_dir.glob("bench-*.json"))
    assert [p.name for p in dated] == ["bench-2026-12-06T120000.250000Z.json", "bench-2026-12-06T120000.250001Z.json"]
    assert all(len(json.loads(p.read_text())["rows"]) == 1 for p in dated)
