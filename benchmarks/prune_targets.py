"""The issue's pruning targets: resnet18 and cnn trained on digits, `dlopt prune --ratio 0.3` at its DEFAULT options.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_targets.py [--finetune-epochs N] [--budget 8] [--timings 3]
        [--root DIR [--reuse | --reuse-arch resnet18]] [cnn resnet18]

Trains each model with its defaults (dlopt.train), prunes with dlopt.prune.run_prune twice: at the defaults
(widths from the measured width table, fine-tuned 3 epochs on the run's data) and with --round-to 1 (the exact
ratio, same fine-tuning) for comparison; then benches the run's model and both pruned checkpoints in one
dlopt.bench call (eager and ONNX Runtime, batch 1 and 8, one thread, interleaved; their ONNX files on OpenVINO
right after, interleaved the same way: dlopt.prune.latency), then eager at batch 8 once more in this thread's CPU
time beside wall-clock time (`eager-cpu@b8`, `eager-wall@b8`: not targets; what the process computes, without
the time other processes hold the core), `--timings` times over (default 3: on a shared machine one timing can
land in a load spike); each speed-up checked is the MEDIAN over those timings (all of them are in the JSON,
`speedup_timings`). Writes benchmarks/results/prune_targets.json (the previous file's rows are kept under
`previous_run`, and the run before that under `previous_run.previous_run`).
Targets (for the default variant): eager b8 >= 1.5x, ONNX Runtime b8 >= 1.3x, OpenVINO b8 >= 1.3x, test
accuracy within 1 point of the unpruned model, the share of channels removed within 5 points of the ratio, and
the parameters removed within 5 points of what the exact ratio removes (a ratio of 0.3 per layer removes ~half
the parameters, since each layer loses inputs as well as outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"eager@b8": 1.5, "onnxruntime@b8": 1.3, "openvino@b8": 1.3}
MAX_DROP_POINTS = 1.0
MAX_RATIO_GAP = 0.05  # achieved channel share vs the ratio, and params removed vs the exact ratio's
# The defaults (what `dlopt prune --ratio 0.3` does), and the exact ratio (kept channels = floor(0.7 * width)).
VARIANTS = {"pruned": None, "pruned-exact": 1}
DEFAULT = "pruned"


def _variant(r: dict, latency: dict, base_metric: float, exact: dict) -> dict:
    m = r["metric"]
    drop = round(100 * (base_metric - m["after_finetune"]), 2)
    speed = {k: v["speedup"] for k, v in latency.items()}  # the median over the timings (see _latency)
    ratio, channels = r["config"]["ratio"], r["achieved"]["channels"]
    checks = {**{f"{k} >= {v}x": bool(speed.get(k) and speed[k] >= v) for k, v in TARGETS.items()},
              f"accuracy drop <= {MAX_DROP_POINTS} point": drop <= MAX_DROP_POINTS,
              f"channels removed within {MAX_RATIO_GAP:.0%} of the ratio": abs(channels - ratio) <= MAX_RATIO_GAP,
              f"params removed within {MAX_RATIO_GAP:.0%} of the exact ratio's":
                  abs(r["params"]["removed"] - exact["params"]["removed"]) <= MAX_RATIO_GAP}
    return {"round_to": r["config"]["round_to"], "achieved": r["achieved"], "params": r["params"],
            "macs_batch1": r["macs"],
            "file_bytes": r["file_bytes"],
            "accuracy": {"after_prune": m["after_prune"], "after_finetune": m["after_finetune"], "drop_points": drop},
            "latency": latency, "speedup": speed, "checks": checks, "met": all(checks.values()),
            "widths_after": {k: v for k, v in r["widths"]["after"].items()}, "notes": r.get("notes", []),
            "finetune_epochs": sum(f["epochs"] for f in r["finetune"]), "prune_seconds": r["seconds"],
            "width_table": r["achieved"].get("width_table"),
            "layers": {n: {k: v for k, v in row.items() if k in ("before", "after", "removed", "why", "candidates_ms",
                                                                  "rule_width", "requested_ratio")}
                       for n, row in r.get("layers", {}).items()}}


def _train_and_prune(arch: str, root: Path, args: argparse.Namespace) -> tuple[Path, dict, dict]:
    from dlopt.contract.target import TargetOptions
    from dlopt.prune import PruneConfig
    from dlopt.prune.stage import run_prune
    from dlopt.train import TrainConfig, train

    t0 = time.perf_counter()
    trained = train(TrainConfig(arch=arch, out=root, progress=False))
    info = {"train_seconds": round(time.perf_counter() - t0, 1), "train_epochs": trained.epochs_run,
            "test_samples": trained.data.get("sizes", {}).get("test")}
    results = {}
    for name, round_to in VARIANTS.items():
        cfg = PruneConfig(ratio=args.ratio, finetune_epochs=args.finetune_epochs, round_to=round_to, name=name)
        print(f"  [{arch} {name}] round_to={round_to}, finetune_epochs={args.finetune_epochs} (None: default)")
        results[name] = run_prune(TargetOptions(name=trained.run_dir), cfg,
                                  progress=lambda m, n=name: print(f"  [{arch} {n}] {m}", flush=True)).result
    return Path(trained.run_dir), info, results


def _reprune(arch: str, root: Path, args: argparse.Namespace) -> tuple[Path, dict, dict]:
    """--reprune: the latest trained run of `arch` under root, its default variant pruned again (replaced: the
    widths come from today's code) and its exact variant reused when present (its widths do not change)."""
    from dlopt.contract.target import TargetOptions
    from dlopt.prune import PruneConfig
    from dlopt.prune.stage import run_prune

    run_dir = sorted(d for d in (root / arch).iterdir() if (d / "train_result.json").is_file())[-1]
    tr = json.loads((run_dir / "train_result.json").read_text())
    info = {"train_seconds": tr.get("seconds"), "train_epochs": tr.get("epochs_run"),
            "test_samples": tr.get("data", {}).get("sizes", {}).get("test"), "repruned": True}
    results = {}
    for name, round_to in VARIANTS.items():
        report = run_dir / name / "prune_report.json"
        if name != DEFAULT and report.is_file():
            results[name] = json.loads(report.read_text())
            continue
        cfg = PruneConfig(ratio=args.ratio, finetune_epochs=args.finetune_epochs, round_to=round_to, name=name)
        results[name] = run_prune(TargetOptions(name=str(run_dir)), cfg, replace=True,
                                  progress=lambda m, n=name: print(f"  [{arch} {n}] {m}", flush=True)).result
    return run_dir, info, results


def _reuse(arch: str, root: Path) -> tuple[Path, dict, dict]:
    """--reuse: the latest run of `arch` under root that holds every variant (re-timed only)."""
    runs = sorted(d for d in (root / arch).iterdir() if all((d / n / "prune_report.json").is_file() for n in VARIANTS))
    run_dir = runs[-1]
    tr = json.loads((run_dir / "train_result.json").read_text())
    info = {"train_seconds": tr.get("seconds"), "train_epochs": tr.get("epochs_run"),
            "test_samples": tr.get("data", {}).get("sizes", {}).get("test")}
    return run_dir, info, {n: json.loads((run_dir / n / "prune_report.json").read_text()) for n in VARIANTS}


def run_one(arch: str, root: Path, args: argparse.Namespace) -> dict:
    from dlopt.contract.target import TargetOptions, resolve_target
    from dlopt.prune.latency import measure_latency

    reuse = args.reuse or arch in args.reuse_arch
    if reuse:
        run_dir, info, results = _reuse(arch, root)
    else:
        run_dir, info, results = (_reprune if args.reprune else _train_and_prune)(arch, root, args)
    target = resolve_target(TargetOptions(name=str(run_dir)))
    lats = []
    for k in range(args.timings):
        print(f"  [{arch}] timing {k + 1}/{args.timings}: the model and {', '.join(VARIANTS)} interleaved", flush=True)
        lats.append(measure_latency(target.run, target.spec, target, tuple(VARIANTS), args.budget,
                                    openvino=True))
        for name, rows in _eager_cpu(run_dir, tuple(VARIANTS), args.budget).items():
            lats[-1]["rows_by_variant"][name].update(rows)
    before = results["pruned"]["metric"]["before"]
    return {"arch": arch, **info, "run_dir": str(run_dir),
            "model_config": json.loads((run_dir / "model.json").read_text())["config"],
            "accuracy_before": before, "finetune_epochs": args.finetune_epochs,
            "bench_loadavg": [lat["loadavg"] for lat in lats], "export_problems": lats[0]["problems"],
            "retimed": reuse, "variants": {n: _variant(results[n], _latency(lats, n), before, results["pruned-exact"])
                                           for n in VARIANTS}}


def _eager_cpu(run_dir: Path, names: tuple[str, ...], budget_s: float, batch: int = 8) -> dict[str, dict]:
    """Eager at `batch` timed apart from dlopt.bench, in this thread's CPU time AND wall-clock time per call (the
    same calls), interleaved blocks of CALLS: `eager-cpu@bB` and `eager-wall@bB` rows. Not a target: on a shared
    machine a wall-clock call also counts the time other processes hold the core, which CPU time leaves out."""
    import statistics

    import torch

    from dlopt.models.checkpoint import load_checkpoint
    from dlopt.models.registry import entry_module, make_inputs

    base = load_checkpoint(run_dir / "model.json")
    models = {"": base.model, **{n: load_checkpoint(run_dir / n / "model.json").model for n in names}}
    models = {k: entry_module(m, base.spec).eval() for k, m in models.items()}
    x = make_inputs(base.spec, base.config, batch, seed=0)
    cpu: dict[str, list[float]] = {k: [] for k in models}
    wall: dict[str, list[float]] = {k: [] for k in models}
    keys, end, r = list(models), time.perf_counter() + budget_s, 0
    with torch.inference_mode():
        for m in models.values():
            m(*x)
        while time.perf_counter() < end or min(map(len, cpu.values())) < 50:
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                for _ in range(5):
                    c0, w0 = time.thread_time(), time.perf_counter()
                    models[k](*x)
                    cpu[k].append((time.thread_time() - c0) * 1e3)
                    wall[k].append((time.perf_counter() - w0) * 1e3)
            r += 1
    out: dict[str, dict] = {}
    for name in names:
        for label, t in (("cpu", cpu), ("wall", wall)):
            before, after = statistics.median(t[""]), statistics.median(t[name])
            out.setdefault(name, {})[f"eager-{label}@b{batch}"] = {
                "before_ms": round(before, 5), "after_ms": round(after, 5), "speedup": round(before / after, 3)}
    return out


def _latency(lats: list[dict], name: str) -> dict:
    """Per runtime and batch: each timing's before/after ms and speed-up, and the median speed-up over them."""
    import statistics

    rows = {}
    for key in lats[0]["rows_by_variant"][name]:
        each = [lat["rows_by_variant"][name][key] for lat in lats]
        ups = [r["speedup"] for r in each if r["speedup"] is not None]
        rows[key] = {"speedup": round(statistics.median(ups), 3) if ups else None, "speedup_timings": ups,
                     "before_ms": [r["before_ms"] for r in each], "after_ms": [r["after_ms"] for r in each]}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="*", default=["cnn", "resnet18"])
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--finetune-epochs", type=int, default=None, help="default: dlopt prune's default")
    ap.add_argument("--budget", type=float, default=8.0, help="bench seconds per batch size")
    ap.add_argument("--root", type=Path, default=None, help="keep the runs here (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="re-time the runs already under --root (no train, no prune)")
    ap.add_argument("--reprune", action="store_true", help="prune the latest trained run under --root again "
                    "(default variant replaced, exact reused; no training)")
    ap.add_argument("--reuse-arch", action="append", default=[], help="re-time this arch's run under --root only")
    ap.add_argument("--timings", type=int, default=3, help="bench calls per arch; speed-ups checked are their median")
    ap.add_argument("--note", action="append", default=[], help="a line for the JSON's notes (how the rows were made)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prune-targets-") as tmp:
        root = args.root or Path(tmp)
        for arch in args.archs:
            print(f"{arch}: train, prune {args.ratio} (defaults and exact), bench", flush=True)
            rows.append(run_one(arch, root, args))
            brief = {n: {k: v[k] for k in ("accuracy", "speedup", "met")} for n, v in rows[-1]["variants"].items()}
            print(json.dumps(brief), flush=True)
    out = {"benchmark": "prune_targets", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ratio": args.ratio, "method": "structured", "importance": "l1", "threads": 1,
           "options": ("dlopt prune defaults" if args.finetune_epochs is None
                       else f"--finetune-epochs {args.finetune_epochs}"),
           "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                       "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
                       "note": "shared machine: other agents were using the CPU during the run"},
           "targets": {**{k: f">= {v}x" for k, v in TARGETS.items()}, "accuracy": f"drop <= {MAX_DROP_POINTS} point"},
           "torch": torch.__version__, "timings": args.timings, "notes": args.note, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "prune_targets.json"
    if path.is_file():  # keep the previous run's rows (exact and --round-to 8, before the defaults changed)
        previous = json.loads(path.read_text())
        if args.reuse:  # a re-timing of the same runs: the older run stays, the first timing is kept beside
            out["previous_run"] = previous.get("previous_run")
            out["first_timing"] = {k: previous[k] for k in ("created", "machine", "rows") if k in previous}
        else:
            out["previous_run"] = {k: v for k, v in previous.items() if k not in ("previous_run", "earlier_run")}
            older = previous.get("previous_run") or {}  # and the one before it (two runs back, no deeper)
            out["previous_run"]["previous_run"] = {k: v for k, v in older.items() if k != "previous_run"} or None
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
