"""The statistics, the timing loop and --compare, on synthetic timings (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.bench import timing
from dlopt.bench.compare import check_regressions, compare
from dlopt.bench.config import Backend, BenchConfig, StopReason, parse_backends
from dlopt.bench.stats import converged, percentile, summarize
from dlopt.core.errors import CheckFailedError, ConfigError
from dlopt.models.options import parse_int_list


@pytest.mark.parametrize("q", [0, 1, 25, 50, 75, 90, 99, 100])
def test_percentile_matches_numpy(q):
    values = sorted(np.random.default_rng(1).lognormal(size=257).tolist())
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summarize_known_values():
    st = summarize([0.001, 0.002, 0.003, 0.004, 0.010])  # seconds
    assert st.n == 5
    assert st.median_ms == pytest.approx(3.0)
    assert st.mean_ms == pytest.approx(4.0)
    assert st.min_ms == pytest.approx(1.0) and st.max_ms == pytest.approx(10.0)
    assert st.iqr_ms == pytest.approx(2.0)  # p75 4 - p25 2
    assert st.iqr_ratio == pytest.approx(2 / 3)
    assert st.p90_ms == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))
    assert st.std_ms == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))


def test_summarize_rejects_empty_and_bad_q():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_converged_needs_calls_and_low_iqr():
    steady = [0.001] * 20
    assert converged(steady, 0.1, 10)
    assert not converged(steady[:5], 0.1, 10)  # too few
    noisy = [0.001, 0.002] * 10
    assert not converged(noisy, 0.1, 10)


def _fake_clock(monkeypatch, per_call: dict[str, list[float]], log: list[str]):
    """time_calls that returns scripted timings per function and logs the block order."""

    def fake(fn, n, sync=timing.no_sync):
        name = fn()
        log.append(name)
        seq = per_call[name]
        return [seq[i % len(seq)] for i in range(n)]

    monkeypatch.setattr(timing, "time_calls", fake)


def test_round_robin_interleaves_rotates_and_converges(monkeypatch):
    log: list[str] = []
    _fake_clock(monkeypatch, {"a": [0.001], "b": [0.002]}, log)
    cfg = BenchConfig(budget_s=5, block_s=0.002, min_calls=6)
    series = timing.round_robin({"a": lambda: "a", "b": lambda: "b"}, {"a": 0.001, "b": 0.002}, cfg)
    assert series["a"].stop == series["b"].stop == StopReason.CONVERGED
    assert log[:2] == ["a", "b"] and log[2:4] == ["b", "a"]  # the first variant rotates each round
    assert len(series["a"].times) >= 6 and len(series["b"].times) >= 6


def test_round_robin_budget_stop_when_noisy(monkeypatch):
    log: list[str] = []
    _fake_clock(monkeypatch, {"a": [0.001, 0.003]}, log)  # IQR never under 10% of the median
    cfg = BenchConfig(budget_s=0.1, block_s=0.004, min_calls=4)  # blocks of 4 calls: the scripted spread in each
    series = timing.round_robin({"a": lambda: "a"}, {"a": 0.001}, cfg)
    assert series["a"].stop == StopReason.BUDGET
    assert len(series["a"].times) >= 4  # past min_calls when the budget ran out: "budget", not "budget spent"


def test_round_robin_max_calls(monkeypatch):
    _fake_clock(monkeypatch, {"a": [0.001, 0.003]}, [])
    cfg = BenchConfig(budget_s=60, block_s=1.0, min_calls=4, max_calls=50)
    series = timing.round_robin({"a": lambda: "a"}, {"a": 0.001}, cfg)
    assert series["a"].stop == StopReason.MAX_CALLS and len(series["a"].times) == 50


def test_time_calls_times_each_call():
    calls = []
    out = timing.time_calls(lambda: calls.append(1), 7)
    assert len(out) == 7 == len(calls) and all(t >= 0 for t in out)


def _result(medians: dict[str, float], iqr_ratio: float = 0.02) -> dict:
    return {"rows": [{"variant": k, "batch_size": 1, "seq_len": None, "status": "ok",
                      "stats": {"median_ms": m, "iqr_ms": m * iqr_ratio}} for k, m in medians.items()]}


def test_compare_verdicts_against_noise():
    old = _result({"eager": 10.0, "onnxruntime": 5.0, "compile": 4.0})
    new = _result({"eager": 12.0, "onnxruntime": 4.0, "compile": 4.04})
    deltas = {d.variant: d for d in compare(new, old)}
    assert deltas["eager"].verdict == "regression" and deltas["eager"].delta_pct == pytest.approx(20.0)
    assert deltas["onnxruntime"].verdict == "faster"
    assert deltas["compile"].verdict == "same"  # +1% is inside the 2% noise
    with pytest.raises(CheckFailedError, match="eager batch 1: \\+20.0%"):
        check_regressions(list(deltas.values()), 10)
    check_regressions(list(deltas.values()), 25)  # under the threshold: passes


def test_compare_noisy_slowdown_is_not_a_regression():
    old, new = _result({"eager": 10.0}, 0.3), _result({"eager": 12.0}, 0.3)
    (d,) = compare(new, old)
    assert d.verdict == "same" and d.noise_pct == pytest.approx(30.0)
    check_regressions([d], 5)


def test_compare_skips_rows_missing_on_either_side():
    old = _result({"eager": 10.0})
    new = _result({"eager": 10.0, "compile": 3.0})
    assert [d.variant for d in compare(new, old)] == ["eager"]


def test_option_parsing():
    assert parse_int_list("1, 8,8", "--batch-size") == (1, 8)
    assert parse_backends("all") == tuple(Backend)
    with pytest.raises(ConfigError, match="choose from eager"):
        parse_backends("eager,tensorrtx")
    with pytest.raises(ConfigError):
        parse_int_list("0,1", "--batch-size")
