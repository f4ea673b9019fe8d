"""Gather a run's numbers into one table: every variant x runtime with metric, size, latency and parity.

Reads only files in the run (manifest, evaluation.json, bench.json, verify and stage reports), so
`dlopt report RUN_DIR` regenerates the same page without rerunning anything, and without torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlopt.core.results import BenchResult, BenchRow, Evaluation, PruneReport, QuantizeReport, VerifyReport
from dlopt.core.runs import Run
from dlopt.report.rows import Row, Trust, source_variant
from dlopt.runtime.formats import artifact_bytes, find_format

NOISY_IQR = 0.5  # IQR above half the median: the timing cannot rank rows (bench's own rule, dlopt.bench.config)
VARIANT_ORDER = ("fp32", "pruned", "int8", "pruned-int8")


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


def bench_key(run: Run, row: BenchRow, recorded_root: str | None) -> tuple[str, str, str]:
    """(variant, runtime, relative path) of a bench row."""
    name = row.variant
    if row.artifact:
        rel = _rel(run, row.artifact, recorded_root)
        rec = find_format(rel)
        runtime = rec.runtime if rec else ("eager" if rel.endswith(".json") else row.backend)  # .json: a checkpoint
        return variant_of_path(rel), runtime, rel
    if name.startswith("eager:"):  # another checkpoint record in the run
        rel = name.removeprefix("eager:") + ".json"
        return variant_of_path(rel), "eager", rel
    if name == "eager":
        return "fp32", "eager", "model.json"
    return "fp32", f"{name} (live)", ""


def _rows_from_bench(run: Run, bench: BenchResult, rows: dict[tuple[str, str], Row], trust: Trust) -> None:
    for b in bench.rows:
        if b.status != "ok" or b.stats is None:
            continue
        variant, runtime, rel = bench_key(run, b, bench.run)
        if not rel.startswith("bench-export/") and not trust.ok(rel):  # bench's own export: made by that stage
            continue
        if not trust.measured_now(rel):
            continue
        row = rows.setdefault((variant, runtime), Row(variant, runtime, rel))
        row.latency[b.batch_size] = {"p50": b.stats.median_ms, "p90": b.stats.p90_ms}
        row.measured[b.batch_size] = b.measured or bench.created or ""  # rows of earlier benches are kept
        if (b.threads or bench.threads) is not None:
            row.threads[b.batch_size] = b.threads or bench.threads
        if b.stats.iqr_ratio is not None:
            row.iqr[b.batch_size] = b.stats.iqr_ratio
        if b.noisy:
            row.flagged[b.batch_size] = b.noise_reason or "bench marked its timing noisy"
        if b.model_bytes and row.size_bytes is None:
            row.size_bytes = b.model_bytes


def _rows_from_evaluation(evaluation: Evaluation, rows: dict[tuple[str, str], Row], trust: Trust) -> None:
    for e in evaluation.rows:
        if not trust.ok(e.path):
            continue
        row = rows.setdefault((e.variant, e.runtime), Row(e.variant, e.runtime, e.path))
        if e.metrics and isinstance(e.metrics.get(evaluation.metric), float):
            row.metric, row.metric_source = e.metrics[evaluation.metric], "evaluation.json"


def _fill(run: Run, rows: dict[tuple[str, str], Row], evaluation: Evaluation | None) -> None:
    sizes = evaluation.sizes if evaluation else {}
    for row in rows.values():
        size = sizes.get(row.variant) or sizes.get(source_variant(row.variant)) or {}
        row.parameters, row.macs = size.get("parameters"), size.get("macs")
        full = run.path / row.path
        if row.path and full.is_file() and row.runtime != "eager":
            row.size_bytes = artifact_bytes(full)  # with what ships beside it: an IR's weights, ONNX external data
        elif row.path.endswith(".json") and full.with_suffix(".safetensors").is_file():
            row.size_bytes = full.with_suffix(".safetensors").stat().st_size
    base = rows.get(("fp32", "eager"))
    for row in rows.values():
        for batch, lat in row.latency.items():
            if base and batch in base.latency and lat["p50"] > 0:
                row.speedup[batch] = base.latency[batch]["p50"] / lat["p50"]


def _export_parity(run: Run, trust: Trust) -> dict[str, str]:
    """Relative artifact path -> 'pass (max |err| 4.8e-07)' from every verify-report.json a done stage wrote."""
    out: dict[str, str] = {}
    for report in run.path.rglob("verify-report.json"):
        folder = report.parent.relative_to(run.path)  # exports sit beside their verify report
        if any(part.startswith(".") for part in folder.parts):
            continue  # a staging directory
        if any((run.path.joinpath(*folder.parts[:i + 1]) / "manifest.json").is_file() for i in range(len(folder.parts))):
            continue  # inside a run of its own (dlopt optimize's build cache): its manifest vouches for its files
        verified = trust.result(VerifyReport, str(folder / report.name))
        for rec in verified.artifacts.values() if verified else ():
            verdict = "pass" if rec.passed else "FAIL"
            rel = str(folder / Path(rec.artifact).name)
            out[rel] = f"{verdict} ({rec.max_abs:.0e})" if rec.max_abs is not None else verdict
    return out


def _quant_parity(report: QuantizeReport | None) -> str:
    """Top-1 agreement with fp32 (or the task-level verdict) from the quantize stage's report."""
    value = None if report is None else report.top1_agreement if report.top1_agreement is not None \
        else report.agreement
    verdict = "" if report is None or report.verified is None else ("pass, " if report.verified else "FAIL, ")
    if value is None:  # outputs that are not class scores: the relative error against fp32 is the verdict's figure
        rel = None if report is None else report.relative_error
        return "" if rel is None else f"{verdict}rel. error {100 * rel:.2g}%"
    return f"{verdict}top-1 {100 * value:.1f}%"


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


def _mark_noise(rows: list[Row], batch: int) -> None:
    for r in rows:
        iqr = r.iqr.get(batch)
        if batch in r.flagged:
            r.noisy = f"timing too noisy to compare at batch {batch}: {r.flagged[batch]}"
        elif iqr is not None and iqr > NOISY_IQR:
            r.noisy = (f"timing too noisy to compare: IQR {100 * iqr:.0f}% of the median at batch {batch} "
                       f"(over {100 * NOISY_IQR:.0f}%); rerun dlopt bench on a quieter machine or with a longer budget")


def collect(run: Run) -> dict[str, Any]:
    """Everything the report shows, as plain data (also written as report.json)."""
    from dlopt.report.candidates import section as candidates
    from dlopt.report.layer_errors import section as layer_errors
    from dlopt.report.stagewise import fill_metrics, fill_sizes, steps

    manifest = run.manifest()
    stages = manifest.get("stages", {}) if isinstance(manifest.get("stages"), dict) else {}
    trust = Trust(run, stages)
    evaluation = trust.result(Evaluation, "evaluation.json")
    bench = trust.result(BenchResult, "bench.json") or BenchResult(rows=())
    rows: dict[tuple[str, str], Row] = {}
    if evaluation is not None:
        _rows_from_evaluation(evaluation, rows, trust)
    _rows_from_bench(run, bench, rows, trust)
    _fill(run, rows, evaluation)
    exports = _export_parity(run, trust)
    quant = {v: trust.result(QuantizeReport, f"{v}/quantize_report.json") for v in {r.variant for r in rows.values()}
             if (run.path / v / "quantize_report.json").is_file()}
    for row in rows.values():
        row.parity = exports.get(row.path) or (_quant_parity(quant.get(row.variant)) if row.variant in quant else "")
    ordered = sorted(rows.values(), key=_order)
    metric = fill_metrics(trust, ordered, stages)
    fill_sizes(trust, ordered)
    metric = evaluation.metric if evaluation else metric
    higher = evaluation.higher_is_better if evaluation else True
    batches = sorted({b for r in ordered for b in r.latency})
    if batches:
        _mark_pareto(ordered, batches[0], higher)
        _mark_noise(ordered, batches[0])
    return {"run": str(run.path), "arch": manifest.get("arch"), "created": manifest.get("created"),
            "model": manifest.get("model", {}), "metric": metric, "higher_is_better": higher,
            "evaluation_note": evaluation.note if evaluation else None, "data": evaluation.data if evaluation else None,
            "batches": batches, "pareto_batch": batches[0] if batches else None,
            "rows": [r.__dict__ | {"label": r.label} for r in ordered], "steps": steps(manifest, stages),
            "stages": stage_summaries(stages),
            "environment": manifest.get("environment", {}),
            "bench": {"threads": bench.threads, "device": bench.device, "loadavg": bench.loadavg,
                      "created": bench.created, "config": bench.config},
            "quantize": {v: q.to_json() for v, q in quant.items() if q is not None},
            "prune": {v: p.to_json() for v, p in _prune_reports(trust, rows.values()).items()},
            "candidates": candidates(trust, stages), "layers": layer_errors(trust),
            "history": _history(run), "skipped": (trust.scan(), trust.skipped)[1]}


def stage_summaries(stages: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage of the stage table (dlopt.contract.stage) that the run records under its own name, in the
    table's order: its status and summary (the manifest's metrics), so a stage added to the table is reported."""
    from dlopt.contract.stage import stage_names

    return [{"stage": n, "status": stages[n].get("status"), "summary": stages[n].get("metrics") or {}}
            for n in stage_names() if isinstance(stages.get(n), dict)]


def _prune_reports(trust: Trust, rows: Any) -> dict[str, PruneReport]:
    """Each pruned variant's report (what was asked and what it achieved), read through the trust rule."""
    out = {}
    for variant in sorted({r.variant for r in rows}):
        rel = f"{variant}/prune_report.json"
        report = trust.result(PruneReport, rel) if (trust.run.path / rel).is_file() else None
        if report is not None:
            out[variant] = report
    return out


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
