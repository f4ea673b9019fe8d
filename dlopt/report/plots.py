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


def _drop(data: dict[str, Any], metric: float, base: float) -> float:
    """Points lost against fp32 eager (percentage points for fractions, % relative otherwise; up = worse)."""
    from dlopt.report.decide import drop_value

    return drop_value(data, metric, base)[0]


def _y_range(drops: list[float], limit: float | None) -> tuple[float, float]:
    """From a little below the best to past the worst and the budget line: points that tie stay readable."""
    lo, hi = min([0.0, *drops]), max([0.0, *drops, *([limit] if limit is not None else [])])
    pad = max(0.25, 0.12 * (hi - lo))
    return lo - pad, hi + pad


def pareto_plot(data: dict[str, Any], path: Path) -> Path | None:
    """x: p50 latency at the smallest batch (log), y: the drop against fp32 eager in points (lower is better);
    every point named, the front joined by a dashed line, the budget drawn."""
    batch = data.get("pareto_batch")
    rows = [r for r in data["rows"] if r["metric"] is not None and batch is not None and batch in r["latency"]]
    base = next((r["metric"] for r in rows if (r["variant"], r["runtime"]) == ("fp32", "eager")), None)
    if not rows or base is None:
        return None
    from dlopt.report.decide import drop_value

    unit = drop_value(data, base, base)[1]
    drops = {r["label"]: _drop(data, r["metric"], base) for r in rows}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in rows:
        ax.scatter(r["latency"][batch]["p50"], drops[r["label"]], **marker_style(r))
    limit = (data.get("ship") or {}).get("budget")
    budget_drop = _drop(data, limit["floor"], base) if limit else None
    if limit:  # the accuracy budget: rows above this line are not shipped
        ax.axhline(budget_drop, color="tab:red", linestyle=":", linewidth=1.2, zorder=1)
    ordered = sorted(rows, key=lambda r: (r["latency"][batch]["p50"], drops[r["label"]]))
    for i, r in enumerate(ordered):  # every point named; neighbours alternate above and below
        ax.annotate(r["label"], (r["latency"][batch]["p50"], drops[r["label"]]), fontsize=7.5,
                    xytext=(6, 7 if i % 2 == 0 else -12), textcoords="offset points")
    front = [r for r in ordered if r["pareto"]]
    ax.plot([r["latency"][batch]["p50"] for r in front], [drops[r["label"]] for r in front], "--", color="black",
            linewidth=1, zorder=2)
    ax.set_ylim(*_y_range(list(drops.values()), budget_drop))
    ax.legend(handles=_handles(rows, limit), loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"p50 latency at batch {batch} (ms, log scale; left is faster)")
    ax.set_ylabel(f"test {data.get('metric')} drop vs fp32 eager ({unit}; lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{data.get('arch')}: every variant and runtime")
    return save_png(fig, path)


def _handles(rows: list[dict[str, Any]], limit: dict[str, Any] | None) -> list[Any]:
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
    return handles


def training_plot(data: dict[str, Any], run_dir: Path, path: Path) -> Path | None:
    """The training stage's learning curve (redrawn from metrics.jsonl when the PNG is missing)."""
    existing = run_dir / "learning_curve.png"
    if existing.is_file():
        return existing
    if not data.get("history"):
        return None
    return learning_curve(data["history"], str(data.get("metric")), path, f"{data.get('arch')}: training")
