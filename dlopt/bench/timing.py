"""The timing loop: a first call and warm-up apart, then interleaved round-robin blocks until each
variant's IQR is under the target fraction of its median or the budget runs out."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlopt.bench.config import BenchConfig, StopReason
from dlopt.bench.stats import converged

Sync = Callable[[], None]


def no_sync() -> None:
    return None


def time_calls(fn: Callable[[], Any], n: int, sync: Sync = no_sync) -> list[float]:
    """Seconds per call for n calls; each call timed on its own, synchronized (CUDA) before the clock stops."""
    clock, out = time.perf_counter, []
    append = out.append
    if sync is no_sync:  # the CPU path: nothing between the two clock reads but the call
        for _ in range(n):
            t0 = clock()
            fn()
            append(clock() - t0)
        return out
    for _ in range(n):
        t0 = clock()
        fn()
        sync()
        append(clock() - t0)
    return out


@dataclass(frozen=True)
class Warmup:
    first_call_s: float  # includes lazy work: torch.compile compiles here, ORT allocates here
    warmup_s: float  # the untimed calls after the first
    calls: int
    estimate_s: float  # per-call estimate that sizes the round-robin blocks


def warm_up(fn: Callable[[], Any], calls: int, sync: Sync = no_sync, first: Callable[[], Any] | None = None) -> Warmup:
    t0 = time.perf_counter()
    (first or fn)()
    sync()
    first_s = time.perf_counter() - t0
    times = time_calls(fn, max(1, calls), sync)
    est = sorted(times)[len(times) // 2]
    return Warmup(first_call_s=first_s, warmup_s=sum(times), calls=len(times), estimate_s=est)


@dataclass
class Series:
    """Timings gathered for one variant; `stop` says why gathering ended."""

    times: list[float] = field(default_factory=list)
    stop: StopReason | None = None
    blocks: int = 0
    checked_at: int = 0  # convergence is re-checked once the count grew 10% (the check sorts every timing)
    over_budget_s: float = 0.0  # time spent after the deadline only to reach min_calls


@dataclass(frozen=True)
class Plan:
    """When a variant stops: a fixed count (--iterations), or the budget with min_calls and convergence."""

    deadline: float  # perf_counter time; inf with --iterations
    need: int  # timed calls every variant makes before it may stop
    cap: int  # never more than this many
    converge: bool

    @classmethod
    def of(cls, cfg: BenchConfig) -> Plan:
        if cfg.iterations:
            return cls(float("inf"), cfg.iterations, cfg.iterations, False)
        return cls(time.perf_counter() + cfg.budget_s, cfg.min_calls, cfg.max_calls, True)


def _block_calls(estimate_s: float, block_s: float, room: int) -> int:
    return max(1, min(room, int(block_s / max(estimate_s, 1e-7))))


def round_robin(fns: dict[str, Callable[[], Any]], estimates: dict[str, float], cfg: BenchConfig,
                sync: Sync = no_sync) -> dict[str, Series]:
    """Interleave blocks of calls across variants; the starting variant rotates each round so that
    slow drift (thermal, other load) does not favour one. Block sizes follow each variant's running
    median. A variant keeps going past the budget until it has `min_calls` timings."""
    series = {k: Series() for k in fns}
    active = list(fns)
    plan = Plan.of(cfg)
    rnd = 0
    while active:
        shift = rnd % len(active)
        for key in active[shift:] + active[:shift]:
            s = series[key]
            started = time.perf_counter()
            if len(s.times) >= plan.need and started >= plan.deadline:
                continue
            n = _block_calls(estimates[key], cfg.block_s, plan.cap - len(s.times))
            gc.disable()
            try:
                s.times.extend(time_calls(fns[key], n, sync))
            finally:
                gc.enable()
            s.blocks += 1
            if started >= plan.deadline:  # past the budget, only because min_calls is not reached yet
                s.over_budget_s += time.perf_counter() - started
            if plan.converge and len(s.times) >= 1.1 * s.checked_at:
                s.checked_at = len(s.times)
                estimates[key] = sorted(s.times)[len(s.times) // 2]
                if converged(s.times, cfg.iqr_target, cfg.min_calls):
                    s.stop = StopReason.CONVERGED
            if s.stop is None and len(s.times) >= plan.cap:
                s.stop = StopReason.MAX_CALLS if plan.converge else StopReason.ITERATIONS
        out_of_time = time.perf_counter() >= plan.deadline
        for key in active:
            if series[key].stop is None and out_of_time and len(series[key].times) >= plan.need:
                series[key].stop = StopReason.BUDGET
        active = [k for k in active if series[k].stop is None]
        rnd += 1
    return series
