"""The report's quantize candidates: every file a quantize stage built and measured (recipe, drop, latency,
speed-ups, passed, chosen) and the fp32 references it was timed against, read from <stage>/quantize_report.json.

A run made from an ONNX file (`dlopt quantize model.onnx`) has no PyTorch model: its speed-ups are against the fp32
file on its fastest runtime, and the section says there is no eager baseline.
"""

from __future__ import annotations

import html
from typing import Any

from dlopt.core.results import QuantizeReport
from dlopt.report.rows import Trust

REPORT = "quantize_report.json"  # what every quantize stage writes in its folder (dlopt.quantize.stage.REPORT)
EAGER = "eager fp32"  # the reference label of the PyTorch model timed eagerly
NO_EAGER = "an ONNX file: no PyTorch model, so no eager baseline"


def section(trust: Trust, stages: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per quantize stage of the run whose report lists its candidates, in stage-name order."""
    out = []
    for name in sorted(stages):
        rel = f"{name}/{REPORT}"
        q = trust.result(QuantizeReport, rel) if (trust.run.path / rel).is_file() else None
        auto = (q.auto or {}) if q is not None else {}
        if not isinstance(auto.get("candidates"), list) or not auto["candidates"]:
            continue
        built = {str(c.get("recipe")) for c in auto["candidates"] if isinstance(c, dict)}
        refs = auto.get("reference_latency_ms_b1") or {k: v for k, v in q.latency_ms_b1.items() if k not in built}
        out.append({"stage": name, "report": rel, "why": auto.get("why") or "",
                    "drop_column": auto.get("drop_column") or "val drop", "fastest_fp32": q.fp32_reference,
                    "candidates": [c for c in auto["candidates"] if isinstance(c, dict)], "references": refs,
                    "eager": EAGER in refs, "note": "" if EAGER in refs else NO_EAGER})
    return out


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _yes(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, "–")


def table(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    eager = entry["eager"]
    head = ["recipe", entry["drop_column"], "ms (b1)", "vs fp32 file", *(["vs eager"] if eager else []), "size",
            "passed", "chosen"]
    body = []
    for c in entry["candidates"]:
        if "failed" in c:
            body.append([str(c["recipe"]), *["–"] * (len(head) - 3), "failed: " + str(c["failed"])[:80], ""])
            continue
        size = c.get("bytes")
        body.append([str(c["recipe"]), _cell(c.get("val_drop"), "{:.3g}"), _cell(c.get("latency_ms_b1"), "{:.3g}"),
                     _cell(c.get("speedup_vs_fp32"), "{:.2f}x"),
                     *([_cell(c.get("speedup_vs_eager"), "{:.2f}x")] if eager else []),
                     _cell(None if size is None else size / 1e3, "{:.1f} KB"), _yes(c.get("passed")),
                     "★" if c.get("chosen") else ""])
    return head, body


def references(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The fp32 files (and the eager model, where there is one) timed beside the candidates."""
    rows = [[label, _cell(ms, "{:.3g}"), "fastest fp32: the speed-ups are against it"
             if label == entry["fastest_fp32"] else ""] for label, ms in entry["references"].items()]
    return ["fp32 reference", "ms (b1)", ""], rows


def _intro(entry: dict[str, Any]) -> str:
    lead = f"Stage {entry['stage']} ({entry['report']}): every candidate built, at batch 1 on one thread"
    return f"{lead}; {entry['note']}." if entry["note"] else f"{lead}."


def markdown_lines(entries: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for entry in entries:
        out += [f"## Quantize candidates: {entry['stage']}", "", _intro(entry), ""]
        for head, body in (table(entry), references(entry)):
            out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(r) + " |" for r in body] + [""]
        out += [f"Chosen: {entry['why']}", ""] if entry["why"] else []
    return out


def html_parts(entries: list[dict[str, Any]], render_table: Any) -> list[str]:
    """`render_table(head, body)` is the page's own table renderer (dlopt.report.render)."""
    e, out = html.escape, []
    for entry in entries:
        out += [f"<h2>Quantize candidates: {e(entry['stage'])}</h2>", f"<p class=muted>{e(_intro(entry))}</p>",
                render_table(*table(entry)), render_table(*references(entry))]
        out += [f"<p class=muted>Chosen: {e(entry['why'])}</p>"] if entry["why"] else []
    return out
