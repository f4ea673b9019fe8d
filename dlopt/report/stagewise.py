"""What the report knows without a pipeline: metrics from each stage's own result file, steps from the manifest.

A run built stage by stage (`dlopt train`, `prune`, `quantize`, `export`, `bench`) has no evaluation.json and no
pipeline ledger. Each row's metric then comes from the file that measured it -- the training stage's test split
for fp32, prune_report.json for a pruned model, quantize_report.json for the quantized file -- and an exported
file that verified elementwise against its model carries that model's metric (the source says so).
"""

from __future__ import annotations

from typing import Any

from dlopt.core.results import PruneReport, QuantizeReport, TrainResult
from dlopt.core.trust import effective_status
from dlopt.report.rows import Row, Trust


def train_metric(trust: Trust, stages: dict[str, Any]) -> tuple[str | None, float | None, str]:
    """(metric name, test value, source) of the trained model: train_result.json, else the manifest's train stage."""
    train = trust.result(TrainResult, "train_result.json")
    if train is not None and train.metric and train.test_metric is not None:
        return train.metric, train.test_metric, "train_result.json"
    rec = stages.get("train") if isinstance(stages.get("train"), dict) else {}
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    found = [(k.removeprefix("test_"), v) for k, v in metrics.items()
             if k.startswith("test_") and k != "test_loss" and isinstance(v, int | float) and not isinstance(v, bool)]
    return (found[0][0], float(found[0][1]), "manifest (train stage)") if found else (None, None, "")


def _stage_metric(trust: Trust, row: Row) -> tuple[float | None, str]:
    """A non-fp32 row's metric from its variant's own stage report."""
    if row.runtime == "eager" and row.path.endswith("/model.json"):
        rel = f"{row.variant}/prune_report.json"
        pruned = trust.result(PruneReport, rel) if (trust.run.path / rel).is_file() else None
        if pruned is not None and pruned.metric is not None and pruned.metric.final is not None:
            return pruned.metric.final, rel
    rel = f"{row.variant}/quantize_report.json"
    quant = trust.result(QuantizeReport, rel) if (trust.run.path / rel).is_file() else None
    if quant is not None and quant.metric_after is not None and row.path == f"{row.variant}/{quant.artifact}":
        return quant.metric_after, rel
    return None, ""


def fill_metrics(trust: Trust, rows: list[Row], stages: dict[str, Any]) -> str | None:
    """Give rows without a measured metric the one their stage measured; returns the metric's name."""
    name, value, source = train_metric(trust, stages)
    for row in rows:
        if row.metric is not None:
            continue
        if (row.variant, row.runtime) == ("fp32", "eager"):
            row.metric, row.metric_source = value, source
        else:
            row.metric, row.metric_source = _stage_metric(trust, row)
    eager = {r.variant: r for r in rows if r.runtime == "eager" and r.metric is not None}
    for row in rows:  # an export verified elementwise against its model computes that model's outputs
        src = eager.get(row.variant)
        if row.metric is None and src is not None and row.path and row.parity.startswith("pass ("):
            row.metric, row.metric_source = src.metric, f"{src.variant} eager (file verified equal)"
    return name


def fill_sizes(trust: Trust, rows: list[Row]) -> None:
    """Parameters and MACs of rows evaluation.json did not size, from the prune reports (before: fp32)."""
    from dlopt.report.rows import source_variant

    sizes: dict[str, tuple[Any, Any]] = {}
    for variant in {r.variant for r in rows}:
        rel = f"{variant}/prune_report.json"
        pruned = trust.result(PruneReport, rel) if (trust.run.path / rel).is_file() else None
        if pruned is not None:
            sizes[variant] = (pruned.params.get("after"), pruned.macs.get("after"))
            sizes.setdefault("fp32", (pruned.params.get("before"), pruned.macs.get("before")))
    for row in rows:
        params, macs = sizes.get(row.variant) or sizes.get(source_variant(row.variant)) or (None, None)
        if row.parameters is None and params is not None:
            row.parameters, row.macs = int(params), None if macs is None else int(macs)


def _note(name: str, rec: dict[str, Any]) -> str:
    m = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    if rec.get("error"):
        return str(rec["error"])[:160]
    tests = [f"{k.removeprefix('test_')} {v:.4g}" for k, v in m.items()
             if k.startswith("test_") and k != "test_loss" and isinstance(v, float)]
    if tests:
        return "test " + ", ".join(tests)
    if "params_before" in m and "params_after" in m:
        return f"parameters {m['params_before']} -> {m['params_after']}"
    if m.get("method"):
        return " ".join(str(m[k]) for k in ("method", "backend") if m.get(k))
    if name == "export":
        return ", ".join(k for k, v in m.items() if isinstance(v, dict))
    return ""


def steps(manifest: dict[str, Any], stages: dict[str, Any]) -> list[dict[str, Any]]:
    """The pipeline ledger's steps; a run built stage by stage: its manifest's stages, in the order they ran."""
    ledger = manifest.get("pipeline") if isinstance(manifest.get("pipeline"), dict) else {}
    ordered = sorted(((n, r) for n, r in stages.items() if isinstance(r, dict)), key=lambda t: str(t[1].get("started")))
    if isinstance(ledger.get("steps"), dict) and ledger["steps"]:
        rows = [{"step": n, "status": s.get("status", ""), "seconds": s.get("seconds"), "note": s.get("note") or ""}
                for n, s in ledger["steps"].items() if isinstance(s, dict)]
        done = {(path, sha) for s in ledger["steps"].values() if isinstance(s, dict)
                and isinstance(s.get("outputs"), dict) for path, sha in s["outputs"].items()}
        later = [(n, r) for n, r in ordered if _outputs(r) and not _outputs(r) & done]  # run again after the pipeline
        return rows + [{"step": f"{n} (run again outside the pipeline)", "status": effective_status(r),
                        "seconds": r.get("duration_s"), "note": f"finished {r.get('finished') or '?'}"
                        + (f"; {_note(n, r)}" if _note(n, r) else "")} for n, r in later]
    return [{"step": n, "status": effective_status(r), "seconds": r.get("duration_s"), "note": _note(n, r)}
            for n, r in ordered]


def _outputs(rec: dict[str, Any]) -> set[tuple[str, Any]]:
    outs = rec.get("outputs") if isinstance(rec.get("outputs"), list) else []
    return {(o.get("path"), o.get("sha256")) for o in outs if isinstance(o, dict)}
