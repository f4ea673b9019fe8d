"""The pick: the Pareto finalists re-timed together on this machine, then the goal's rule.

Trials may have been timed by other workers, on other machines or under other load; before anything is chosen,
the finalists (the front of latency vs drop among trials within the budget) and their fp32 references are
timed again, interleaved in this one process. The rule:
- no speed/size goal, or --max-size: the fastest within the drop (and the size); medians within 5% of the
  fastest count as ties, and the more accurate of those wins;
- --target-latency / --target-speedup: the smallest drop that meets it (ties: the faster).
A goal no finalist meets ships nothing: the reason names the best reached and what limited it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlopt.optimize.config import Goal
from dlopt.optimize.search import Context, baseline_speedup, drop_gap, goal_gap, speedups
from dlopt.optimize.space import Candidate
from dlopt.optimize.timing import Timed


@dataclass(frozen=True)
class Finalist:
    trial: int
    row: dict[str, Any]  # the trial's result (search.Result.to_json), re-timed fields updated

    @property
    def candidate(self) -> Candidate:
        return Candidate.of_row(self.row["candidate"])

    @property
    def drop(self) -> float:
        return float(self.row["verdict"]["drop"])


def pareto(rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Rows no other row beats on both latency and drop (one per candidate: its latest timing)."""
    latest = {r["label"]: (n, r) for n, r in sorted(rows, key=lambda x: x[0])}
    items = list(latest.values())
    return sorted([(n, r) for n, r in items if not any(
        o["p50_ms"] <= r["p50_ms"] and o["verdict"]["drop"] <= r["verdict"]["drop"] and
        (o["p50_ms"], o["verdict"]["drop"]) != (r["p50_ms"], r["verdict"]["drop"]) for _, o in items)],
        key=lambda x: x[1]["p50_ms"])


def eligible(goal: Goal, row: dict[str, Any]) -> bool:
    """Within the drop (and verified), and within the size when size is the goal: what may become a finalist."""
    if drop_gap(goal, row["verdict"]["drop"], row.get("quantized")) > 0:
        return False
    return goal.kind != "size" or goal_gap(goal, 0.0, None, row["size_bytes"]) <= 0


def finalists(ctx: Context, trials: list[Any]) -> list[Finalist]:
    rows = [(t.number, t.user_attrs["result"]) for t in trials if "result" in t.user_attrs]
    front = pareto([(n, r) for n, r in rows if eligible(ctx.cfg.goal, r)])
    return [Finalist(n, r) for n, r in front[:ctx.cfg.finalists]]


def _materialize(ctx: Context, f: Finalist) -> tuple[Any, Any]:
    """The finalist's file in this run (built here if another worker's trial made it elsewhere) and its verdict."""
    c = f.candidate
    art = ctx.cache.artifact(ctx.cache.prune(ctx.base, c.ratio, c.blocks), c.precision, c.runtime)
    return art, ctx.judge.verdict(art)


def retime(ctx: Context, chosen: list[Finalist]) -> list[Finalist]:
    """Every finalist and its references, interleaved in one process; rows updated with the new figures."""
    if not chosen:
        return []
    from dlopt.optimize.search import references

    entries: dict[str, Timed] = {}
    made = {}
    for f in chosen:
        c = f.candidate
        made[f.trial] = _materialize(ctx, f)
        entries[f.row["label"]] = Timed(c.runtime, c.threads, made[f.trial][0].path)
        entries.update({f"{k} @{c.threads}t": t for k, t in references(ctx, c).items()})
    ctx.events.step(f"re-timing {len(chosen)} finalist(s) together")
    got = ctx.timer.time(entries, ctx.cfg.final_timing_s + 0.25 * len(entries))
    out = []
    for f in chosen:
        c, row, (art, verdict) = f.candidate, dict(f.row), made[f.trial]
        ms = got[row["label"]].p50_ms
        refs = {k: got[f"{k} @{c.threads}t"] for k in references(ctx, c)}
        row.update(p50_ms=ms, iqr_pct=got[row["label"]].iqr_pct, retimed=True, artifact=ctx.rel(art.path),
                   verdict=verdict.to_json(), size_bytes=art.size_bytes,
                   timing={"candidate": got[row["label"]].to_json(), **{k: v.to_json() for k, v in refs.items()}},
                   **speedups({"candidate": ms, **{k: v.p50_ms for k, v in refs.items()}}, c.runtime,
                              ctx.baseline_key))
        out.append(Finalist(f.trial, row))
    return out


def meets(goal: Goal, row: dict[str, Any]) -> bool:
    return eligible(goal, row) and goal_gap(goal, row["p50_ms"], baseline_speedup(row), row["size_bytes"]) <= 0


TIE = 0.05  # medians within 5% of the fastest count as equally fast: the more accurate of them goes first


def ranked(goal: Goal, rows: list[Finalist]) -> list[Finalist]:
    """Finalists that meet the goal, best first by the goal's rule."""
    ok = [f for f in rows if meets(goal, f.row)]
    if goal.kind in ("latency", "speedup"):
        return sorted(ok, key=lambda f: (f.drop, f.row["p50_ms"]))
    by_speed = sorted(ok, key=lambda f: (f.row["p50_ms"], f.drop))
    if not by_speed:
        return []
    fastest = by_speed[0].row["p50_ms"]
    tied = sorted((f for f in by_speed if f.row["p50_ms"] <= fastest * (1 + TIE)), key=lambda f: (f.drop,
                                                                                                   f.row["p50_ms"]))
    return tied + [f for f in by_speed if f not in tied]


def _say(row: dict[str, Any]) -> str:
    speedup, against = baseline_speedup(row), row.get("baseline_reference", "fp32 eager")
    return (f"{row['label']} at {row['p50_ms']:.3g} ms ({speedup or 0:.2f}x vs {against}, "
            f"{row['size_bytes'] / 1e6:.3g} MB), losing {row['verdict']['drop']:.2f} points")


def unreachable(goal: Goal, rows: list[dict[str, Any]], retimed: list[Finalist]) -> str:
    """One line: the goal, the best reached and what limited it."""
    against = next((r["baseline_reference"] for r in rows if r.get("baseline_reference")), "fp32 eager")
    aim = f"goal not reached ({goal.describe(against)})"
    pts = f"{goal.max_drop:g} point{'' if goal.max_drop == 1 else 's'}"
    if not rows:
        return f"{aim}: no trial finished; see the failures in the report"
    within = [f.row for f in retimed] or [r for r in rows if eligible(goal, r)]
    if not within:
        least = min(rows, key=lambda r: r["verdict"]["drop"])
        return f"{aim}: every candidate lost more than {pts}; the least was {_say(least)}; " \
               "limited by accuracy: allow a larger --max-drop, or fine-tune longer"
    best = min(within, key=lambda r: goal_gap(goal, r["p50_ms"], baseline_speedup(r), r["size_bytes"]))
    what = {"latency": "latency", "speedup": "speed-up", "size": "size", "fastest": "accuracy"}[goal.kind]
    return f"{aim}: the best within {pts} is {_say(best)}; limited by {what} on this " \
           "machine: try more trials, more --runtimes or --threads, or a looser goal"
