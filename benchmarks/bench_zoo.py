"""The whole zoo at default sizes, batch 1 and 8, across CPU backends; run twice for the run-to-run spread.

    .venv/bin/python benchmarks/bench_zoo.py [--passes 2] [--budget-s 2] [--max-call-s 1.5] [--deadline-s 1500]

Pass 1 benches each architecture by name (a new run: ONNX exported with the legacy exporter, which is much
faster to export; eager, TorchScript and ONNX Runtime timed interleaved). Pass 2 benches the same run
directories again (the same weights and ONNX file), so the spread between passes is timing noise only.
torch.compile is left out here (its compile time per model and batch size would not fit the time box;
bench_resnet18.py includes it). A model whose single eager call at batch 8 exceeds --max-call-s is timed at
batch 1 only, and models still waiting at --deadline-s are listed as not run.
Writes benchmarks/results/bench-zoo-<machine>-<date>.json and the markdown table beside it (.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dlopt.bench.config import Backend, BenchConfig
from dlopt.bench.report import machine_tag
from dlopt.bench.runner import bench
from dlopt.contract.target import TargetOptions
from dlopt.models.registry import list_names

RESULTS = Path(__file__).parent / "results"
BACKENDS = (Backend.EAGER, Backend.TORCHSCRIPT, Backend.ONNXRUNTIME)


def _one_call_s(name: str) -> float:
    """Seconds of one eager call at batch 8 (after one warm-up call)."""
    import torch

    from dlopt.models.registry import build_model, entry_module, make_inputs

    model, spec, cfg = build_model(name)
    net, x = entry_module(model, spec), make_inputs(spec, cfg, 8)
    with torch.inference_mode():
        net(*x)
        t0 = time.perf_counter()
        net(*x)
    return time.perf_counter() - t0


def _pass(names: list[str], targets: dict[str, str], args, root: Path, t_end: float) -> tuple[dict, list[str]]:
    results, skipped = {}, []
    for name in names:
        if time.time() > t_end:
            skipped.append(name)
            continue
        batches = (1, 8) if _one_call_s(name) <= args.max_call_s else (1,)
        cfg = BenchConfig(backends=BACKENDS, batch_sizes=batches, threads=args.threads, budget_s=args.budget_s,
                          min_calls=5, onnx_exporter="legacy")
        t0 = time.time()
        try:
            out = bench(TargetOptions(name=targets.get(name, name), root=root), cfg)
        except Exception as exc:  # one architecture failing must not end the zoo run; it is reported
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print(f"{name}: FAILED {results[name]['error']}")
            continue
        targets[name] = out.result["run"]
        results[name] = {"seconds": round(time.time() - t0, 1), "batches": list(batches), "rows": out.result["rows"],
                         "loadavg": out.result["loadavg"]}
        print(f"{name}: {results[name]['seconds']} s, batches {batches}, load {out.result['loadavg']['end'][0]:.2f}")
    return results, skipped


def _spread(passes: list[dict]) -> list[dict]:
    """|m1 - m2| / min(m1, m2) per row measured in the first two passes."""
    out = []
    if len(passes) < 2:
        return out
    for name, res in passes[0].items():
        other = {(r["variant"], r["batch_size"]): r for r in passes[1].get(name, {}).get("rows", []) if r.get("stats")}
        for r in res.get("rows", []):
            o = other.get((r["variant"], r["batch_size"]))
            if r.get("stats") and o:
                a, b = r["stats"]["median_ms"], o["stats"]["median_ms"]
                out.append({"arch": name, "variant": r["variant"], "batch_size": r["batch_size"],
                            "pass1_ms": a, "pass2_ms": b, "spread_pct": round(100 * abs(a - b) / min(a, b), 2)})
    return out


def _ratio_spread(passes: list[dict]) -> list[float]:
    """|s1 - s2| / min(s1, s2) of each non-eager row's speed-up over eager, between the first two passes."""
    out = []
    for name, res in (passes[0].items() if len(passes) > 1 else []):
        other = {(r["variant"], r["batch_size"]): r for r in passes[1].get(name, {}).get("rows", [])}
        for r in res.get("rows", []):
            o = other.get((r["variant"], r["batch_size"]), {})
            a, b = r.get("speedup_vs_eager"), o.get("speedup_vs_eager")
            if r["variant"] != "eager" and a and b:
                out.append(round(100 * abs(a - b) / min(a, b), 2))
    return out


def _summary(spread: list[dict], ratios: list[float]) -> dict:
    vals = [s["spread_pct"] for s in spread]

    def stats(v: list[float]) -> dict:
        return {"rows_compared": len(v), "median_pct": round(statistics.median(v), 2) if v else None,
                "p90_pct": round(statistics.quantiles(v, n=10)[-1], 2) if len(v) > 1 else None,
                "max_pct": max(v) if v else None, "within_10pct": sum(x <= 10 for x in v)}

    return {"median_latency": stats(vals), "speedup_vs_eager": stats(ratios)}


def _markdown(first: dict, spread: list[dict]) -> str:
    sp = {(s["arch"], s["variant"], s["batch_size"]): s["spread_pct"] for s in spread}
    lines = ["| model | batch | eager ms | TorchScript ms (x) | ORT ms (x) | eager IQR % | GFLOP/s eager | % peak | spread % (eager/ts/ort) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in first.items():
        if "error" in res:
            lines.append(f"| {name} | - | failed: {res['error'][:80]} | | | | | | |")
            continue
        for b in res["batches"]:
            rows = {r["variant"]: r for r in res["rows"] if r["batch_size"] == b}

            def cell(v: str, rows=rows) -> str:
                r = rows.get(v, {})
                if not r.get("stats"):
                    return f"{r.get('status', 'n/a')}"
                x = f" ({r['speedup_vs_eager']:.2f}x)" if v != "eager" and r.get("speedup_vs_eager") else ""
                return f"{r['stats']['median_ms']:.4g}{x}"

            e = rows.get("eager", {})
            spreads = "/".join(f"{sp[(name, v, b)]:.1f}" if (name, v, b) in sp else "-"
                               for v in ("eager", "torchscript", "onnxruntime"))
            lines.append(f"| {name} | {b} | {cell('eager')} | {cell('torchscript')} | {cell('onnxruntime')} | "
                         f"{100 * e.get('stats', {}).get('iqr_ratio', 0):.1f} | {e.get('gflops') or '-'} | "
                         f"{e.get('pct_peak') or '-'} | {spreads} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=2.0, help="timing budget per batch size, all backends")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-call-s", type=float, default=1.5)
    ap.add_argument("--deadline-s", type=float, default=1500.0, help="stop starting models after this long (per pass)")
    ap.add_argument("--only", default="", help="comma list of architectures (default: the whole zoo)")
    ap.add_argument("--resummarize", type=Path, help="recompute the spread summary of an earlier result file")
    args = ap.parse_args()
    if args.resummarize:
        old = json.loads(args.resummarize.read_text())
        old["spread_summary"] = _summary(old["spread"], _ratio_spread(old["passes"]))
        args.resummarize.write_text(json.dumps(old, indent=1) + "\n")
        print(json.dumps(old["spread_summary"]))
        return
    names = [n for n in args.only.split(",") if n] or list_names()
    passes, not_run, targets = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # a throwaway bench first: the process's one-time costs (lazy imports, allocator growth, ORT
        # and TorchScript initialisation) would otherwise land on the first model of pass 1
        _pass([names[0]], {}, argparse.Namespace(**{**vars(args), "budget_s": 0.5}), Path(tmp), time.time() + 60)
        for _ in range(args.passes):
            res, skipped = _pass(names, targets, args, Path(tmp), time.time() + args.deadline_s)
            passes.append(res)
            not_run.append(skipped)
    spread = _spread(passes)
    summary = _summary(spread, _ratio_spread(passes))
    stamp = f"{machine_tag()}-{datetime.now(UTC):%Y%m%d}"
    out = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_tag(), "cpus": os.cpu_count(),
           "args": vars(args), "passes": passes, "not_run": not_run, "spread": spread, "spread_summary": summary}
    (RESULTS / f"bench-zoo-{stamp}.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / f"bench-zoo-{stamp}.md").write_text(_markdown(passes[0], spread))
    print(json.dumps(summary), "not run:", not_run)


if __name__ == "__main__":
    main()
