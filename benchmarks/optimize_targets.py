"""`dlopt optimize`'s targets: its pick against the int8 files people make by hand and against `dlopt pipeline`.

For each trained run (ResNet-18 and torchvision mobilenet_v2 trained by `dlopt train` on digits at 64x64 or 96x96):
  - `dlopt optimize RUN --threads 1 --batch-size 1` (a child process; its wall time is the study's time);
  - (a) OpenVINO + NNCF `nncf.quantize` with its defaults and (b) ONNX Runtime `quantize_static` with its
    defaults, both made from the same fp32 ONNX file (the run's `dlopt export`), calibrated on 300 training samples;
  - (c) `dlopt pipeline`'s default ship pick: the pipeline from scratch with the trained run's options (it trains
    its own copy with the same seed and data, then prunes, quantizes, exports, benches and picks);
then every file's accuracy on the test split and all of them timed interleaved in this one process, one thread,
batch 1 (dlopt.bench's backends and round-robin loop). Targets: the pick >= 1.5x faster than the faster of (a)
and (b), >= 1.2x faster than (c), within 1 point of fp32; the study within 30 min on 2 cores.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/optimize_targets.py RUN_DIR [RUN_DIR ...] [--time-budget 25m]

Writes benchmarks/results/optimize_targets.json (with dlopt.core.environment.fingerprint()).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "optimize_targets.json"
CALIBRATION = 300  # NNCF's default subset_size; the same samples calibrate ORT


def _copy(run: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("optimize", "optimized", ".staging"))
    return dest


def run_optimize(run: Path, budget: str, trials: int, finetune: int | None = None) -> dict[str, Any]:
    """The study in a child process; a finished one in `run` is reused (its wall time was recorded beside it)."""
    wall_file, report = run / "optimized" / "bench_wall.json", run / "optimized" / "optimize_report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        wall = json.loads(wall_file.read_text())["wall_s"] if wall_file.is_file() else data["seconds"]
        return {"wall_s": wall, "report": data, "rc": 0 if data["reached"] else 1, "reused": True}
    t0 = time.time()
    cmd = [sys.executable, "-m", "dlopt", "optimize", str(run), "--threads", "1", "--batch-size", "1",
           "--time-budget", budget, "--trials", str(trials), "--json",
           *(["--finetune-epochs", str(finetune)] if finetune is not None else [])]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = round(time.time() - t0, 1)
    if done.returncode not in (0, 1):
        raise SystemExit(f"dlopt optimize failed ({done.returncode}): {done.stderr[-2000:]}")
    wall_file.write_text(json.dumps({"wall_s": wall}))
    return {"wall_s": wall, "report": json.loads(done.stdout), "rc": done.returncode}


def run_pipeline(trained: Path, root: Path) -> dict[str, Any]:
    """`dlopt pipeline` from scratch with the trained run's own options (its train stage, then every default
    stage): the pipeline trains its own copy, seeded alike, so its ship pick starts where optimize did."""
    from dlopt.core.runs import Run
    from dlopt.pipeline import PipelineConfig, apply
    from dlopt.pipeline import run_pipeline as pipeline

    m = Run.open(trained).manifest()
    train = m["stages"]["train"]["config"]["train"]
    sets = {k: int(v) if str(v).isdigit() else v for k, v in train["sets"].items() if k != "input_size"}
    cfg = apply(PipelineConfig(), {"arch": m["arch"], "input_size": int(train["sets"].get("input_size") or 0),
                                   "sets": sets, "seed": train["seed"], "train": {"data": train["data"] or ""}},
                origin="benchmarks/optimize_targets.py")
    t0 = time.time()
    earlier = sorted(root.glob("*/*/manifest.json"))  # an earlier pipeline: resumed, not retrained; its bench (and
    for m in earlier[-1:]:  # so its ship pick) is redone now, not kept from a busier moment of this shared machine
        (m.parent / "bench.json").unlink(missing_ok=True)
    out = pipeline(cfg, root, resume=earlier[-1].parent if earlier else None, show_bars=False)
    run = Path(out.run_dir)
    return {"wall_s": round(time.time() - t0, 1), "run": run,
            "ship": json.loads((run / "report.json").read_text())["ship"]}


def _calibration(run: Path) -> list[Any]:
    from dlopt.contract.target import Target
    from dlopt.core.runs import Run
    from dlopt.quantize.calibrate import split_inputs
    from dlopt.tasks.evaluator import evaluator_for

    t = Target.of_run(Run.open(run))
    batches = split_inputs(evaluator_for(t.run, t.spec, t.config), t.spec, "train", CALIBRATION, 0)
    return [b[0].numpy() for b in batches]


def baselines(run: Path) -> dict[str, Path]:
    """The fp32 ONNX file, and (a) NNCF and (b) ORT quantize_static int8 files made from it with their defaults."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from dlopt.contract.target import Target
    from dlopt.core.runs import Run
    from dlopt.export import ExportConfig
    from dlopt.export.stage import run_export
    from dlopt.models.spec import ExportFormat

    onnx = run_export(Target.of_run(Run.open(run)), ExportConfig(formats=(ExportFormat.ONNX,))).result.artifacts["onnx"]
    calib = _calibration(run)
    # OpenVINO's tutorials convert the model, then quantize; Core.read_model (before 4cad1c1) left depthwise weights
    # behind shape subgraphs that NNCF does not quantize: a weaker baseline than a user following them gets
    model = ov.convert_model(str(onnx))
    name = model.inputs[0].get_any_name()
    nncf_xml = run / "baseline-nncf" / "model.xml"
    nncf_xml.parent.mkdir(exist_ok=True)
    ov.save_model(nncf.quantize(model, nncf.Dataset(calib)), str(nncf_xml))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calib)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.items, None)
            return None if x is None else {name: x}

    ort_file = run / "baseline-ort" / "model.onnx"
    ort_file.parent.mkdir(exist_ok=True)
    quantize_static(str(onnx), str(ort_file), Reader())
    return {"fp32 onnx": Path(onnx), "(a) openvino+nncf int8 defaults": nncf_xml,
            "(b) onnxruntime quantize_static defaults": ort_file}


def _timed(path: Path | None, runtime: str) -> Any:
    from dlopt.optimize.config import Runtime
    from dlopt.optimize.timing import Timed

    return Timed(Runtime(runtime), 1, path)


def _runtime_of(path: Path, said: str | None = None) -> str:
    if said in ("onnxruntime", "openvino", "torchscript", "eager"):
        return said
    return {".onnx": "onnxruntime", ".xml": "openvino", ".ts": "torchscript"}.get(path.suffix, "eager")


def accuracy(run: Path, path: Path | None) -> float:
    from dlopt.contract.target import Target
    from dlopt.core.runs import Run
    from dlopt.tasks.evaluator import evaluate_artifact, evaluator_for

    t = Target.of_run(Run.open(run))
    ev = evaluator_for(t.run, t.spec, t.config)
    if path is None or path.suffix == ".json":
        from dlopt.models.checkpoint import load_checkpoint

        return ev.score(t.model if path is None else load_checkpoint(path).model)
    return float(evaluate_artifact(path, ev)[t.spec.metric])


def compare(files: dict[str, tuple[Path | None, str, Path]], budget_s: float) -> dict[str, Any]:
    """Every file timed interleaved here, one thread, batch 1 (the first run's model is the eager reference); and
    its test accuracy on the run it belongs to (same data and split)."""
    from dlopt.contract.target import Target
    from dlopt.core.runs import Run
    from dlopt.models.registry import entry_module, make_inputs
    from dlopt.optimize.timing import Timer

    t = Target.of_run(Run.open(next(iter(files.values()))[2]))
    timer = Timer(entry_module(t.model, t.spec).eval(), make_inputs(t.spec, t.config, 1, seed=0))
    got = timer.time({k: _timed(p, rt) for k, (p, rt, _) in files.items()}, budget_s)
    return {k: {"file": None if p is None else str(p), "runtime": rt, **got[k].to_json(),
                "accuracy": round(accuracy(run, p), 4)} for k, (p, rt, run) in files.items()}


def one(trained: Path, work: Path, budget: str, trials: int, timing_s: float,
        finetune: int | None = None) -> dict[str, Any]:
    from dlopt.core.runs import Run

    manifest = Run.open(trained).manifest()
    arch = manifest["arch"]
    size = (manifest["stages"]["train"]["config"]["train"]["sets"] or {}).get("input_size")
    opt_dir = work / ("optimize" if finetune is None else f"optimize-ft{finetune}") / trained.name
    opt_run = opt_dir if (opt_dir / "optimized" / "optimize_report.json").is_file() else _copy(trained, opt_dir)
    base_run = _copy(trained, work / "baselines" / trained.name)
    opt = run_optimize(opt_run, budget, trials, finetune)
    pipe = run_pipeline(trained, work / "pipeline")
    files = {"fp32 eager": (None, "eager", base_run),
             **{k: (p, _runtime_of(p), base_run) for k, p in baselines(base_run).items()}}
    pick = opt["report"].get("pick")
    if pick:
        shipped = next(opt_run / f for f in opt["report"]["shipped"] if not f.endswith((".bin", ".safetensors")))
        files["optimize pick"] = (shipped, pick["candidate"]["runtime"], opt_run)
    ship = pipe["ship"].get("pick") if isinstance(pipe["ship"], dict) else None
    if ship:
        f = pipe["run"] / ship["file"]
        files["(c) dlopt pipeline ship pick"] = (f, _runtime_of(f, ship.get("runtime")), pipe["run"])
    rows = compare(files, timing_s)
    ms = {k: v["p50_ms"] for k, v in rows.items()}
    best_ab = min(ms[k] for k in rows if k.startswith(("(a)", "(b)")))
    fp32_acc = rows["fp32 eager"]["accuracy"]
    out = {"arch": arch, "input_size": int(size) if size else None, "trained_run": str(trained),
           "finetune_epochs": finetune, "rows": rows,
           "study_wall_s": opt["wall_s"],
           "study_reused": bool(opt.get("reused")), "study": opt["report"]["study"],
           "pick": pick and {k: pick[k] for k in ("label", "p50_ms", "verdict", "speedup_vs_eager")},
           "optimize_reached": opt["report"]["reached"], "optimize_reason": opt["report"]["reason"],
           "pipeline_wall_s": pipe["wall_s"], "pipeline_run": str(pipe["run"]), "pipeline_ship": ship,
           "pipeline_fp32_accuracy": round(accuracy(pipe["run"], None), 4)}
    if pick:
        p = ms["optimize pick"]
        out["targets"] = {
            "pick_vs_best_of_a_b": round(best_ab / p, 3), "needed_vs_a_b": 1.5,
            "pick_vs_pipeline": round(ms["(c) dlopt pipeline ship pick"] / p, 3) if ship else None,
            "needed_vs_pipeline": 1.2, "pick_drop_points": round(100 * (fp32_acc - rows["optimize pick"]["accuracy"]),
                                                                 2),
            "study_under_30_min": opt["wall_s"] <= 1800}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path, help="trained run directories (dlopt train)")
    ap.add_argument("--work", type=Path, default=Path("artifacts/optimize-bench"))
    ap.add_argument("--time-budget", default="25m")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--timing-s", type=float, default=20.0)
    ap.add_argument("--finetune-epochs", type=int, default=None, help="passed to dlopt optimize (default: its own)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from dlopt.core.environment import fingerprint

    from datetime import UTC, datetime

    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "fingerprint": fingerprint(),
               "load_before": os.getloadavg(), "models": [],
               "nncf_baseline_read": "ov.convert_model"}  # before 4cad1c1: Core.read_model (a weaker baseline)
    for run in args.runs:
        results["models"].append(one(run.resolve(), args.work.resolve() / run.name, args.time_budget, args.trials,
                                     args.timing_s, args.finetune_epochs))
        args.results.write_text(json.dumps({**results, "load_after": os.getloadavg()}, indent=2, default=str))
    print(json.dumps(results["models"], indent=2, default=str)[:4000])


if __name__ == "__main__":
    main()
