"""The report's optimize section: the study's Pareto plot (latency vs accuracy drop, file size as marker size, every
point labelled), a table of every trial, and the pick with the rule that chose it.

Read from <run>/optimized/optimize_report.json (dlopt.optimize.record.OptimizeReport) when the `optimize` stage
vouches for it (dlopt.core.trust), so `dlopt report RUN` redraws it without optuna or torch.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from dlopt.core.plotting import pyplot, save_png

REPORT = "optimized/optimize_report.json"
MARKERS = {"eager": "o", "onnxruntime": "s", "torchscript": "^", "openvino": "P"}
COLORS = {"fp32": "tab:blue", "fp16": "tab:purple", "bf16": "tab:brown", "int8": "tab:green", "int8+bf16": "tab:olive"}


def section(run: Any) -> dict[str, Any] | None:
    """The optimize report of `run` (a dlopt.core.runs.Run) as plain data, or None without a trusted one."""
    path = run.path / REPORT
    if not path.is_file() or not run.artifact_status(path).trusted:
        return None
    from dlopt.core.fileio import read_json

    return dict(read_json(path, "optimize report"))


def _points(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in data.get("trials", []) if t.get("state") == "complete" and t.get("p50_ms") is not None]


def pareto_plot(data: dict[str, Any], path: Path) -> Path | None:
    """x: latency (ms, log), y: drop in points (lower is better), area: file size; colour = precision, shape =
    runtime; the front joined, the budget and any latency goal drawn, the pick ringed; every point numbered."""
    points = _points(data)
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    biggest = max(t["size_bytes"] or 1 for t in points)
    for t in points:
        c = t["candidate"]
        ax.scatter(t["p50_ms"], t["drop"], s=40 + 400 * (t["size_bytes"] or 0) / biggest, alpha=0.7,
                   color=COLORS.get(c["precision"], "tab:gray"), marker=MARKERS.get(c["runtime"], "X"),
                   edgecolors="black", linewidths=1.4 if t["number"] in data.get("front", []) else 0.4, zorder=3)
    _label_points(ax, points, set(data.get("front", [])))
    front = sorted((t for t in points if t["number"] in data.get("front", [])), key=lambda t: t["p50_ms"])
    if len(front) > 1:
        ax.plot([t["p50_ms"] for t in front], [t["drop"] for t in front], "--", color="gray", zorder=2,
                label="Pareto front")
    goal = data.get("goal", {})
    ax.axhline(goal.get("max_drop", 1.0), color="tab:red", lw=0.8, ls=":", label="accuracy budget")
    if goal.get("target_latency_ms"):
        ax.axvline(goal["target_latency_ms"], color="tab:orange", lw=0.8, ls=":", label="latency goal")
    if data.get("pick"):
        p = data["pick"]
        ax.scatter(p["p50_ms"], p["verdict"]["drop"], s=700, facecolors="none", edgecolors="tab:red", lw=2,
                   zorder=4, label="pick (re-timed)")
    _key(ax, points)
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency at batch {goal.get('batch_size', 1)} (ms, log)")
    ax.set_ylabel("accuracy drop vs fp32 (points; lower is better)")
    ax.set_title(f"{data.get('arch')}: optimize study ({len(points)} finished trials; marker area = file size)")
    ax.legend(fontsize=8, loc="best")
    return save_png(fig, path)


def _by_label(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in points:
        groups.setdefault(t["label"], []).append(t)
    return groups


def _label_points(ax: Any, points: list[dict[str, Any]], front: set[int]) -> None:
    """Every point gets its trial number(s) (a candidate drawn again is named once), staggered upwards so that
    neighbours stay readable; the Pareto front's points also get their candidate's name (the table names all)."""
    groups = sorted(_by_label(points).items(), key=lambda g: g[1][0]["p50_ms"])
    for i, (label, same) in enumerate(groups):
        numbers = ",".join(str(t["number"]) for t in same)
        xy = (same[0]["p50_ms"], same[0]["drop"])
        on_front = any(t["number"] in front for t in same)
        ax.annotate(f"{numbers}: {label}" if on_front else numbers, xy, fontsize=6.5 if on_front else 6,
                    rotation=0 if on_front else 90, xytext=(6, 4) if on_front else (0, 8 + 9 * (i % 4)),
                    textcoords="offset points", ha="left" if on_front else "center", va="bottom", alpha=0.85,
                    arrowprops=None if on_front else {"arrowstyle": "-", "lw": 0.3, "alpha": 0.4})


def _key(ax: Any, points: list[dict[str, Any]]) -> None:
    """Legend entries for the colours (precision) and shapes (runtime) the plot uses."""
    for p in sorted({t["candidate"]["precision"] for t in points}):
        ax.scatter([], [], color=COLORS.get(p, "tab:gray"), marker="o", label=p)
    for r in sorted({t["candidate"]["runtime"] for t in points}):
        ax.scatter([], [], color="white", edgecolors="black", marker=MARKERS.get(r, "X"), label=r)


def _cell(value: Any, fmt: str = "{:.3g}") -> str:
    return "–" if value is None else fmt.format(value)


def vs_eager(baseline: dict[str, Any], row: dict[str, Any], short: bool = False, missing: str = "–") -> str:
    """A row's speed-up against fp32 eager, or why there is none (the report's baseline says: "n/a (an ONNX file: no
    PyTorch model)"; `short`: just "n/a")."""
    if row.get("speedup_vs_eager") is not None:
        return f"{row['speedup_vs_eager']:.2f}x"
    why = baseline.get("eager")
    return ("n/a" if short else why) if why else missing


def trial_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["trial", "state", "candidate", "p50 ms", "vs fp32 eager", "vs fp32 same runtime", "drop (pts)", "MB",
            "within goal", "note"]
    picked = (data.get("pick") or {}).get("trial")
    body = []
    for t in data.get("trials", []):
        note = t.get("failed_because") or ("pick" if t["number"] == picked else
                                           "Pareto front" if t["number"] in data.get("front", []) else "")
        feasible = {True: "yes", False: "no", None: "–"}[t.get("feasible")]
        body.append([str(t["number"]), t["state"], t["label"], _cell(t.get("p50_ms")),
                     vs_eager(data.get("baseline") or {}, t, short=True) if t["state"] == "complete" else "–",
                     _cell(t.get("speedup_vs_runtime_fp32"), "{:.2f}x"),
                     _cell(t.get("drop"), "{:.2f}"), _cell(None if t.get("size_bytes") is None
                                                           else t["size_bytes"] / 1e6), feasible, note])
    return head, body


def pick_line(data: dict[str, Any]) -> str:
    p = data.get("pick")
    if not p:
        return f"Goal not reached: {data.get('reason')}"
    ref = (p.get("runtime_reference") or "").removeprefix("fp32 ")
    vs_rt = f", {p['speedup_vs_runtime_fp32']:.2f}x vs the fp32 {ref} file" if p.get("speedup_vs_runtime_fp32") else ""
    eager = vs_eager(data.get("baseline") or {}, p)
    eager = f"{eager} vs fp32 eager" if p.get("speedup_vs_eager") is not None else f"vs fp32 eager: {eager}"
    return (f"Pick: {p['label']} ({', '.join(data.get('shipped', []))}): {p['p50_ms']:.3g} ms, "
            f"{eager}{vs_rt}, drop {p['verdict']['drop']:.2f} points. Why: {data.get('reason')}.")


def _summary(data: dict[str, Any]) -> str:
    s = data.get("study", {})
    return (f"Study {s.get('name')} ({s.get('storage')}): {s.get('complete')} finished, {s.get('fail')} failed of "
            f"{s.get('trials')} trials by {len(s.get('workers', []))} worker(s); accuracy judged by {data.get('basis')}.")


def markdown_lines(data: dict[str, Any] | None, image: Path | None) -> list[str]:
    if not data:
        return []
    head, body = trial_table(data)
    out = ["## Optimize", "", f"**{pick_line(data)}**", "", _summary(data), ""]
    out += [f"![optimize study]({image.name})", ""] if image else []
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *["| " + " | ".join(r) + " |" for r in body]]
    return [*out, ""]


def html_parts(data: dict[str, Any] | None, image_tag: str | None, table: Any) -> list[str]:
    """`table(head, body)` is the page's own table renderer (dlopt.report.render)."""
    if not data:
        return []
    e = html.escape
    head, body = trial_table(data)
    return ["<h2>Optimize</h2>", f"<div class=ship><b>{e(pick_line(data))}</b></div>",
            f"<p class=muted>{e(_summary(data))}</p>", *([image_tag] if image_tag else []), table(head, body)]
