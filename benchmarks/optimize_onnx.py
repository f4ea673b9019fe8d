"""`dlopt optimize model.onnx`: an ONNX file made elsewhere as the optimize target.

torchvision resnet18 (random weights, seed 0, num_classes=10) exported by hand with torch.onnx.export at 224x224
(a symbolic batch axis), and an --inputs file of 64 N(0,1) images (48 calibrate int8, 16 are held out and judge
every candidate's agreement with the fp32 file). Then, in a child process:

    dlopt optimize model.onnx --inputs images.npz --threads 1 --batch-size 1 --time-budget 8m --json

and, in this process, the pick timed interleaved with the fp32 file on ONNX Runtime and its fp32 IR on OpenVINO
(dlopt.optimize.timing.Timer: the round-robin loop the study times with), one thread, batch 1, `--repeats` rounds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/optimize_onnx.py [--time-budget 8m] [--work DIR]

Writes benchmarks/results/optimize_onnx.json with dlopt.core.environment.fingerprint().
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "optimize_onnx.json"
SIZE, IMAGES = 224, 64


def make_inputs(work: Path) -> tuple[Path, Path]:
    """model.onnx (exported by hand, as another tool would) and images.npz."""
    import numpy as np
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    onnx_path, npz = work / "model.onnx", work / "images.npz"
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(1, 3, SIZE, SIZE),), str(onnx_path), dynamo=False,
                          input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    images = np.random.default_rng(0).standard_normal((IMAGES, 3, SIZE, SIZE), np.float32)
    np.savez(npz, image=images)
    return onnx_path, npz


def study(onnx_path: Path, npz: Path, out: Path, budget: str) -> tuple[dict[str, Any], float, int]:
    cmd = [sys.executable, "-m", "dlopt", "optimize", str(onnx_path), "--inputs", str(npz), "--threads", "1",
           "--batch-size", "1", "--time-budget", budget, "--json", "--out", str(out)]
    t0 = time.time()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = round(time.time() - t0, 1)
    if done.returncode not in (0, 1):
        raise SystemExit(f"dlopt optimize failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout), wall, done.returncode


def retime(pick: Path, pick_runtime: str, onnx_path: Path, work: Path, budget_s: float, repeats: int
           ) -> dict[str, Any]:
    """The pick, the fp32 file on ONNX Runtime and its fp32 IR on OpenVINO, interleaved, one thread, batch 1."""
    from dlopt.optimize.config import Runtime
    from dlopt.optimize.timing import Timed, Timer
    from dlopt.quantize.onnx_file import onnx_example_inputs
    from dlopt.runtime.openvino import convert_onnx

    ir = convert_onnx(onnx_path, work / "fp32-ir" / "model.xml")
    entries = {"pick": Timed(Runtime(pick_runtime), 1, pick),
               "fp32 onnxruntime": Timed(Runtime.ONNXRUNTIME, 1, onnx_path),
               "fp32 openvino": Timed(Runtime.OPENVINO, 1, ir)}
    timer = Timer(None, onnx_example_inputs(onnx_path, batch=1, seed=0))
    rounds = [timer.time(entries, budget_s) for _ in range(repeats)]
    p50 = {k: statistics.median(r[k].p50_ms for r in rounds) for k in entries}
    over = {k: [round(r[k].p50_ms / r["pick"].p50_ms, 3) for r in rounds] for k in entries if k != "pick"}
    return {"p50_ms": p50, "iqr_pct": {k: [r[k].iqr_pct for r in rounds] for k in entries},
            "speedup_vs_fp32_onnxruntime": round(p50["fp32 onnxruntime"] / p50["pick"], 3),
            "speedup_vs_fp32_openvino": round(p50["fp32 openvino"] / p50["pick"], 3), "per_round": over,
            "rounds": repeats, "budget_s_per_round": budget_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-budget", default="8m")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dlopt-optimize-onnx"))
    ap.add_argument("--budget-s", type=float, default=10.0, help="interleaved timing per round")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    onnx_path, npz = make_inputs(args.work)
    report, wall, rc = study(onnx_path, npz, args.work / "runs", args.time_budget)
    run, pick = Path(report["run_dir"]), report.get("pick")
    timed = retime(run / pick["artifact"], pick["candidate"]["runtime"], onnx_path, args.work, args.budget_s,
                   args.repeats) if pick else None
    from dlopt.core.environment import fingerprint

    trials = [{k: t.get(k) for k in ("number", "state", "label", "p50_ms", "drop", "speedup_vs_runtime_fp32",
                                     "failed_because")} for t in report["trials"]]
    result = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "model": "torchvision resnet18, num_classes=10, "
        "random weights (seed 0), exported with torch.onnx.export (legacy exporter, opset 17, symbolic batch)",
        "input": [1, 3, SIZE, SIZE], "inputs_file": f"{IMAGES} N(0,1) images", "command": "dlopt optimize model.onnx "
        f"--inputs images.npz --threads 1 --batch-size 1 --time-budget {args.time_budget}",
        "rc": rc, "reached": report["reached"], "reason": report["reason"],
        "pick": None if not pick else {"label": pick["label"], "p50_ms": pick["p50_ms"],
                                       "drop": pick["verdict"]["drop"], "agreement": pick["verdict"]["agreement"],
                                       "size_bytes": pick["size_bytes"],
                                       "speedup_vs_baseline": pick.get("speedup_vs_baseline"),
                                       "speedup_vs_eager": pick.get("speedup_vs_eager")},
        "verification": (report.get("verification") or {}).get("summary"), "basis": report["basis"],
        "baseline": report["baseline"], "study_seconds": report["seconds"], "study_wall_s": wall,
        "trials": trials, "study": report["study"], "builds": report["builds"], "left_out": report["space"]["left_out"],
        "retimed": timed, "notes": report["notes"], "fingerprint": fingerprint(),
    }
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("trials", "fingerprint")}, indent=2, default=str))


if __name__ == "__main__":
    main()
