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
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in rows:
        ax.scatter(r["latency"][batch]["p50"], r["metric"], s=80 if r["pareto"] else 40,
                   color=COLORS.get(r["variant"], "tab:gray"), marker=MARKERS.get(r["runtime"], "x"),
                   edgecolors="black" if r["pareto"] else "none", zorder=3)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["latency"][batch]["p50"])
    for i, r in enumerate(front):  # only the front is named on the plot (the rest: colour = variant, shape = runtime)
        ax.annotate(r["label"], (r["latency"][batch]["p50"], r["metric"]), fontsize=8, xytext=(6, -12 if i % 2 else 6),
                    textcoords="offset points")
    ax.plot([r["latency"][batch]["p50"] for r in front], [r["metric"] for r in front], "--", color="black",
            linewidth=1, zorder=2)
    from matplotlib.lines import Line2D

    seen_v = [v for v in COLORS if any(r["variant"] == v for r in rows)]
    seen_r = [m for m in MARKERS if any(r["runtime"] == m for r in rows)]
    handles = [Line2D([], [], linestyle="", marker="o", color=COLORS[v], label=v) for v in seen_v]
    handles += [Line2D([], [], linestyle="", marker=MARKERS[m], color="gray", label=m) for m in seen_r]
    handles.append(Line2D([], [], linestyle="--", color="black", label="Pareto front"))
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"p50 latency at batch {batch} (ms, log scale; left is faster)")
    better = "higher" if data.get("higher_is_better", True) else "lower"
    ax.set_ylabel(f"test {data.get('metric')} ({better} is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
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
