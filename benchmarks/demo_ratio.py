"""Which prune ratio the demo ResNet-18 (digits, 32x32) needs for pruned + int8 at >= 20x eager fp32, batch 1.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_ratio.py RUN_DIR [--ratios 0.4,0.5] [--finetune 3]
                                                                 [--backends onnxruntime] [--budget-s 10]

RUN_DIR: a trained demo run (`make demo` or `dlopt pipeline resnet18 --config benchmarks/configs/demo-resnet18.toml`)
that holds its shipped pruned-int8/model.onnx. Each ratio is pruned from the run's model (dlopt's defaults: the
width rule, `--finetune` epochs), quantized static int8 on each backend (64 calibration samples), and every int8
file is timed with eager fp32 of the run's model and the run's own pruned-int8 file, interleaved in one process,
batch 1, one thread. Prints median and fastest-call ratios; the machine's load inflates eager far more than the
runtimes, so read the int8 files against each other (and against the run's shipped file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def variants(run: Path, ratios: list[float], finetune: int, backends: list[str], log: Any) -> dict[str, Path]:
    from dlopt.contract.target import TargetOptions
    from dlopt.prune.config import PruneConfig
    from dlopt.prune.stage import run_prune
    from dlopt.quantize import QuantizeConfig, run_quantize

    files = {}
    for ratio in ratios:
        name = f"p{round(ratio * 100)}f{finetune}"
        if not (run / name / "model.json").is_file():
            run_prune(TargetOptions(name=str(run)), PruneConfig(ratio=ratio, finetune_epochs=finetune, name=name))
        for backend in backends:
            q = run_quantize(TargetOptions(name=str(run / name / "model.json")),
                             QuantizeConfig(method="static", backend=backend, calibration_samples=64,
                                            name=f"{name}-int8-{backend}", timing_budget_s=1.0))
            r = q.result
            log(f"{name} int8 {backend}: test accuracy {r['metric_before']} -> {r['metric_after']}")
            files[f"{name}-int8-{backend}"] = q.artifact
    return files


def time_all(run: Path, files: dict[str, Path], budget_s: float) -> dict[str, dict[str, float]]:
    import torch

    from dlopt.bench.backends import Variant, prepare
    from dlopt.bench.config import Backend, BenchConfig, Device
    from dlopt.bench.timing import round_robin, warm_up
    from dlopt.models.checkpoint import load_checkpoint
    from dlopt.models.registry import entry_module

    torch.set_num_threads(1)
    ck = load_checkpoint(run / "model.json")
    x = (torch.randn(1, 3, 32, 32),)
    rows = {"eager fp32": Variant("e", Backend.EAGER, module=entry_module(ck.model, ck.spec).eval()),
            "run's pruned-int8": Variant("d", Backend.ONNXRUNTIME, path=run / "pruned-int8" / "model.onnx")}
    rows.update({k: Variant(k, Backend.ONNXRUNTIME if f.suffix == ".onnx" else Backend.OPENVINO, path=f)
                 for k, f in files.items()})
    with torch.inference_mode():
        fns = {k: prepare(v, x, Device.CPU, 1).fn for k, v in rows.items()}
        est = {k: warm_up(f, 3).estimate_s for k, f in fns.items()}
        series = round_robin(fns, est, BenchConfig(budget_s=budget_s, min_calls=20, block_s=0.05))
    med = {k: 1e3 * sorted(s.times)[len(s.times) // 2] for k, s in series.items()}
    low = {k: 1e3 * min(s.times) for k, s in series.items()}
    return {k: {"median_ms": round(med[k], 4), "min_ms": round(low[k], 4),
                "x_eager_median": round(med["eager fp32"] / med[k], 1),
                "x_eager_min": round(low["eager fp32"] / low[k], 1),
                "x_vs_run_shipped": round(med["run's pruned-int8"] / med[k], 2)} for k in med}


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--ratios", default="0.4,0.5")
    ap.add_argument("--finetune", type=int, default=3)
    ap.add_argument("--backends", default="onnxruntime")
    ap.add_argument("--budget-s", type=float, default=10.0)
    args = ap.parse_args()
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:5.0f}s] {msg}", flush=True)

    files = variants(args.run, [float(r) for r in args.ratios.split(",")], args.finetune, args.backends.split(","), log)
    rows = time_all(args.run, files, args.budget_s)
    print(json.dumps({"loadavg": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
