"""The `--target-speedup` path as a PNG next to the pruned model (`<variant>/speedup_path.png`).

Left: the metric against the measured speed-up, one point per step (step 0 is the unpruned model), joined in
step order, with the target speed-up (vertical line) and the accuracy budget (horizontal line: the metric
`--max-drop` below the unpruned model's). Right: the measured latency per step, unpruned and pruned, timed
interleaved. A step over the budget is drawn as a red cross (its model was not kept). `path_series` is the
data drawn, so a test can check it without reading pixels; matplotlib (Agg) is imported only to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.prune.config import PruneConfig

PLOT = "speedup_path.png"


@dataclass(frozen=True)
class PathSeries:
    """What the plot shows, one entry per step of the path."""

    steps: tuple[int, ...]
    speedup: tuple[float, ...]
    metric: tuple[float | None, ...]
    base_ms: tuple[float | None, ...]
    ms: tuple[float | None, ...]
    rejected: tuple[bool, ...]  # over the budget: not kept
    target: float
    budget: float | None  # the worst metric still within --max-drop; None without a metric


def _budget(cfg: PruneConfig, before: float | None, higher_is_better: bool) -> float | None:
    if before is None:
        return None
    if higher_is_better:
        return before - cfg.max_drop / 100
    return before * (1 + cfg.max_drop / 100)


def path_series(cfg: PruneConfig, path: list[dict[str, Any]], higher_is_better: bool = True) -> PathSeries:
    """The plotted data of a `prune_to_speedup` path."""
    return PathSeries(
        steps=tuple(int(r["step"]) for r in path), speedup=tuple(float(r["speedup"]) for r in path),
        metric=tuple(r.get("metric") for r in path), base_ms=tuple(r.get("base_ms") for r in path),
        ms=tuple(r.get("ms") for r in path),
        rejected=tuple(str(r.get("stopped", "")).startswith("over the budget") for r in path),
        target=float(cfg.target_speedup or 1.0), budget=_budget(cfg, path[0].get("metric"), higher_is_better))


def draw(series: PathSeries, cfg: PruneConfig, metric_name: str) -> Any:
    """The matplotlib Figure of the path (not saved)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    scored = series.metric[0] is not None
    ys = [m if m is not None else 0.0 for m in series.metric] if scored else [0.0] * len(series.steps)
    left.plot(series.speedup, ys, marker="o", color="tab:blue", label="step (0: unpruned)")
    for i, (x, y) in enumerate(zip(series.speedup, ys, strict=True)):
        left.annotate(str(series.steps[i]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if series.rejected[i]:
            left.plot([x], [y], marker="x", markersize=10, color="tab:red", linestyle="none",
                      label=f"over --max-drop {cfg.max_drop:g}")
    left.axvline(series.target, color="tab:green", linestyle="--", label=f"target {series.target:g}x")
    if series.budget is not None:
        left.axhline(series.budget, color="tab:red", linestyle=":", label=f"budget (--max-drop {cfg.max_drop:g})")
    left.set_xlabel(f"measured speed-up ({cfg.target_runtime}, batch {cfg.target_batch})")
    left.set_ylabel(f"test {metric_name}" if scored else "no metric (not scored)")
    left.legend(fontsize=8)
    timed = [i for i, ms in enumerate(series.ms) if ms is not None]
    right.plot([series.steps[i] for i in timed], [series.base_ms[i] for i in timed], marker=".",
               color="tab:gray", label="unpruned")
    right.plot([series.steps[i] for i in timed], [series.ms[i] for i in timed], marker="o", color="tab:blue",
               label="pruned")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("step")
    right.set_ylabel("median latency, ms")
    right.legend(fontsize=8)
    fig.suptitle(f"--target-speedup {series.target:g}: latency / {metric_name} path")
    return fig


def plot_path(out_dir: Path, cfg: PruneConfig, path: list[dict[str, Any]], metric_name: str,
              higher_is_better: bool = True) -> str:
    """Write out_dir/speedup_path.png; returns its file name (the report lists it)."""
    import matplotlib.pyplot as plt

    from dlopt.core.fileio import atomic_path

    fig = draw(path_series(cfg, path, higher_is_better), cfg, metric_name)
    try:
        with atomic_path(out_dir / PLOT) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return PLOT
