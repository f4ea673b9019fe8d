"""The timing loop: a first call and warm-up apart, then interleaved round-robin blocks until each
variant's IQR is under the target fraction of its median or the budget runs out (no call is started that would end
past it)."""

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


def warm_up(fn: Callable[[], Any], calls: int, sync: Sync = no_sync, first: Callable[[], Any] | None = None,
            max_s: float = float("inf")) -> Warmup:
    """The first call, then `calls` untimed ones (at least one); under a budget they stop once they took `max_s`,
    so a slow variant (a second per call) warms with one or two calls instead of spending the budget's time."""
    t0 = time.perf_counter()
    (first or fn)()
    sync()
    first_s = time.perf_counter() - t0
    times = time_calls(fn, 1, sync)
    while len(times) < calls and sum(times) < max_s:
        times += time_calls(fn, 1, sync)
    est = sorted(times)[len(times) // 2]
    return Warmup(first_call_s=first_s, warmup_s=sum(times), calls=len(times), estimate_s=est)


@dataclass
class Series:
    """Timings gathered for one variant; `stop` says why gathering ended."""

    times: list[float] = field(default_factory=list)
    stop: StopReason | None = None
    blocks: int = 0
    checked_at: int = 0  # convergence is re-checked once the count grew 10% (the check sorts every timing)
    over_budget_s: float = 0.0  # how far its blocks ran past the deadline (a call slower than its running median)


ROUNDS = 10  # a budget holds at least this many round-robin rounds (blocks shorter than block_s when it is short)
MEDIAN_CALLS = 3  # the fewest timed calls whose median is not one call's time: a row with fewer is not ranked


def _clock() -> float:
    return time.perf_counter()


@dataclass(frozen=True)
class Plan:
    """When a variant stops: a fixed count (--iterations), or the budget's deadline with convergence."""

    deadline: float  # perf_counter time; inf with --iterations
    need: int  # timed calls before convergence is judged; fewer at the deadline: BUDGET_SPENT
    cap: int  # never more than this many
    converge: bool
    keep_budget: bool = True  # False: a variant still makes `need` calls past the deadline

    @classmethod
    def of(cls, cfg: BenchConfig, deadline: float | None = None, keep_budget: bool = True) -> Plan:
        if cfg.iterations:
            return cls(float("inf"), cfg.iterations, cfg.iterations, False)
        start = _clock() + cfg.budget_s if deadline is None else deadline
        return cls(start, cfg.min_calls, cfg.max_calls, True, keep_budget)

    def calls(self, estimate_s: float, have: int, want: int, now: float) -> int:
        """The next block's size: `want`, within the cap and, under a budget, no more than fit before the deadline
        at `estimate_s` per call (0: not even one fits, so the variant stops)."""
        room = self.cap - have
        if self.converge and (self.keep_budget or have >= self.need):
            room = min(room, int(max(0.0, self.deadline - now) / max(estimate_s, 1e-9)))
        return max(0, min(room, want))

    def budget_stop(self, calls: int) -> StopReason:
        return StopReason.BUDGET if calls >= self.need else StopReason.BUDGET_SPENT


def _block_calls(estimate_s: float, block_s: float) -> int:
    return max(1, int(block_s / max(estimate_s, 1e-7)))


def round_robin(fns: dict[str, Callable[[], Any]], estimates: dict[str, float], cfg: BenchConfig,
                sync: Sync = no_sync, deadline: float | None = None, keep_budget: bool = False) -> dict[str, Series]:
    """Interleave blocks of calls across variants; the starting variant rotates each round so that slow drift
    (thermal, other load) does not favour one. Block sizes follow each variant's running median.

    Under a budget (until `deadline`, default now + cfg.budget_s) the first round goes cheapest first, so a slow
    variant cannot spend the budget before the others have a block, and a short budget gets shorter blocks. With
    `keep_budget` (dlopt bench) no block starts that would end past the deadline by the variant's running median (a
    variant slower than block_s gets one call per round), and a variant the budget stopped before `min_calls` is
    BUDGET_SPENT (no timings at all when not one call fitted). Without it (the older rule, for callers that need a
    median to decide on more than a bound on time: quantize auto, optimize) every variant still makes `min_calls`
    calls, past the deadline if need be."""
    series = {k: Series() for k in fns}
    plan = Plan.of(cfg, deadline, keep_budget)
    active = sorted(fns, key=lambda k: estimates[k]) if plan.converge else list(fns)
    block_s = cfg.block_s
    if plan.converge and fns:  # a short budget gets shorter blocks: about ROUNDS rounds of every variant fit in it
        block_s = min(block_s, max(0.0, plan.deadline - _clock()) / (ROUNDS * len(fns)))
    rnd = 0
    while active:
        shift = rnd % len(active)
        for key in active[shift:] + active[:shift]:
            s = series[key]
            started = _clock()
            n = plan.calls(estimates[key], len(s.times), _block_calls(estimates[key], block_s), started)
            if n == 0:
                s.stop = plan.budget_stop(len(s.times))
                continue
            gc.disable()
            try:
                s.times.extend(time_calls(fns[key], n, sync))
            finally:
                gc.enable()
            s.blocks += 1
            if (ended := _clock()) > plan.deadline:
                s.over_budget_s += ended - max(started, plan.deadline)
            if plan.converge and len(s.times) >= 1.1 * s.checked_at:
                s.checked_at = len(s.times)
                estimates[key] = sorted(s.times)[len(s.times) // 2]
                if converged(s.times, cfg.iqr_target, cfg.min_calls):
                    s.stop = StopReason.CONVERGED
            if s.stop is None and len(s.times) >= plan.cap:
                s.stop = StopReason.MAX_CALLS if plan.converge else StopReason.ITERATIONS
        active = [k for k in active if series[k].stop is None]
        rnd += 1
    return series
