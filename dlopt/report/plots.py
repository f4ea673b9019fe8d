"""The report's pictures: latency versus metric with the Pareto front, and the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.core.plotting import learning_curve, pyplot, save_png

COLORS = {"fp32": "tab:blue", "pruned": "tab:orange", "int8": "tab:green", "pruned-int8": "tab:red"}
MARKERS = {"eager": "o", "onnxruntime": "s", "torchscript": "^", "pt2": "D", "openvino": "P"}
# Later variants are drawn smaller and on top, so a point that lands on another (int8 as accurate and as fast as
# fp32) shows as a marker inside a marker instead of hiding it.
SIZES = {"fp32": 150, "pruned": 110, "int8": 75, "pruned-int8": 45}


def marker_style(row: dict[str, Any]) -> dict[str, Any]:
    """Colour = variant, shape = runtime, size and drawing order = variant; translucent, with an outline."""
    order = list(SIZES).index(row["variant"]) if row["variant"] in SIZES else len(SIZES)
    return {"color": COLORS.get(row["variant"], "tab:gray"), "marker": MARKERS.get(row["runtime"].split()[0], "X"),
            "s": SIZES.get(row["variant"], 40), "zorder": 3 + order, "alpha": 0.8,
            "edgecolors": "black", "linewidths": 1.5 if row["pareto"] else 0.5,
            **({"facecolors": "none", "edgecolors": COLORS.get(row["variant"], "tab:gray")}  # hollow: noisy timing
               if row.get("noisy") else {})}


def pareto_plot(data: dict[str, Any], path: Path) -> Path | None:
    """x: p50 latency at the smallest batch (log), y: the metric; the front joined by a dashed line."""
    batch = data.get("pareto_batch")
    rows = [r for r in data["rows"] if r["metric"] is not None and batch is not None and batch in r["latency"]]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in rows:
        ax.scatter(r["latency"][batch]["p50"], r["metric"], **marker_style(r))
    limit = (data.get("ship") or {}).get("budget")
    if limit:  # the accuracy budget: rows beyond this line are not shipped
        ax.axhline(limit["floor"], color="tab:red", linestyle=":", linewidth=1.2, zorder=1)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["latency"][batch]["p50"])
    for i, r in enumerate(front):  # only the front is named on the plot (the rest: colour = variant, shape = runtime)
        ax.annotate(r["label"], (r["latency"][batch]["p50"], r["metric"]), fontsize=8, xytext=(6, -12 if i % 2 else 6),
                    textcoords="offset points")
    ax.plot([r["latency"][batch]["p50"] for r in front], [r["metric"] for r in front], "--", color="black",
            linewidth=1, zorder=2)
    from matplotlib.lines import Line2D

    seen_v = [v for v in COLORS if any(r["variant"] == v for r in rows)]
    seen_r = [m for m in MARKERS if any(r["runtime"].split()[0] == m for r in rows)]
    handles = [Line2D([], [], linestyle="", marker="o", color=COLORS[v], label=v) for v in seen_v]
    handles += [Line2D([], [], linestyle="", marker=MARKERS[m], color="gray", label=m) for m in seen_r]
    handles.append(Line2D([], [], linestyle="--", color="black", label="Pareto front"))
    if any(r.get("noisy") for r in rows):
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="none", color="gray",
                              label="hollow: timing too noisy"))
    if limit:
        handles.append(Line2D([], [], linestyle=":", color="tab:red", label=f"accuracy budget ({limit['unit']})"))
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
    return save_png(fig, path)


def training_plot(data: dict[str, Any], run_dir: Path, path: Path) -> Path | None:
    """The training stage's learning curve (redrawn from metrics.jsonl when the PNG is missing)."""
    existing = run_dir / "learning_curve.png"
    if existing.is_file():
        return existing
    if not data.get("history"):
        return None
    return learning_curve(data["history"], str(data.get("metric")), path, f"{data.get('arch')}: training")
