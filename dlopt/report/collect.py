"""Gather a run's numbers into one table: every variant x runtime with metric, size, latency and parity.

Reads only files in the run (manifest, evaluation.json, bench.json, verify and stage reports), so
`dlopt report RUN_DIR` regenerates the same page without rerunning anything, and without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.runs import Run

RUNTIME_OF_SUFFIX = {".onnx": "onnxruntime", ".ts": "torchscript", ".pt2": "pt2", ".json": "eager"}
VARIANT_ORDER = ("fp32", "pruned", "int8", "pruned-int8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


@dataclass
class Row:
    variant: str
    runtime: str
    path: str  # relative to the run ("" for live runtimes such as torch.compile)
    metric: float | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    macs: int | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)  # batch -> {p50, p90}
    speedup: dict[int, float] = field(default_factory=dict)  # batch -> fp32 eager p50 / this p50
    parity: str = ""  # "pass (max err 2e-6)", "fail ...", "top-1 99.4%", ""
    pareto: bool = False

    @property
    def label(self) -> str:
        return f"{self.variant} / {self.runtime}"


def _rel(run: Run, path: str | None, recorded_root: str | None = None) -> str:
    """A path relative to the run; files recorded under the run's old location (a moved or copied run) too."""
    if not path:
        return ""
    p = Path(path)
    roots = [run.path, *([Path(recorded_root)] if recorded_root else [])]
    # Paths may be recorded absolute or relative to the directory dlopt ran in (`--out artifacts`): try both forms.
    for candidate in (p, p.resolve()) if not p.is_absolute() else (p,):
        for root in roots:
            for r in (root, root.resolve()):
                if candidate.is_absolute() == r.is_absolute() and candidate.is_relative_to(r):
                    return str(candidate.relative_to(r))
    return str(p)


def variant_of_path(rel: str) -> str:
    parts = Path(rel).parts
    return parts[0] if len(parts) > 1 else "fp32"


def _bench_key(run: Run, row: dict[str, Any], recorded_root: str | None) -> tuple[str, str, str]:
    """(variant, runtime, relative path) of a bench row."""
    name = str(row.get("variant", ""))
    if row.get("artifact"):
        rel = _rel(run, row["artifact"], recorded_root)
        return variant_of_path(rel), RUNTIME_OF_SUFFIX.get(Path(rel).suffix, str(row.get("backend"))), rel
    if name.startswith("eager:"):  # another checkpoint record in the run
        rel = name.removeprefix("eager:") + ".json"
        return variant_of_path(rel), "eager", rel
    if name == "eager":
        return "fp32", "eager", "model.json"
    return "fp32", f"{name} (live)", ""


def _rows_from_bench(run: Run, bench: dict[str, Any], rows: dict[tuple[str, str], Row]) -> None:
    for b in bench.get("rows", []):
        if b.get("status") != "ok" or not b.get("stats"):
            continue
        variant, runtime, rel = _bench_key(run, b, bench.get("run"))
        row = rows.setdefault((variant, runtime), Row(variant, runtime, rel))
        row.latency[int(b["batch_size"])] = {"p50": b["stats"]["median_ms"], "p90": b["stats"]["p90_ms"]}
        if b.get("model_bytes") and row.size_bytes is None:
            row.size_bytes = int(b["model_bytes"])


def _rows_from_evaluation(evaluation: dict[str, Any], rows: dict[tuple[str, str], Row]) -> None:
    metric = evaluation.get("metric")
    for e in evaluation.get("rows", []):
        row = rows.setdefault((e["variant"], e["runtime"]), Row(e["variant"], e["runtime"], e["path"]))
        if e.get("metrics") and metric in e["metrics"]:
            row.metric = float(e["metrics"][metric])


def source_variant(variant: str) -> str:
    """The checkpoint an int8 copy was made from: int8 <- fp32, pruned-int8 <- pruned."""
    if variant == "int8":
        return "fp32"
    return variant.removesuffix("-int8") if variant.endswith("-int8") else variant


def _fill(run: Run, rows: dict[tuple[str, str], Row], evaluation: dict[str, Any]) -> None:
    sizes = evaluation.get("sizes", {})
    for row in rows.values():
        size = sizes.get(row.variant) or sizes.get(source_variant(row.variant)) or {}
        row.parameters, row.macs = size.get("parameters"), size.get("macs")
        if row.path and (run.path / row.path).is_file() and row.runtime != "eager":
            row.size_bytes = (run.path / row.path).stat().st_size
        elif row.path.endswith(".json") and (run.path / row.path).with_suffix(".safetensors").is_file():
            row.size_bytes = (run.path / row.path).with_suffix(".safetensors").stat().st_size
    base = rows.get(("fp32", "eager"))
    for row in rows.values():
        for batch, lat in row.latency.items():
            if base and batch in base.latency and lat["p50"] > 0:
                row.speedup[batch] = base.latency[batch]["p50"] / lat["p50"]


def _export_parity(run: Run) -> dict[str, str]:
    """Relative artifact path -> 'pass (max |err| 4.8e-07)' from every verify-report.json in the run."""
    out: dict[str, str] = {}
    for report in run.path.rglob("verify-report.json"):
        folder = report.parent.relative_to(run.path)  # exports sit beside their verify report
        for rec in (read_json(report) or {}).get("artifacts", {}).values():
            worst = rec.get("worst") or {}
            err = worst.get("max_abs")
            verdict = "pass" if rec.get("passed") else "FAIL"
            rel = str(folder / Path(str(rec.get("artifact", ""))).name)
            out[rel] = f"{verdict} ({err:.0e})" if err is not None else verdict
    return out


def _quant_parity(run: Run, variant: str) -> str:
    """Top-1 agreement with fp32 (or the task-level verdict) from the quantize stage's report."""
    report = read_json(run.path / variant / "quantize_report.json") or {}
    for key in ("top1_agreement", "agreement"):
        value = report.get(key)
        if isinstance(value, (int, float)):
            verified = report.get("verified", report.get("passed"))
            verdict = "" if verified is None else ("pass, " if verified else "FAIL, ")
            return f"{verdict}top-1 {100 * value:.1f}%"
    return ""


def _mark_pareto(rows: list[Row], batch: int, higher_is_better: bool) -> None:
    """The rows no other row beats on both latency (at `batch`) and metric."""
    points = sorted((r for r in rows if r.metric is not None and batch in r.latency),
                    key=lambda r: (r.latency[batch]["p50"], -r.metric if higher_is_better else r.metric))
    best: float | None = None
    for r in points:
        better = best is None or (r.metric > best if higher_is_better else r.metric < best)
        if better:
            r.pareto, best = True, r.metric


def _order(row: Row) -> tuple:
    v = VARIANT_ORDER.index(row.variant) if row.variant in VARIANT_ORDER else len(VARIANT_ORDER)
    return v, row.variant, row.runtime != "eager", row.runtime


def collect(run: Run) -> dict[str, Any]:
    """Everything the report shows, as plain data (also written as report.json)."""
    manifest = run.manifest()
    evaluation = read_json(run.path / "evaluation.json") or {}
    bench = read_json(run.path / "bench.json") or {}
    rows: dict[tuple[str, str], Row] = {}
    _rows_from_evaluation(evaluation, rows)
    _rows_from_bench(run, bench, rows)
    _fill(run, rows, evaluation)
    exports = _export_parity(run)
    for row in rows.values():
        row.parity = exports.get(row.path) or (_quant_parity(run, row.variant) if row.variant.endswith("int8") else "")
    ordered = sorted(rows.values(), key=_order)
    higher = bool(evaluation.get("higher_is_better", True))
    batches = sorted({b for r in ordered for b in r.latency})
    if batches:
        _mark_pareto(ordered, batches[0], higher)
    stages = {name: {k: rec.get(k) for k in ("status", "duration_s", "metrics")}
              for name, rec in manifest.get("stages", {}).items()}
    return {"run": str(run.path), "arch": manifest.get("arch"), "created": manifest.get("created"),
            "model": manifest.get("model", {}), "metric": evaluation.get("metric"), "higher_is_better": higher,
            "evaluation_note": evaluation.get("note"), "data": evaluation.get("data"), "batches": batches,
            "pareto_batch": batches[0] if batches else None, "rows": [r.__dict__ | {"label": r.label} for r in ordered],
            "pipeline": manifest.get("pipeline", {}), "stages": stages, "environment": manifest.get("environment", {}),
            "bench": {k: bench.get(k) for k in ("threads", "device", "loadavg", "created", "config")},
            "prune": read_json(run.path / "pruned" / "prune_report.json"),
            "quantize": {v: read_json(run.path / v / "quantize_report.json") for v in ("int8", "pruned-int8")
                         if (run.path / v / "quantize_report.json").is_file()},
            "history": _history(run)}


def _history(run: Run) -> list[dict[str, Any]]:
    path = run.path / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
