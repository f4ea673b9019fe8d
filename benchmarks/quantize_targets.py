"""Issue #7's targets: int8 vs eager fp32 at batch 1, one thread, for resnet18 (digits), text_lstm,
transformer_classifier and mlp, each trained with dlopt's default epochs, then `dlopt quantize` (auto).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize_targets.py [--root DIR] [--budget-s 8]

Latency comes from dlopt.bench (eager + onnxruntime backends; the run's int8 .onnx is benched as a variant),
timed interleaved in one process. Writes benchmarks/results/quantize_targets.json. The machine is shared with
other jobs: the load average is recorded at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

TARGETS = {"resnet18": 4.0, "text_lstm": 2.0, "transformer_classifier": 2.0, "mlp": 3.0}  # speed-up needed
MAX_DROP = 1.0  # accuracy points
RESULTS = Path(__file__).parent / "results"


def one(arch: str, root: Path, budget_s: float) -> dict:
    from dlopt.bench.config import Backend, BenchConfig
    from dlopt.bench.runner import bench
    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    t0 = time.time()
    trained = train(TrainConfig(arch=arch, out=root, progress=False))
    t1 = time.time()
    q = run_quantize(TargetOptions(name=trained.run_dir), QuantizeConfig(method="auto", max_drop=MAX_DROP), print)
    t2 = time.time()
    b = bench(TargetOptions(name=trained.run_dir),
              BenchConfig(backends=(Backend.EAGER, Backend.ONNXRUNTIME), batch_sizes=(1,), threads=1,
                          budget_s=budget_s))
    rows = {r["variant"]: r for r in b.result["rows"]}
    eager = rows["eager"]["stats"]["median_ms"]
    int8_row = rows.get(f"onnxruntime:{q.artifact.relative_to(q.run_dir)}") or {}
    int8 = (int8_row.get("stats") or {}).get("median_ms")
    r = q.result
    speedup = round(eager / int8, 3) if int8 else None
    return {"arch": arch, "run": trained.run_dir, "train_test": trained.test, "epochs_run": trained.epochs_run,
            "recipe": r["recipe"]["label"], "kept_float": r["kept_float"], "auto": r["auto"],
            "metric": r["metric"], "metric_before": r["metric_before"], "metric_after": r["metric_after"],
            "drop_points": r["drop_points"], "top1_agreement": r["top1_agreement"], "verified": r["verified"],
            "size_bytes": r["size_bytes"], "bench_eager_ms_b1": eager, "bench_int8_ms_b1": int8,
            "bench_stop": {k: v.get("stop") for k, v in rows.items()}, "speedup_vs_eager_b1": speedup,
            "target_speedup": TARGETS[arch], "target_max_drop": MAX_DROP,
            "met": bool(speedup and speedup >= TARGETS[arch] and r["drop_points"] is not None
                        and r["drop_points"] <= MAX_DROP),
            "seconds": {"train": round(t1 - t0, 1), "quantize": round(t2 - t1, 1), "bench": round(time.time() - t2, 1)}}


def speed_224(root: Path, budget_s: float) -> dict:
    """Supplementary, speed only: ResNet-18 at 224x224 (the issue's 20 ms -> 3.2 ms setting), untrained weights,
    auto int8 calibrated on digits upscaled to 224. Its accuracy means nothing (untrained), so the budget is open;
    its latency does."""
    from dlopt.bench.config import Backend, BenchConfig
    from dlopt.bench.runner import bench
    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize

    opts = TargetOptions(name="resnet18", root=root, sets={"input_size": 224, "num_classes": 10})
    q = run_quantize(opts, QuantizeConfig(method="auto", max_drop=100.0, max_fallback_layers=0,
                                          calibration_samples=64), print)
    b = bench(TargetOptions(name=str(q.run_dir)),
              BenchConfig(backends=(Backend.EAGER, Backend.ONNXRUNTIME), batch_sizes=(1,), threads=1,
                          budget_s=budget_s))
    rows = {r["variant"]: (r.get("stats") or {}).get("median_ms") for r in b.result["rows"]}
    eager, int8 = rows["eager"], rows.get("onnxruntime:int8/model.onnx")
    return {"arch": "resnet18 @224 (untrained, speed only)", "recipe": q.result["recipe"]["label"],
            "bench_eager_ms_b1": eager, "bench_int8_ms_b1": int8,
            "speedup_vs_eager_b1": round(eager / int8, 3) if int8 else None,
            "onnxruntime_fp32_ms_b1": q.result["latency_ms_b1"].get("onnxruntime fp32"), "auto": q.result["auto"],
            "size_bytes": q.result["size_bytes"]}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="where runs go (default: a temporary directory)")
    ap.add_argument("--budget-s", type=float, default=8.0, help="bench timing budget per model")
    ap.add_argument("--arch", nargs="*", default=list(TARGETS))
    ap.add_argument("--only-224", action="store_true", help="only add the supplementary 224x224 ResNet-18 timing "
                                                            "to an existing quantize_targets.json")
    args = ap.parse_args()
    if args.only_224:
        path = RESULTS / "quantize_targets.json"
        data = json.loads(path.read_text())
        with tempfile.TemporaryDirectory() as tmp:
            data["supplementary"] = {**speed_224(args.root or Path(tmp), args.budget_s),
                                     "loadavg": list(os.getloadavg())}
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(data["supplementary"])
        return
    torch.set_num_threads(1)
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        rows = [one(arch, root, args.budget_s) for arch in args.arch]
    result = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "threads": 1, "batch_size": 1,
              "note": "eager fp32 vs the int8 ONNX Runtime file, timed interleaved by dlopt.bench in one process; "
                      "the machine was shared with other jobs (load average below)",
              "loadavg": {"start": load_start, "end": list(os.getloadavg()), "cpus": os.cpu_count()},
              "torch": torch.__version__, "targets": rows, "all_met": all(r["met"] for r in rows)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantize_targets.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for r in rows:
        print(f"{r['arch']:24s} {r['recipe']:40s} speed-up {r['speedup_vs_eager_b1']}x (need {r['target_speedup']}x) "
              f"{r['metric']} {r['metric_before']:.4f} -> {r['metric_after']:.4f} {'MET' if r['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
