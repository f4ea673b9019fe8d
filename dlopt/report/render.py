"""report.md and a self-contained report.html (inline CSS, images as data: URIs; no network to view it)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from dlopt.report.decide import banner


def _num(value: float | None, fmt: str = "{:.4g}") -> str:
    return "–" if value is None else fmt.format(value)


def _bytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _count(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def has_metric(data: dict[str, Any]) -> bool:
    return data.get("metric") not in (None, "", "none")


def table_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    batches = data["batches"]
    stagewise = any(r["metric_source"] not in ("", "evaluation.json") for r in data["rows"])
    head = ["variant", "runtime", f"test {data.get('metric')}" if has_metric(data) else "metric",
            *(["metric from"] if stagewise else []), "size", "params", "MACs"]
    head += [h for b in batches for h in (f"p50 b{b} (ms)", f"p90 b{b} (ms)", f"speed-up b{b}")]
    head += [f"IQR b{data['pareto_batch']}", "parity", "Pareto"]
    body = []
    for r in data["rows"]:
        metric = _num(r["metric"]) if has_metric(data) else "no metric"
        cells = [r["variant"], r["runtime"], metric, *([r["metric_source"] or "–"] if stagewise else []),
                 _bytes(r["size_bytes"]), _count(r["parameters"]), _count(r["macs"])]
        for b in batches:
            lat = r["latency"].get(b)
            cells += [_num(lat["p50"] if lat else None, "{:.3g}"), _num(lat["p90"] if lat else None, "{:.3g}"),
                      _num(r["speedup"].get(b), "{:.2f}x")]
        iqr = r["iqr"].get(data["pareto_batch"])
        cells += [_num(None if iqr is None else 100 * iqr, "{:.0f}%") + (" noisy" if r["noisy"] else ""),
                  r["parity"] or "–", "★" if r["pareto"] else ""]
        body.append(cells)
    return head, body


def _steps(data: dict[str, Any]) -> list[list[str]]:
    return [[s["step"], str(s["status"]), _num(s["seconds"], "{:.1f}"), str(s["note"])] for s in data["steps"]]


def measured_lines(data: dict[str, Any]) -> list[str]:
    """When each row was timed, and with how many threads: bench.json keeps the rows of earlier benches."""
    groups: dict[tuple[str, Any], list[str]] = {}
    for r in data["rows"]:
        for batch, when in (r.get("measured") or {}).items():
            groups.setdefault((str(when), (r.get("threads") or {}).get(batch)), []).append(f"{r['label']} b{batch}")
    lines = [f"measured {when or 'at an unrecorded time'}" + (f" ({t} thread{'s' if t != 1 else ''})" if t else "")
             + f": {', '.join(labels)}" for (when, t), labels in sorted(groups.items(), key=lambda g: g[0][0])]
    if len({t for _, t in groups}) > 1:
        lines.append("rows timed with different thread counts: compare speed-ups only between rows of one bench")
    return lines


def model_line(data: dict[str, Any]) -> str:
    """What the model's build options say about its outputs: a Hugging Face model's class labels (id2label)."""
    config = (data.get("model") or {}).get("config") or {}
    labels = config.get("labels") if isinstance(config, dict) else None
    return f"Labels (id2label): {labels}" if isinstance(labels, str) and labels else ""


def _load(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if isinstance(values, list) else "–"


def _aside(data: dict[str, Any]) -> list[str]:
    """Rows the ship pick left out and files the report did not use, each with the reason."""
    out = [f"not shipped: {x['label']}: {x['reason']}" for x in data["ship"]["excluded"]]
    return out + [f"skipped {s['path']}: {s['reason']}" for s in data.get("skipped", [])]


def _env_lines(data: dict[str, Any]) -> list[str]:
    env, bench = data.get("environment", {}), data.get("bench", {})
    cpu = env.get("cpu", {})
    pkgs = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    load = bench.get("loadavg") or {}
    return [f"Python {env.get('python')} on {env.get('platform')}",
            f"CPU {cpu.get('model')} ({cpu.get('cores')} cores, flags {', '.join(cpu.get('flags', []))}); "
            f"CUDA: {env.get('cuda') or 'none'}", pkgs,
            f"bench: {bench.get('threads')} threads on {bench.get('device')}, load average "
            f"{_load(load.get('start'))} -> {_load(load.get('end'))}; git {env.get('git_commit')}; "
            f"dlopt {env.get('dlopt')}"]


def markdown(data: dict[str, Any], images: dict[str, Path]) -> str:
    ship = data["ship"]
    head, body = table_rows(data)
    out = [f"# dlopt report: {data.get('arch')}", "", f"Run `{data['run']}`, created {data.get('created')}.", ""]
    out += [f"{model_line(data)}.", ""] if model_line(data) else []
    out += [f"**Ship:** {banner(ship)}." + (f" Rule: {ship['rule']}." if ship["pick"] else ""), ""]
    out += [*[f"- {line}" for line in _aside(data)], ""] if _aside(data) else []
    out += ["## Variants", "", *(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] if body else [NO_ROWS])]
    out += ["| " + " | ".join(cells) + " |" for cells in body]
    notes = [n for n in (data.get("evaluation_note"),) if n]
    out += ["", *[f"Note: {n}" for n in notes], "Speed-up is fp32 eager p50 / this row's p50 at the same batch. "
            f"Parity: {PARITY} ★ = on the Pareto front (latency at the smallest batch vs metric).", ""]
    out += [*[f"- {line}" for line in measured_lines(data)], ""] if measured_lines(data) else []
    for title, key in (("Latency versus metric", "pareto"), ("Training", "training")):
        if key in images:
            out += [f"## {title}", "", f"![{title}]({images[key].name})", ""]
    from dlopt.report.optimize import markdown_lines  # the `dlopt optimize` section (empty without a study)

    out += markdown_lines(data.get("optimize"), images.get("optimize"))
    from dlopt.report import candidates, layer_errors

    out += candidates.markdown_lines(data.get("candidates") or [])
    out += layer_errors.markdown_lines(data.get("layers") or [])
    out += ["## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    out += ["| " + " | ".join(s) + " |" for s in _steps(data)]
    out += ["", "## Environment", "", *[f"- {line}" for line in _env_lines(data)], ""]
    return "\n".join(out)


NO_ROWS = "No variant was timed or evaluated yet: `dlopt bench RUN` times every file of the run."
PARITY = ("exported files against the model they came from, elementwise at the spec's tolerance (largest absolute "
          "error in brackets); int8 copies by top-1 agreement with fp32 on held-out data.")
CSS = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#1d2330;padding:0 1em;overflow-wrap:anywhere}h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;
border-bottom:1px solid #dde;padding-bottom:.2em}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12.5px}th,td{border:1px solid #dde;
padding:4px 7px;text-align:right;white-space:nowrap}th{background:#f2f4f8}td:nth-child(-n+2){text-align:left}
td.text{white-space:normal;text-align:left;min-width:14em;max-width:36em}
tr.pareto td{background:#f4fbf1}.ship{background:#eef6ff;border-left:4px solid #2c6fd1;padding:.6em 1em;margin:1em 0}
.muted{color:#667;font-size:12.5px}img{max-width:100%;border:1px solid #eee}code{background:#f2f4f8;padding:0 3px}"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_table(head: list[str], body: list[list[str]], pareto_col: int | None = None) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = []
    for cells in body:
        cls = ' class="pareto"' if pareto_col is not None and cells[pareto_col] else ""
        trs.append(f"<tr{cls}>" + "".join(f"<td{' class=text' if len(c) > 40 else ''}>{html.escape(c)}</td>"
                                          for c in cells) + "</tr>")  # long text wraps inside its cell
    return f"<div class=scroll><table><thead><tr>{th}</tr></thead><tbody>{''.join(trs)}</tbody></table></div>"


def html_page(data: dict[str, Any], images: dict[str, Path]) -> str:
    head, body = table_rows(data)
    e = html.escape
    rule = data["ship"]["rule"]
    ship = (f"<b>Ship: {e(banner(data['ship']))}</b><br><span class=muted>Rule: {e(rule)}</span>"
            if data["ship"]["pick"] else e(rule))
    aside = "".join(f"<li>{e(line)}</li>" for line in _aside(data))
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>dlopt report: {e(str(data.get('arch')))}</title>",
             f"<style>{CSS}</style></head><body><h1>dlopt report: {e(str(data.get('arch')))}</h1>",
             f"<div class=muted>run <code>{e(data['run'])}</code>, created {e(str(data.get('created')))}</div>",
             f"<div class=muted>{e(model_line(data))}</div>" if model_line(data) else "",
             f"<div class=ship>{ship}</div>", f"<ul class=muted>{aside}</ul>" if aside else "",
             "<h2>Variants</h2>", _html_table(head, body, len(head) - 1) if body else f"<p>{e(NO_ROWS)}</p>",
             "<p class=muted>Speed-up: fp32 eager p50 / this row's p50 at the same batch. "
             f"Parity: {e(PARITY)} ★ / green rows: the Pareto front (latency at the smallest batch vs metric).</p>"]
    if data.get("evaluation_note"):
        parts.append(f"<p class=muted>Note: {e(data['evaluation_note'])}</p>")
    if measured_lines(data):
        parts.append("<ul class=muted>" + "".join(f"<li>{e(x)}</li>" for x in measured_lines(data)) + "</ul>")
    for title, key in (("Latency versus metric", "pareto"), ("Training", "training")):
        if key in images:
            parts += [f"<h2>{title}</h2>", _img(images[key], title)]
    from dlopt.report.optimize import html_parts  # the `dlopt optimize` section (empty without a study)

    parts += html_parts(data.get("optimize"), _img(images["optimize"], "optimize study") if "optimize" in images
                        else None, _html_table)
    from dlopt.report import candidates, layer_errors

    parts += candidates.html_parts(data.get("candidates") or [], _html_table)
    parts += layer_errors.html_parts(data.get("layers") or [], images, _img, _html_table)
    parts += ["<h2>Steps</h2>", _html_table(["step", "status", "seconds", "note"], _steps(data)),
              "<h2>Environment</h2><ul>", *[f"<li>{e(line)}</li>" for line in _env_lines(data)], "</ul></body></html>"]
    return "\n".join(parts)
