"""`--target-speedup X`: prune in steps, fine-tuning between them, until the measured latency on the chosen
runtime and batch size is X times lower, or the next step would lose more of the metric than `--max-drop`.

Each step prunes the previous step's (fine-tuned) model by STEP_RATIO more (widths chosen as in a plain prune),
fine-tunes it, scores it, and times it against the unpruned model, interleaved (same machine state for both).
The result is the last model within the budget; the path (ratio, latency, speed-up, metric per step) goes to
the report.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlopt.core.errors import ConfigError, UnsupportedError
from dlopt.models.spec import ArchSpec
from dlopt.prune.config import PruneConfig

STEP_RATIO = 0.2  # each step removes this share of the remaining channels of every prunable layer
MAX_STEPS = 8  # 0.8 ** 8 = 17 % of the channels left: beyond that no budget of 1 point holds
Timer = Callable[[nn.Module], Callable[[], Any]]  # model -> a zero-argument call to time


def timer_for(spec: ArchSpec, model_cfg: Any, runtime: str, batch: int) -> Timer:
    """How to run a model once at `batch` on `runtime` (eager, or onnxruntime on one thread)."""
    from dlopt.models.registry import entry_module, make_inputs

    inputs = make_inputs(spec, model_cfg, batch, seed=0)

    def eager(model: nn.Module) -> Callable[[], Any]:
        module = entry_module(model, spec).eval()
        return lambda: _no_grad(module, inputs)

    def ort(model: nn.Module) -> Callable[[], Any]:
        from dlopt.export import ExportConfig, export_model
        from dlopt.models.spec import ExportFormat
        from dlopt.runtime.formats import ort_session

        with tempfile.TemporaryDirectory(prefix="dlopt-speedup-") as tmp:
            res = export_model(model, spec, model_cfg, Path(tmp), ExportConfig(formats=(ExportFormat.ONNX,),
                                                                               verify=False))
            session = ort_session(res.artifacts["onnx"], threads=1, inter_threads=1)
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=False)}
        return lambda: session.run(None, feed)

    return eager if runtime == "eager" else ort


def _no_grad(module: nn.Module, inputs: tuple[Any, ...]) -> Any:
    with torch.no_grad():
        return module(*inputs)


def speedup(base: Callable[[], Any], cand: Callable[[], Any], rounds: int = 5, calls: int = 10) -> tuple[float, float]:
    """(median ms of base, median ms of cand), timed in alternating blocks after a warm-up."""
    for fn in (base, cand):
        for _ in range(3):
            fn()
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for k, fn in enumerate((base, cand)):
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def drop_points(before: float | None, after: float | None, higher_is_better: bool) -> float:
    """How much worse the metric got: points (x100) for a higher-is-better metric, else percent of `before`."""
    if before is None or after is None:
        return 0.0
    if higher_is_better:
        return 100 * (before - after)
    return 100 * (after - before) / max(abs(before), 1e-12)


def prune_to_speedup(model: nn.Module, spec: ArchSpec, cfg: PruneConfig, example: tuple[Any, ...],
                     timer: Timer, score: Callable[[nn.Module], float | None], higher_is_better: bool,
                     tune: Callable[[nn.Module, int], None] | None,
                     say: Callable[[str], None]) -> tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]:
    """(last model within budget, its prune info relative to `model`, the path step by step)."""
    from dlopt.prune.model import prune_model

    step_cfg = dataclasses.replace(cfg, ratio=STEP_RATIO, iterative_steps=1, target_speedup=None)
    base_call, before = timer(model), score(model)
    path: list[dict[str, Any]] = [{"step": 0, "channels_kept": 1.0, "speedup": 1.0, "metric": before}]
    current, infos = model, []
    for step in range(1, MAX_STEPS + 1):
        try:
            cand, info = prune_model(current, spec, step_cfg, example)
        except (ConfigError, UnsupportedError) as exc:  # a layer would be emptied: as far as pruning goes
            path[-1]["stopped"] = f"cannot prune further ({exc})"
            break
        if tune:
            tune(cand, step)
        metric = score(cand)
        base_ms, cand_ms = speedup(base_call, timer(cand))
        row = {"step": step, "channels_kept": round((1 - STEP_RATIO) ** step, 4), "base_ms": round(base_ms, 4),
               "ms": round(cand_ms, 4), "speedup": round(base_ms / cand_ms, 3), "metric": metric,
               "drop_points": round(drop_points(before, metric, higher_is_better), 3)}
        path.append(row)
        say(f"step {step}: {row['speedup']:.2f}x, {spec.metric} {metric}")
        if row["drop_points"] > cfg.max_drop:
            row["stopped"] = f"over the budget (--max-drop {cfg.max_drop:g}): kept step {step - 1}"
            break
        current, infos = cand, [*infos, info]
        if row["speedup"] >= cfg.target_speedup:
            row["stopped"] = f"target {cfg.target_speedup:g}x reached"
            break
    if not infos:
        return current, {}, path
    return current, _combined(infos), path


def _combined(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """The last step's info with 'before' taken from the first step (the unpruned model)."""
    first, last = infos[0], infos[-1]
    out = dict(last)
    for key in ("params", "macs"):
        b, a = first[key]["before"], last[key]["after"]
        out[key] = {"before": b, "after": a, "removed": round(1 - a / max(b, 1), 4)}
    out["widths"] = {"before": first["widths"]["before"], "after": last["widths"]["after"]}
    out["width_plan"] = {n: {"why": f"{len(infos)} step(s) of {STEP_RATIO:g} (--target-speedup)"}
                         for n in last.get("width_plan", {})}
    out["seconds"] = round(sum(i["seconds"] for i in infos), 3)
    return out


def path_note(cfg: PruneConfig, path: list[dict[str, Any]]) -> str:
    """One line for the report: whether the latency target was reached, and where the search stopped."""
    kept = [r for r in path if not r.get("stopped", "").startswith("over the budget")]
    best = kept[-1]
    where = f"{cfg.target_runtime} at batch {cfg.target_batch}"
    plotted = "the path step by step: speedup_path in the report, plotted in speedup_path.png"
    if best["speedup"] >= (cfg.target_speedup or 0):
        return (f"--target-speedup {cfg.target_speedup:g} reached on {where}: {best['speedup']:.2f}x "
                f"at step {best['step']}; {plotted}")
    why = path[-1].get("stopped") or f"stopped after {MAX_STEPS} steps"
    return (f"--target-speedup {cfg.target_speedup:g} NOT reached on {where}: kept step {best['step']} "
            f"({best['speedup']:.2f}x; {why}); {plotted}")
