"""ResNet-18 at 224x224, batch 1 and 8, across every CPU backend, interleaved, with dlopt.bench.

    .venv/bin/python benchmarks/bench_resnet18.py [--budget-s 40] [--threads 2]

Writes benchmarks/results/bench-resnet18-<machine>-<date>.json (the full dlopt bench result).
Runs (with the exported ONNX file) go to a temporary directory: they are not part of the results.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from dlopt.bench.config import Backend, BenchConfig
from dlopt.bench.report import machine_tag
from dlopt.bench.runner import bench
from dlopt.contract.target import TargetOptions

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=40.0, help="timing budget per batch size, all backends")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exporter", default="dynamo")
    args = ap.parse_args()
    cfg = BenchConfig(backends=(Backend.EAGER, Backend.TORCHSCRIPT, Backend.COMPILE, Backend.ONNXRUNTIME),
                      batch_sizes=(1, 8), threads=args.threads, budget_s=args.budget_s, onnx_exporter=args.exporter)
    with tempfile.TemporaryDirectory() as tmp:
        out = bench(TargetOptions(name="resnet18", root=Path(tmp), sets={"input_size": 224}), cfg, progress=print)
    result = {**out.result, "run": "(temporary)"}
    path = RESULTS / f"bench-resnet18-{machine_tag()}-t{args.threads}-{datetime.now(UTC):%Y%m%d}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for r in result["rows"]:
        s = r.get("stats") or {}
        print(f"{r['variant']:12s} b{r['batch_size']} {r['status']:5s} median {s.get('median_ms', 0):9.3f} ms "
              f"IQR {100 * s.get('iqr_ratio', 0):5.1f}% n {s.get('n', 0):4d} x{r.get('speedup_vs_eager')} "
              f"{r.get('stop') or r.get('reason')}")
    path.with_suffix(".md").write_text(markdown(result))
    print(f"load {result['loadavg']}; wrote {path} and its .md table")


def markdown(result: dict) -> str:
    """The table docs/bench.md and the README show, regenerated from one result."""
    head = ("| backend | batch | median ms | mean | p90 | p99 | min | IQR % | n | stop | images/s | vs eager | GFLOP/s "
            "| % peak | setup + 1st call s |\n|" + "---|" * 15 + "\n")
    lines = []
    for r in result["rows"]:
        s = r.get("stats") or {}
        if r["status"] != "ok":
            lines.append(f"| {r['variant']} | {r['batch_size']} | {r['status']}: {r.get('reason', '')} |" + " |" * 12)
            continue
        lines.append(
            f"| {r['variant']} | {r['batch_size']} | {s['median_ms']:.1f} | {s['mean_ms']:.1f} | {s['p90_ms']:.1f} "
            f"| {s['p99_ms']:.1f} | {s['min_ms']:.1f} | {100 * s['iqr_ratio']:.1f} | {s['n']} | {r['stop']} "
            f"| {r['throughput_per_s']:.2f} | {r['speedup_vs_eager']:.2f}x | {r.get('gflops') or 0:.1f} "
            f"| {r.get('pct_peak') or 0:.0f} | {r['setup_s'] + r['first_call_s']:.1f} |")
    load = result["loadavg"]
    return (f"Threads {result['threads']}; 1-minute load average {load['start'][0]:.1f} -> {load['end'][0]:.1f} on "
            f"{load['cpus']} CPUs.\n\n" + head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
