"""Result files: bench.json written and checked as a dlopt.core.results.BenchResult, CSV rows, and a PNG chart
(matplotlib, Agg)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError
from dlopt.core.fileio import atomic_path

REQUIRED = {"schema": str, "created": str, "target": str, "device": str, "threads": int, "config": dict,
            "loadavg": dict, "environment": dict, "peak": dict, "rows": list}
ROW_REQUIRED = {"variant": str, "backend": str, "batch_size": int, "status": str}
STATS_KEYS = ("n", "median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "iqr_ms", "iqr_ratio")
CSV_COLUMNS = ("variant", "backend", "batch_size", "seq_len", "status", "stop", *STATS_KEYS, "throughput_per_s",
               "speedup_vs_eager", "flops", "gflops", "pct_peak", "setup_s", "first_call_s", "rss_setup_mb",
               "peak_rss_call_mb", "peak_cuda_mb", "model_bytes", "noisy", "noise_reason", "speedup_noisy", "reason",
               "baseline", "speedup_vs_baseline")


def schema_errors(data: Any) -> list[str]:
    """Every way `data` differs from a dlopt bench result (empty when it is one)."""
    if not isinstance(data, dict):
        return ["not a JSON object"]
    errs = [f"{k}: missing or not {t.__name__}" for k, t in REQUIRED.items() if not isinstance(data.get(k), t)]
    if isinstance(data.get("schema"), str) and not data["schema"].startswith("dlopt.bench/"):
        errs.append(f"schema {data['schema']!r} is not dlopt.bench/*")
    for i, row in enumerate(data.get("rows") or []):
        errs += [f"rows[{i}].{k}: missing or not {t.__name__}" for k, t in ROW_REQUIRED.items()
                 if not isinstance(row.get(k), t)]
        if row.get("status") == "ok":
            stats = row.get("stats") or {}
            errs += [f"rows[{i}].stats.{k}: missing" for k in STATS_KEYS if not isinstance(stats.get(k), int | float)]
        elif not row.get("reason"):
            errs.append(f"rows[{i}]: status {row.get('status')!r} without a reason")
    return errs


def write_results(result: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """Write `result` (what bench measured) to each of `paths` as a BenchResult; returns what the files hold.
    A key BenchResult does not declare, or a value of the wrong type, is refused before anything is written."""
    from dlopt.core.results import BenchResult, write_result

    record = BenchResult.of(result)
    for path in paths:
        write_result(record, path)
    return record.to_json()


def load_result(path: Path) -> dict[str, Any]:
    """A bench.json from disk, checked; InputFileError names what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputFileError(f"{path} not found; give a bench.json written by `dlopt bench`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read {path} as JSON ({exc}); give a bench.json written by `dlopt bench`") from None
    from dlopt.core.results import BenchResult, ResultError

    errs = schema_errors(data)
    if not errs:
        try:
            BenchResult.from_json(data)  # the same typed record report and runs read it through
        except ResultError as exc:
            errs = [str(exc)]
    if errs:
        raise InputFileError(f"{path} is not a dlopt bench result ({'; '.join(errs[:3])}); give a bench.json")
    return data


def _pct_columns(result: dict[str, Any]) -> list[str]:
    """p50_ms, p99.9_ms...: one column per percentile asked for (--percentiles)."""
    keys = dict.fromkeys(k for r in result["rows"] for k in ((r.get("stats") or {}).get("percentiles_ms") or {}))
    return [f"p{k}_ms" for k in keys]


def flat_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    out, columns = [], (*CSV_COLUMNS, *_pct_columns(result))
    for row in result["rows"]:
        stats = row.get("stats") or {}
        pcts = {f"p{k}_ms": v for k, v in (stats.get("percentiles_ms") or {}).items()}
        flat = {**row, **{k: stats.get(k) for k in STATS_KEYS}, **pcts}
        out.append({c: flat.get(c) for c in columns})
    return out


def write_csv(result: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=(*CSV_COLUMNS, *_pct_columns(result)))
        writer.writeheader()
        writer.writerows(flat_rows(result))


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Median latency per variant, one group of bars per batch size, p90 as the error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("stats")]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    shapes = list(dict.fromkeys((r["batch_size"], r.get("seq_len")) for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(variants) * len(shapes)), 4))
    width = 0.8 / max(1, len(variants))
    for i, name in enumerate(variants):
        xs, med, err = [], [], []
        for j, shape in enumerate(shapes):
            hit = next((r for r in rows if r["variant"] == name and (r["batch_size"], r.get("seq_len")) == shape), None)
            if hit:
                xs.append(j + i * width)
                med.append(hit["stats"]["median_ms"])
                err.append(hit["stats"]["p90_ms"] - hit["stats"]["median_ms"])
        ax.bar(xs, med, width, yerr=[[0] * len(err), err], label=name, capsize=2)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(shapes))])
    ax.set_xticklabels([f"batch {b}" + (f", seq {s}" if s else "") for b, s in shapes])
    ax.set_ylabel("median latency (ms); bar to p90")
    ax.set_title(f"{result['target']} on {result['environment']['cpu']['model']}, {result['threads']} threads")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def machine_tag() -> str:
    """'amd-epyc-2c': the results-file prefix for this machine (CPU model and core count)."""
    import os
    import re

    from dlopt.core.environment import cpu_info

    model = re.sub(r"[^a-z0-9]+", "-", cpu_info()["model"].lower()).strip("-") or "cpu"
    return f"{model}-{os.cpu_count()}c"
