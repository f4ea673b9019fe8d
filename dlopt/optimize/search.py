"""One trial: build the candidate (through the cache), judge it, time it against its fp32 references; and the
ask/tell loop that runs trials until the study holds enough finished ones or this process's time is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlopt.optimize.cache import Artifact, Cache, CandidateFailed, Model, quantize_verdict
from dlopt.optimize.config import Goal, OptimizeConfig, Precision, Runtime
from dlopt.optimize.judge import Judge, Verdict
from dlopt.optimize.space import Candidate, Space
from dlopt.optimize.timing import Timed, Timer, Timing

MAX_ATTEMPTS_PER_TRIAL = 3  # failed trials allowed per wanted finished trial before the search gives up
EAGER_REF = "fp32 eager"  # the timing key of the fp32 PyTorch model itself


@dataclass
class Events:
    step: Callable[[str], None] = lambda _msg: None  # what is being built or measured now
    trial: Callable[[dict[str, Any]], None] = lambda _info: None  # after each trial: n, total, elapsed, best


@dataclass
class Context:
    target: Any  # dlopt.contract.target.Target: the run and its model
    cfg: OptimizeConfig
    space: Space
    cache: Cache
    judge: Judge
    timer: Timer
    base: Model
    fingerprint: dict[str, Any]
    events: Events = field(default_factory=Events)
    # whose fp32 --target-speedup is measured against: eager (the PyTorch model), or a file's runtime when there is
    # no PyTorch model (an ONNX file made elsewhere: its own ONNX Runtime session)
    baseline: Runtime = Runtime.EAGER
    # the pick's re-verification, (ctx, row) -> its record; None: dlopt verify against the run's model
    verify: Callable[[Context, dict[str, Any]], dict[str, Any]] | None = None
    notes: tuple[str, ...] = ()  # said in the report whatever is picked
    no_eager: str = ""  # why there is no fp32 eager reference to time (the report says "n/a" and this)
    first: tuple[dict[str, Any], ...] = ()  # trials a new study starts with (Optuna params: prune, format, threads)

    @property
    def baseline_key(self) -> str:
        return f"fp32 {self.baseline}"

    def rel(self, path: Any) -> str:
        return str(path.relative_to(self.target.run.path))


@dataclass(frozen=True)
class Result:
    candidate: Candidate
    artifact: str  # relative to the run
    key: str
    size_bytes: int
    verdict: Verdict
    quantized: dict[str, Any] | None  # the quantize stage's verdict (None for fp32 files)
    timing: dict[str, Timing]  # "candidate", the baseline ("fp32 eager"), and "fp32 <runtime>" of its own runtime
    baseline: str = EAGER_REF  # the timing key --target-speedup is measured against

    @property
    def ms(self) -> float:
        return self.timing["candidate"].p50_ms

    def speedup(self, reference: str) -> float | None:
        ref = self.timing.get(reference)
        return round(ref.p50_ms / self.ms, 4) if ref and self.ms else None

    def to_json(self) -> dict[str, Any]:
        kept = int((self.quantized or {}).get("kept_float") or 0)  # layers its accuracy fallback kept in float
        return {"candidate": self.candidate.to_json(), "label": self.candidate.labelled(kept),
                "artifact": self.artifact, "key": self.key, "size_bytes": self.size_bytes,
                "verdict": self.verdict.to_json(), "quantized": self.quantized,
                "timing": {k: v.to_json() for k, v in self.timing.items()},
                "p50_ms": self.ms, **speedups({k: t.p50_ms for k, t in self.timing.items()}, self.candidate.runtime,
                                              self.baseline)}


def speedups(ms: dict[str, float], runtime: Runtime, baseline: str) -> dict[str, Any]:
    """A candidate's speed-ups from p50s keyed as its timing is ("candidate", "fp32 <runtime>"...): against fp32
    eager (None without a PyTorch model), the fp32 file of its own runtime, and the baseline the goal uses."""
    same = f"fp32 {runtime}"
    ref = same if same in ms and same != EAGER_REF else None

    def over(key: str | None) -> float | None:
        return round(ms[key] / ms["candidate"], 4) if key in ms and ms["candidate"] else None

    return {"speedup_vs_eager": over(EAGER_REF), "runtime_reference": ref, "speedup_vs_runtime_fp32": over(ref),
            "baseline_reference": baseline, "speedup_vs_baseline": over(baseline)}


def baseline_speedup(row: dict[str, Any]) -> float | None:
    """The speed-up --target-speedup is judged on (rows of studies made before there was a baseline: eager's)."""
    return row.get("speedup_vs_baseline", row.get("speedup_vs_eager"))


def goal_gap(goal: Goal, ms: float, speedup: float | None, size_bytes: int) -> float:
    """<= 0 where the speed or size goal is met (0 without one)."""
    if goal.kind == "latency":
        return ms - float(goal.target_latency_ms or 0)
    if goal.kind == "speedup":
        return float(goal.target_speedup or 0) - (speedup or 0.0)
    if goal.kind == "size":
        return size_bytes / 1e6 - float(goal.max_size_mb or 0)
    return 0.0


def drop_gap(goal: Goal, drop: float, quantized: dict[str, Any] | None) -> float:
    """<= 0 where the accuracy budget holds; a file its quantize stage could not verify never does."""
    gap = drop - goal.max_drop
    return max(gap, 1e-6) if quantized is not None and not quantized["verified"] else gap


def references(ctx: Context, cand: Candidate) -> dict[str, Timed]:
    """The fp32 references a candidate is timed beside: the baseline (eager, the PyTorch model), and the fp32 file
    of its own runtime."""
    refs = {}
    for runtime in dict.fromkeys((ctx.baseline, cand.runtime)):
        if runtime == Runtime.EAGER:
            refs[EAGER_REF] = Timed(Runtime.EAGER, cand.threads)
        else:
            fp32 = ctx.cache.artifact(ctx.base, Precision.FP32, runtime)
            refs[f"fp32 {runtime}"] = Timed(runtime, cand.threads, fp32.path)
    return refs


def timed(art: Artifact, threads: int) -> Timed:
    return Timed(art.runtime, threads, art.path)


def evaluate(ctx: Context, cand: Candidate) -> Result:
    """Build (cached), judge (cached by the file's sha256) and time one candidate."""
    model = ctx.cache.prune(ctx.base, cand.ratio, cand.blocks)
    art = ctx.cache.artifact(model, cand.precision, cand.runtime)
    ctx.events.step(f"judging {cand.label}")
    verdict = ctx.judge.verdict(art)
    ctx.events.step(f"timing {cand.label}")
    entries = {"candidate": timed(art, cand.threads), **references(ctx, cand)}
    timing = ctx.timer.time(entries, ctx.cfg.trial_timing_s)
    return Result(cand, ctx.rel(art.path), art.key, art.size_bytes, verdict, quantize_verdict(art), timing,
                  ctx.baseline_key)


def _best(study: Any, goal: Goal) -> str | None:
    from dlopt.optimize.study import completed

    ok = [t for t in completed(study) if t.constraints and all(c <= 0 for c in t.constraints.values())]
    if not ok:
        return None
    t = min(ok, key=lambda t: (t.values[1], t.values[0]) if goal.kind in ("latency", "speedup") else
            (t.values[0], t.values[1]))
    return f"{t.user_attrs['result']['label']}: {t.values[0]:.3g} ms, drop {t.values[1]:.2f} pts"  # < 0: a gain


def run_trial(ctx: Context, study: Any) -> None:
    """Ask, evaluate, tell, the trial's heartbeat recorded all along (dlopt.optimize.study.beating). A candidate that
    cannot be built is a failed trial (with the reason); Ctrl-C fails the trial and stops the search."""
    from optuna.exceptions import UpdateFinishedTrialError

    from dlopt.optimize.study import ask, beating

    trial = ask(study)
    with beating(study, trial):
        try:
            _run_trial(ctx, study, trial)
        except UpdateFinishedTrialError:  # its heartbeat went unseen so long that a worker failed it: its result lost
            ctx.events.step(f"trial {trial.number} was failed by another worker meanwhile (no heartbeat seen)")


def _run_trial(ctx: Context, study: Any, trial: Any) -> None:
    from optuna.trial import TrialState

    from dlopt.core.staging import this_process

    trial.set_user_attr("worker", this_process())
    trial.set_user_attr("fingerprint", ctx.fingerprint)
    cand = Candidate.of({"prune": trial.suggest_categorical("prune", ctx.space.ratios),
                         "blocks": trial.suggest_categorical("blocks", ctx.space.blocks),
                         "format": trial.suggest_categorical("format", ctx.space.formats),
                         "threads": trial.suggest_categorical("threads", ctx.space.threads)})
    trial.set_user_attr("candidate", cand.to_json())
    try:
        result = evaluate(ctx, cand)
    except CandidateFailed as exc:
        trial.set_user_attr("failed_because", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        return
    except KeyboardInterrupt:
        trial.set_user_attr("failed_because", "interrupted (Ctrl-C)")
        study.tell(trial, state=TrialState.FAIL)
        raise
    goal = ctx.cfg.goal
    trial.set_user_attr("result", result.to_json())
    trial.set_constraint("drop", drop_gap(goal, result.verdict.drop, result.quantized))  # <= 0: met
    trial.set_constraint("goal", goal_gap(goal, result.ms, result.speedup(result.baseline), result.size_bytes))
    study.tell(trial, [result.ms, result.verdict.drop])


def search(ctx: Context, study: Any) -> dict[str, Any]:
    """Trials until the study holds `trials` finished ones or `time_budget_s` has passed; what happened."""
    from dlopt.optimize.study import fail_dead, finished

    trials, seconds = ctx.cfg.stop
    t0, ran, start_done = time.monotonic(), 0, finished(study)
    ctx.events.trial({"done": start_done, "total": trials, "elapsed_s": 0.0, "budget_s": seconds,
                      "best": _best(study, ctx.cfg.goal)})
    stopped = "trials"
    while True:
        done = finished(study)
        elapsed = time.monotonic() - t0
        if (trials is not None and done >= trials) or (seconds is not None and elapsed >= seconds):
            stopped = "trials" if trials is not None and done >= trials else "time budget"
            break
        if ran >= MAX_ATTEMPTS_PER_TRIAL * max(trials or 0, done - start_done + 1, 1):
            stopped = "candidates kept failing"
            break  # candidates keep failing: stop rather than loop; the report lists each failure
        if len(explored(study)) >= ctx.space.size:
            stopped = f"every one of the {ctx.space.size} candidates was tried"
            break  # more trials would only time the same files again: the finalists are re-timed anyway
        fail_dead(study)  # as Study.optimize does before each trial: a worker gone meanwhile, here or elsewhere
        run_trial(ctx, study)
        ran += 1
        ctx.events.trial({"done": finished(study), "total": trials, "elapsed_s": time.monotonic() - t0,
                          "budget_s": seconds, "best": _best(study, ctx.cfg.goal)})
    return {"ran": ran, "finished_before": start_done, "finished": finished(study), "stopped": stopped,
            "seconds": round(time.monotonic() - t0, 2)}


RETRIED = ("its process", "interrupted", "its worker")  # failures a later trial may get past (not the candidate's)


def explored(study: Any) -> set[tuple[Any, ...]]:
    """The candidates (params) a trial finished, or failed to build for a reason that would repeat."""
    from optuna.trial import TrialState

    out = set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        why = str(t.user_attrs.get("failed_because") or "")
        if t.state == TrialState.COMPLETE or (why and not why.startswith(RETRIED)):
            out.add(tuple(sorted(t.params.items())))
    return out
