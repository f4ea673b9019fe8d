"""The report's per-layer comparisons: each `dlopt diagnose` result the run's stage `diagnose` vouches for
(<run>/diagnose/<file>.json and its plot of relative error and SQNR per layer), with the first layer past the
tolerance and the layers that part most from eager."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError
from dlopt.core.fileio import read_json, sha256_file
from dlopt.report.rows import Trust

FOLDER = "diagnose"  # dlopt.verify.diagnose.STAGE: the stage and its folder in the run
WORST = 8  # rows of the worst-layers table


def _read(trust: Trust, rel: str) -> dict[str, Any] | None:
    try:
        data = read_json(trust.run.path / rel, "diagnose report")
    except InputFileError as exc:
        trust.skipped.append({"path": rel, "reason": str(exc)})
        return None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or \
            not isinstance(data.get("tolerance"), int | float):
        trust.skipped.append({"path": rel, "reason": "not a dlopt diagnose report (no rows or tolerance)"})
        return None
    return data


def _stale(trust: Trust, data: dict[str, Any]) -> bool:
    """The diagnosed file was replaced since (a new export or quantize): its comparison no longer holds."""
    file = trust.run.path / str(data.get("file", ""))
    return bool(data.get("sha256")) and file.is_file() and sha256_file(file) != data["sha256"]


def section(trust: Trust) -> list[dict[str, Any]]:
    out = []
    folder = trust.run.path / FOLDER
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rel = str(path.relative_to(trust.run.path))
        if not trust.ok(rel) or (data := _read(trust, rel)) is None:
            continue
        rows = [dict(r, index=i) for i, r in enumerate(data["rows"]) if isinstance(r, dict)]
        plot = str(data.get("plot") or "")
        out.append({"file": str(data.get("file")), "report": rel, "kind": data.get("kind"),
                    "tolerance": data["tolerance"], "mapping": data.get("mapping"), "samples": data.get("samples"),
                    "inputs": data.get("inputs"), "layers": len(rows), "first": data.get("first_flagged"),
                    "worst": sorted(rows, key=lambda r: -float(r.get("rel_error") or 0))[:WORST],
                    "outputs": data.get("outputs") or [], "stale": _stale(trust, data),
                    "plot": plot if plot and (trust.run.path / plot).is_file() and trust.ok(plot) else None})
    return out


def _num(x: Any, fmt: str = "{:.3g}") -> str:
    return "–" if x is None else fmt.format(x)


def table(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The worst layers by relative error, most first; # is the layer's place in model order."""
    first = (entry["first"] or {}).get("index")
    head = ["#", "layer", "op", "rel error", "SQNR dB", "max abs", "", "folded in"]
    body = [[str(r["index"]), str(r.get("layer") or "(model)"), str(r.get("op", "")) + (" q" if r.get("quantized")
             else ""), _num(r.get("rel_error")), _num(r.get("sqnr_db"), "{:.1f}"), _num(r.get("max_abs")),
             "first past" if r["index"] == first else "over" if r.get("flagged") else "",
             ", ".join(m for m in r.get("modules") or [] if m != r.get("layer"))] for r in entry["worst"]]
    return head, body


def verdict(entry: dict[str, Any]) -> str:
    tol, first = entry["tolerance"], entry["first"]
    said = (f"first layer past the tolerance {tol:g}: {first.get('layer') or '(model)'} (#{first.get('index')}, "
            f"relative error {_num(first.get('rel_error'))})" if first else
            f"no layer past the tolerance {tol:g}" if entry["layers"] else
            "no inner tensor could be mapped to a layer: only the outputs were compared")
    outs = ", ".join(f"output {o.get('output')}: {_num(o.get('rel_error'))}" for o in entry["outputs"])
    how = f"{entry['layers']} layers, {entry['samples']} inputs from {entry['inputs']}; names from {entry['mapping']}"
    stale = "; the file changed since: rerun dlopt diagnose" if entry["stale"] else ""
    return f"{said}. Relative error of the outputs: {outs or '–'}. {how}{stale}."


def _title(entry: dict[str, Any]) -> str:
    return f"{entry['file']} ({entry['kind']}) against eager"


def markdown_lines(entries: list[dict[str, Any]]) -> list[str]:
    if not entries:
        return []
    out = ["## Per-layer comparison", ""]
    for entry in entries:
        head, body = table(entry)
        out += [f"### {_title(entry)}", "", verdict(entry), ""]
        out += [f"![per-layer comparison of {entry['file']}]({entry['plot']})", ""] if entry["plot"] else []
        out += [f"Worst {len(body)} layers:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in body] + [""]
    return out


def images(entries: list[dict[str, Any]], run_path: Path) -> dict[str, Path]:
    """The plots to embed, keyed as html_parts looks them up."""
    return {f"layers:{x['report']}": run_path / x["plot"] for x in entries if x["plot"]}


def html_parts(entries: list[dict[str, Any]], pictures: dict[str, Path], image: Any, render_table: Any) -> list[str]:
    """`image(path, alt)` and `render_table(head, body)` are the page's own (dlopt.report.render)."""
    if not entries:
        return []
    e, out = html.escape, ["<h2>Per-layer comparison</h2>"]
    for entry in entries:
        head, body = table(entry)
        out += [f"<h3>{e(_title(entry))}</h3>", f"<p class=muted>{e(verdict(entry))}</p>"]
        if (picture := pictures.get(f"layers:{entry['report']}")) is not None:
            out.append(image(picture, f"per-layer comparison of {entry['file']}"))
        out += [f"<p class=muted>Worst {len(body)} layers (# = place in model order):</p>", render_table(head, body)]
    return out
