"""`dlopt runs`: the runs under an output root, with their headline numbers."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from dlopt.cli.common import JsonOpt, OutOpt, console, err_console, print_json, print_table
from dlopt.core.layout import DEFAULT_ROOT


def _fastest(run: Any, trust: Any) -> dict[str, Any] | None:
    """The bench row with the best speed-up over eager at the smallest batch measured, among rows whose file a
    done stage still vouches for (a killed or replaced variant's old timing is not listed) and whose timing is
    not too noisy to compare (the report's rule)."""
    from dlopt.core.results import BenchResult
    from dlopt.report.collect import NOISY_IQR, bench_key

    bench = trust.result(BenchResult, "bench.json")
    rows = [r for r in (bench.rows if bench else ()) if r.status == "ok" and r.speedup_vs_eager and r.stats
            and not r.noisy and (r.stats.iqr_ratio is None or r.stats.iqr_ratio <= NOISY_IQR)]
    rows = [r for r in rows if ((rel := bench_key(run, r, bench.run)[2]).startswith("bench-export/")
                                or trust.ok(rel)) and trust.measured_now(rel)]
    if not rows:
        return None
    batch = min(r.batch_size for r in rows)
    best = max((r for r in rows if r.batch_size == batch), key=lambda r: r.speedup_vs_eager)
    return {"variant": best.variant, "batch_size": batch, "median_ms": best.stats.median_ms,
            "speedup_vs_eager": best.speedup_vs_eager}


def summarize(run: Any) -> dict[str, Any]:
    from dlopt.core.trust import effective_status
    from dlopt.report.collect import Trust
    from dlopt.report.stagewise import train_metric

    m = run.manifest()
    report = run.path / "report.html"
    stages = m.get("stages", {}) if isinstance(m.get("stages"), dict) else {}
    trust = Trust(run, stages)
    name, value, _source = train_metric(trust, stages)
    fastest = _fastest(run, trust)
    return {"path": str(run.path), "arch": m.get("arch"), "created": m.get("created"),
            "stages": {k: effective_status(rec) for k, rec in stages.items()},
            "metric": name, "value": value, "fastest": fastest,
            "report": str(report) if report.is_file() else None, "skipped": trust.skipped}


def runs_cmd(out: OutOpt = DEFAULT_ROOT, as_json: JsonOpt = False) -> None:
    """List runs (newest last): stages done, test metric, fastest variant, report."""
    from dlopt.core.runs import scan_runs

    runs, damaged = scan_runs(out)
    for path, why in damaged:  # on stderr, so --json output stays a plain list
        err_console.print(f"[yellow]skipped[/yellow] {path}: {why}", soft_wrap=True)
    rows = [summarize(run) for run in runs]
    for r in rows:  # files a listing would have shown, but no done stage vouches for
        for skip in r["skipped"]:
            err_console.print(f"[yellow]skipped[/yellow] {r['path']}/{skip['path']}: {skip['reason']}", soft_wrap=True)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no runs under {out}; start one with `dlopt train NAME` or `dlopt pipeline NAME`")
        return
    table = Table(title=f"runs under {out}", title_justify="left")
    for col in ("run", "arch", "created", "test metric", "fastest (vs eager)", "report", "stages"):
        table.add_column(col)
    for r in rows:
        metric = f"{r['metric']} {r['value']:.4g}" if r["value"] is not None else "-"
        f = r["fastest"]
        fastest = (f"{f['variant']} {f['median_ms']:.3g} ms b{f['batch_size']} ({f['speedup_vs_eager']:.2f}x)"
                   if f else "-")
        stages = " ".join(k if v == "done" else f"{k}({v})" for k, v in r["stages"].items()) or "-"
        table.add_row(r["path"], r["arch"], (r["created"] or "")[:19], metric, fastest,
                      "report.html" if r["report"] else "-", stages)
    print_table(table, keep=("run", "arch", "test metric", "stages", "report", "fastest (vs eager)"), wrap=("stages",))


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_cmd)
