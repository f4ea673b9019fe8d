"""Do the pipeline's numbers agree with the stage commands run by hand? (issue #8)

Runs `dlopt pipeline ARCH --config CONFIG` into one output root, then the same stages by hand into another
(`dlopt train`, `dlopt prune`, `dlopt quantize`, `dlopt export`, `dlopt bench`, with the same options), and
compares: test metric after training, after pruning + fine-tuning, after int8 (all must be equal: the same
seeds give the same weights), every export verified in both, and latency per variant (same machine,
minutes apart: reported as the ratio, expected within run-to-run noise).

    python benchmarks/pipeline_vs_stages.py lenet5 benchmarks/configs/demo-lenet5.toml
Writes benchmarks/results/pipeline-vs-stages-<arch>.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DLOPT = [sys.executable, "-m", "dlopt"]


def sh(*args: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([*DLOPT, *args, "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dlopt {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    out = json.loads(proc.stdout) if proc.stdout.strip().startswith(("{", "[")) else {}
    print(f"  dlopt {' '.join(args)}: {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def by_hand(arch: str, cfg: dict, root: Path) -> Path:
    train = cfg.get("train", {})
    args = ["train", arch, "--out", str(root)] + (["--epochs", str(train["epochs"])] if train.get("epochs") else [])
    run = Path(sh(*args)["run_dir"])
    prune = cfg.get("prune", {})
    flags = [f"--{k.replace('_', '-')}" if v is True else None for k, v in prune.items()]
    pargs = [x for k, v in prune.items() if v is not True for x in (f"--{k.replace('_', '-')}", str(v))]
    sh("prune", str(run), *pargs, *[f for f in flags if f])
    sh("quantize", str(run))
    sh("export", str(run))
    bench = cfg.get("bench", {})
    sh("bench", str(run), "--batch-sizes", ",".join(map(str, bench.get("batch_sizes", [1, 8]))),
       "--budget-s", str(bench.get("budget_s", 10.0)), "--backend", "eager,onnxruntime,torchscript")
    return run


def metrics(run: Path, spec_metric: str) -> dict:
    prune = read(run / "pruned" / "prune_report.json")
    quant = read(run / "int8" / "quantize_report.json")
    train = read(run / "manifest.json").get("stages", {}).get("train", {}).get("metrics", {})
    return {"train_test": train.get(f"test_{spec_metric}"), "pruned_after_finetune": (prune.get("metric") or {}).get("after_finetune"),
            "int8": quant.get("metric_after")}


def latencies(run: Path) -> dict[str, float]:
    rows = read(run / "bench.json").get("rows", [])
    return {f"{r['variant']}@b{r['batch_size']}": r["stats"]["median_ms"] for r in rows if r.get("stats")}


def speedups(lat: dict[str, float]) -> dict[str, float]:
    out = {}
    for key, ms in lat.items():
        batch = key.rpartition("@")[2]
        if key != f"eager@{batch}" and f"eager@{batch}" in lat:
            out[key] = round(lat[f"eager@{batch}"] / ms, 3)
    return out


def main() -> None:
    arch, config = sys.argv[1], Path(sys.argv[2])
    cfg = tomllib.loads(config.read_text())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from dlopt.models.registry import get_spec

    metric = get_spec(arch).metric
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pipe = Path(sh("pipeline", arch, "--config", str(config), "--out", f"{tmp}/pipeline")["run_dir"])
        pipeline_s = time.perf_counter() - t0
        hand = by_hand(arch, cfg, Path(tmp) / "hand")
        a, b = metrics(pipe, metric), metrics(hand, metric)
        la, lb = latencies(pipe), latencies(hand)
        common = sorted(set(la) & set(lb))
        ratios = {k: round(la[k] / lb[k], 3) for k in common}
        # Within each run, speed-up over its own eager row (same process, interleaved): steadier than raw times.
        sa, sb = speedups(la), speedups(lb)
        speedup_ratios = {k: round(sa[k] / sb[k], 3) for k in sorted(set(sa) & set(sb))}
        evaluation = read(pipe / "evaluation.json")
        eager = next((r for r in evaluation.get("rows", []) if r["variant"] == "fp32" and r["runtime"] == "eager"), {})
        result = {"arch": arch, "config": str(config), "pipeline_seconds": round(pipeline_s, 1),
                  "metrics": {"pipeline": a, "by_hand": b, "equal": a == b},
                  "pipeline_eval_fp32_eager": (eager.get("metrics") or {}).get(metric),
                  "latency_ms": {"pipeline": la, "by_hand": lb, "ratio_pipeline_over_hand": ratios},
                  "speedup_vs_own_eager": {"pipeline": sa, "by_hand": sb, "ratio_pipeline_over_hand": speedup_ratios},
                  "rows_only_in_one": sorted(set(la) ^ set(lb)), "loadavg": os.getloadavg(),
                  "note": "latency ratios compare two benchmark runs minutes apart on a shared 2-core machine"}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"pipeline-vs-stages-{arch}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("metrics", "pipeline_eval_fp32_eager")}, indent=2))
    print(f"latency ratios: {ratios}\nspeed-up ratios: {speedup_ratios}\nwritten {path}")


if __name__ == "__main__":
    main()
