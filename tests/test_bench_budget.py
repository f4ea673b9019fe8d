"""`dlopt bench` keeps its budget: no timed call starts past it, per shape and over the whole bench; what it cut is
said in the row (stop "budget spent", n of the calls wanted), in a note at the end and in bench.json's "budget".
The loop is checked on a fake clock; the CLI on a deliberately slow model (a forward that sleeps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.bench import timing
from dlopt.bench.budget import Budget
from dlopt.bench.config import BenchConfig, StopReason
from dlopt.cli.app import app


class FakeClock:
    """perf_counter for the loop; each scripted call advances it by that variant's call time."""

    def __init__(self, monkeypatch, per_call: dict[str, float]) -> None:
        self.now, self.per_call, self.calls = 100.0, per_call, {k: 0 for k in per_call}
        monkeypatch.setattr(timing, "_clock", lambda: self.now)
        monkeypatch.setattr(timing, "time_calls", self.time_calls)

    def time_calls(self, fn, n, sync=timing.no_sync):
        name = fn()
        self.calls[name] += n
        out = []
        for i in range(n):
            dt = self.per_call[name] * (1.0 + 0.5 * (i % 2))  # IQR over 10% of the median: never converges
            self.now += dt
            out.append(dt)
        return out


def _run(clock: FakeClock, budget_s: float, min_calls: int = 10) -> dict[str, timing.Series]:
    fns = {k: (lambda k=k: k) for k in clock.per_call}
    cfg = BenchConfig(budget_s=budget_s, min_calls=min_calls, block_s=0.05)
    return timing.round_robin(fns, dict(clock.per_call), cfg, deadline=clock.now + budget_s, keep_budget=True)


def test_no_call_starts_past_the_budget_and_a_slow_variant_is_cut_short(monkeypatch) -> None:
    clock = FakeClock(monkeypatch, {"fast": 0.001, "slow": 1.0})
    start = clock.now
    series = _run(clock, budget_s=2.5)
    # before: "slow" kept going to min_calls (10 calls, 10 s against a 2.5 s budget)
    assert clock.now - start <= 2.5 + 1.5  # at most one call over: the median under-estimates the slow call
    assert series["slow"].stop == StopReason.BUDGET_SPENT and 1 <= len(series["slow"].times) < 10
    assert series["fast"].stop == StopReason.BUDGET and len(series["fast"].times) >= 10


def test_the_cheapest_go_first_and_a_call_that_cannot_fit_is_not_made(monkeypatch) -> None:
    clock = FakeClock(monkeypatch, {"a": 0.01, "b": 0.02, "huge": 5.0})
    series = _run(clock, budget_s=1.0)
    assert len(series["a"].times) >= timing.MEDIAN_CALLS and len(series["b"].times) >= timing.MEDIAN_CALLS
    assert series["huge"].times == [] and series["huge"].stop == StopReason.BUDGET_SPENT
    assert clock.calls["huge"] == 0


def test_the_shapes_share_one_budget_overall() -> None:
    budget = Budget(BenchConfig(budget_s=10.0), shapes=2)
    first = budget.deadline()
    assert first is not None and 9.0 < first - budget.started <= 10.01
    budget.shape_done((1, None), warm_s=3.0, timing_s=13.0)  # the first shape ran 3 s over
    import time

    second = budget.deadline()
    assert second is not None and 6.0 < second - time.perf_counter() <= 7.01  # paid back: 20 - 13 s left
    budget.shape_done((8, None), warm_s=1.0, timing_s=7.0)
    assert budget.deadline() - time.perf_counter() <= 0.01  # nothing left: no more calls anywhere
    rec = budget.record()
    assert rec["per_shape_s"] == 10.0 and rec["total_s"] == 20.0 and rec["timing_s"] == 20.0 and rec["warmup_s"] == 4.0
    assert Budget(BenchConfig(iterations=5), shapes=3).deadline() is None


SLOW_MODEL = '''import time
import torch


class Slow(torch.nn.Module):
    def forward(self, x):
        time.sleep(0.03)
        return x * 2


def build():
    return Slow()
'''


@pytest.mark.filterwarnings("ignore")
def test_cli_rows_and_note_say_what_the_budget_cut(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "slow.py").write_text(SLOW_MODEL)
    monkeypatch.chdir(tmp_path)
    args = ["bench", "slow.py:build", "--input-shape", "4", "--backend", "eager", "--batch-sizes", "1,2",
            "--budget-s", "0.07", "--threads", "1", "--out", "out"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "out" / "slow-build").iterdir())
    data = json.loads((run / "bench.json").read_text())
    rows = [r for r in data["rows"] if r["variant"] == "eager"]
    assert len(rows) == 2 and all(r["stop"] == "budget spent" and r["calls_wanted"] == 10 for r in rows)
    assert all(1 <= r["stats"]["n"] <= 2 for r in rows)  # 0.07 s fits two calls of 30 ms, never ten
    budget = data["budget"]
    assert budget["per_shape_s"] == 0.07 and budget["shapes"] == 2 and budget["total_s"] == pytest.approx(0.14)
    assert budget["timing_s"] > 0 and budget["warmup_s"] > 0 and budget["wall_s"] >= budget["timing_s"]
    assert budget["cut"] == [f"batch {b}: eager ({r['stats']['n']} call{'s' * (r['stats']['n'] > 1)})"
                             for b, r in zip((1, 2), rows, strict=True)]
    assert data["notes"][-1].startswith("budget spent before these had 10 timed calls")
    assert "batch 1: eager" in data["notes"][-1] and "batch 2: eager" in data["notes"][-1]
    assert "budget spent" in res.output and any(f"{r['stats']['n']}/10" in res.output for r in rows)


def test_a_slow_variant_warms_with_fewer_untimed_calls(monkeypatch) -> None:
    clock = FakeClock(monkeypatch, {"slow": 1.0, "fast": 0.001})
    assert timing.warm_up(lambda: "slow", 3, max_s=0.5).calls == 1  # one call already took the allowance
    assert timing.warm_up(lambda: "fast", 3, max_s=0.5).calls == 3
    assert timing.warm_up(lambda: "slow", 3).calls == 3  # no budget (--iterations, other callers): all of them
    assert clock.calls == {"slow": 4, "fast": 3}
    assert Budget(BenchConfig(budget_s=10.0), shapes=2).warm_calls_s(5) == pytest.approx(0.2)
