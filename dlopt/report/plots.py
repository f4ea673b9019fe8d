"""The report's pictures: latency versus metric with the Pareto front, and the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.train.plots import _pyplot, _save, learning_curve

COLORS = {"fp32": "tab:blue", "pruned": "tab:orange", "int8": "tab:green", "pruned-int8": "tab:red"}
MARKERS = {"eager": "o", "onnxruntime": "s", "torchscript": "^", "pt2": "D"}


def pareto_plot(data: dict[str, Any], path: Path) -> Path | None:
    """x: p50 latency at the smallest batch (log), y: the metric; the front joined by a dashed line."""
    batch = data.get("pareto_batch")
    rows = [r for r in data["rows"] if r["metric"] is not None and batch is not None and batch in r["latency"]]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for r in rows:
        ax.scatter(r["latency"][batch]["p50"], r["metric"], s=70 if r["pareto"] else 35,
                   color=COLORS.get(r["variant"], "tab:gray"), marker=MARKERS.get(r["runtime"], "x"),
                   edgecolors="black" if r["pareto"] else "none", zorder=3)
        ax.annotate(r["label"], (r["latency"][batch]["p50"], r["metric"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["latency"][batch]["p50"])
    ax.plot([r["latency"][batch]["p50"] for r in front], [r["metric"] for r in front], "--", color="black",
            linewidth=1, label="Pareto front", zorder=2)
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"p50 latency at batch {batch} (ms, log scale; left is faster)")
    better = "higher" if data.get("higher_is_better", True) else "lower"
    ax.set_ylabel(f"test {data.get('metric')} ({better} is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{data.get('arch')}: every variant and runtime")
    return _save(fig, path)


def training_plot(data: dict[str, Any], run_dir: Path, path: Path) -> Path | None:
    """The training stage's learning curve (redrawn from metrics.jsonl when the PNG is missing)."""
    existing = run_dir / "learning_curve.png"
    if existing.is_file():
        return existing
    if not data.get("history"):
        return None
    return learning_curve(data["history"], str(data.get("metric")), path, f"{data.get('arch')}: training")
