"""Issue 17's remaining measurements, through the CLI a user runs (one thread, OMP_NUM_THREADS=1):

1. `dlopt prune RUN --target-speedup 2 --target-runtime onnxruntime --target-batch 8 --json` on a trained
   ResNet-18 (digits): does it reach 2x on ONNX Runtime at batch 8 within 1 point of accuracy? The path is
   recorded step by step (channels kept, ms before / after, speed-up, accuracy, drop, why it stopped).
2. The default prune on untrained torchvision models at 224x224 (no data, so no fine-tuning; speed only):
   `dlopt prune torchvision:NAME --ratio 0.3 --bench --json`; `--bench` times the model and the pruned one
   interleaved in one dlopt.bench call (eager and ONNX Runtime, batch 1 and 8, one thread). Target: speed-up
   >= 1.0x on ONNX Runtime, or the report says the pruned model is slower.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_extra.py --run artifacts/resnet18/<run> [--parts 1 2]

Without --run, part 1 trains one first (`dlopt train resnet18 --out ROOT`). Writes
benchmarks/results/prune_extra.json (commands, timings, load average, CPU model; part 1's plot of the path,
`<run>/pruned-2x/speedup_path.png`, is copied to results/prune_extra-speedup_path.png); a part not run keeps its
previous result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "prune_extra.json"
DLOPT = str(REPO / ".venv" / "bin" / "dlopt")
TORCHVISION = ("resnet50", "mobilenet_v2")
TARGET_SPEEDUP, MAX_DROP = 2.0, 1.0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _cli(args: list[str]) -> dict:
    """Run one dlopt command (one thread); its --json stdout, wall seconds and load average around it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    load0, t0 = os.getloadavg(), time.perf_counter()
    proc = subprocess.run([DLOPT, *args], capture_output=True, text=True, env=env, cwd=REPO)
    row = {"command": " ".join(["dlopt", *args]), "exit_code": proc.returncode,
           "seconds": round(time.perf_counter() - t0, 1), "loadavg": {"start": load0, "end": os.getloadavg()}}
    if proc.returncode != 0:
        row["stderr_tail"] = proc.stderr[-2000:]
        return row
    row["report"] = json.loads(proc.stdout)
    return row


def _report(row: dict) -> dict:
    r = row.get("report") or {}
    return r.get("result", r)


def part1(run: str | None, root: Path) -> dict:
    out: dict = {}
    if run is None:
        out["train"] = _cli(["train", "resnet18", "--out", str(root), "--json"])
        if out["train"]["exit_code"] != 0:
            raise SystemExit(f"dlopt train resnet18 failed:\n{out['train'].get('stderr_tail', '')}")
        run = _report(out["train"])["run_dir"]
    row = _cli(["prune", run, "--target-speedup", str(TARGET_SPEEDUP), "--target-runtime", "onnxruntime",
                "--target-batch", "8", "--name", "pruned-2x", "--json"])
    rep = _report(row)
    path = rep.get("speedup_path") or []
    last_kept = next((s for s in reversed(path) if not str(s.get("stopped", "")).startswith("over the budget")), {})
    plot = Path(run) / "pruned-2x" / str(rep.get("speedup_plot"))
    if rep.get("speedup_plot") and plot.is_file():  # the path as drawn by dlopt, kept beside the JSON
        (RESULTS / "prune_extra-speedup_path.png").write_bytes(plot.read_bytes())
        out["plot"] = "prune_extra-speedup_path.png"
    out.update({"run": run, "prune": {k: v for k, v in row.items() if k != "report"},
                "speedup_path": path, "metric": rep.get("metric"), "params": rep.get("params"),
                "macs": rep.get("macs"), "notes": rep.get("notes"), "widths_after": (rep.get("widths") or {}).get("after"),
                "final_step": last_kept, "report": rep})
    return out


def part2(root: Path, models: list[str]) -> dict:
    out: dict = {}
    for name in models:
        row = _cli(["prune", f"torchvision:{name}", "--ratio", "0.3", "--bench", "--out", str(root), "--json"])
        rep = _report(row)
        lat = rep.get("latency") or {}
        rows = lat.get("rows") or {}
        ort = rows.get("onnxruntime@b8", {}).get("speedup")
        notes = rep.get("notes") or []
        slower = {k: v["speedup"] for k, v in rows.items() if v.get("speedup") is not None and v["speedup"] < 1.0}
        out[name] = {**{k: v for k, v in row.items() if k != "report"},
                     "latency": rows, "bench_loadavg": lat.get("loadavg"), "threads": lat.get("threads"),
                     "params": rep.get("params"), "macs": rep.get("macs"), "achieved": rep.get("achieved"),
                     "notes": notes, "slower_cells": slower,
                     "report_says_slower": any("slower" in n.lower() for n in notes),
                     "checks": {"onnxruntime@b8 >= 1.0x": bool(ort and ort >= 1.0),
                                "every slower cell is named in the notes":
                                    not slower or any("slower" in n.lower() for n in notes)}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained resnet18 run for part 1 (default: train one)")
    ap.add_argument("--parts", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    ap.add_argument("--root", type=Path, help="output root for new runs (default: a temporary directory)")
    ap.add_argument("--models", nargs="+", default=list(TORCHVISION), choices=TORCHVISION,
                    help="part 2's torchvision models (a model not run keeps its previous result)")
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="prune-extra-"))
    res = {"benchmark": "prune_extra", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "threads": 1, "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                                     "shared": "2 cores shared with other jobs; every timing is one thread"},
           "targets": {"part1": f"onnxruntime@b8 >= {TARGET_SPEEDUP}x within {MAX_DROP} point",
                       "part2": "onnxruntime@b8 >= 1.0x, or the report says the pruned model is slower"}}
    run = str(Path(args.run).resolve()) if args.run else None  # the commands run from the repository root
    res["part1"] = part1(run, root) if 1 in args.parts else None
    res["part2"] = part2(root, args.models) if 2 in args.parts else None
    res["machine"]["loadavg_end"] = os.getloadavg()
    old = json.loads(OUT.read_text()) if OUT.exists() else {}  # re-read: another invocation may have written
    for part in ("part1", "part2"):
        if res[part] is None:
            res[part] = old.get(part)
            res["machine"][f"{part}_run"] = (old.get("machine") or {}).get(f"{part}_run")
        else:
            if part == "part2":  # the models not run this time keep their previous rows
                res[part] = {**{k: v for k, v in (old.get(part) or {}).items() if k not in args.models}, **res[part]}
            res["machine"][f"{part}_run"] = {"created": res["created"], "loadavg_start": res["machine"]["loadavg_start"],
                                             "loadavg_end": res["machine"]["loadavg_end"]}
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("part1", "part2") if res[k]}, indent=1)[:4000])


if __name__ == "__main__":
    sys.exit(main())
