"""Distillation's temperature and KL weight, chosen on the validation split: each (T, w) pair fine-tunes a model
pruned at each ratio for 3 epochs, three seeds, beside plain fine-tuning; the pair with the best validation accuracy
(the mean over ratios of the median over seeds) is the one to ship, if it beats plain fine-tuning. Test accuracy is
recorded, never used to choose.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_sweep.py [ARCH] [--pairs 4:0.5 1:0.9 ...]

Writes benchmarks/results/distill_sweep.json after every cell (the trained run is benchmarks/distill.py's cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import EPOCHS, ROOT, trained  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "distill_sweep.json"
PAIRS = ("4:0.5", "2:0.5", "1:0.5", "4:0.9", "2:0.9", "1:1.0")


def one(run: Path, ratio: float, seed: int, pair: tuple[float, float] | None) -> dict[str, Any]:
    from dlopt.contract.target import TargetOptions
    from dlopt.prune import PruneConfig
    from dlopt.prune import finetune as ft
    from dlopt.prune.stage import run_prune

    if pair is not None:
        ft.distill_loss.__defaults__ = pair  # (temperature, weight)
    name = f"sw-{'plain' if pair is None else f't{pair[0]:g}w{pair[1]:g}'}-r{int(ratio * 100)}-s{seed}"
    t0 = time.time()
    out = run_prune(TargetOptions(name=str(run)), PruneConfig(ratio=ratio, finetune_epochs=EPOCHS,
                                                               distill=pair is not None, seed=seed, name=name),
                    replace=True)
    hist = out.result["finetune"][-1]["history"]
    val = max(row["val_accuracy"] for row in hist)
    return {"ratio": ratio, "seed": seed, "pair": None if pair is None else list(pair), "val": round(val, 6),
            "test": out.report.metric.after_finetune, "seconds": round(time.time() - t0, 1)}


def summarize(data: dict[str, Any], pairs: list[Any], ratios: list[float]) -> None:
    """Per pair and ratio the median validation and test accuracy; the score is the mean over ratios of the
    validation medians; `chosen` the best-scoring pair, and whether it beats plain fine-tuning on validation."""
    by: dict[str, Any] = {}
    for pair in pairs:
        key = "plain" if pair is None else f"T={pair[0]:g} w={pair[1]:g}"
        rows = [r for r in data["rows"] if (r["pair"] is None if pair is None else r["pair"] == list(pair))]
        by[key] = {str(ratio): {"val_median": statistics.median(r["val"] for r in rows if r["ratio"] == ratio),
                                "test_median": statistics.median(r["test"] for r in rows if r["ratio"] == ratio)}
                   for ratio in ratios}
        by[key]["val_score"] = round(statistics.mean(by[key][str(r)]["val_median"] for r in ratios), 6)
    data["summary"] = by
    data["select_on"] = "the mean over ratios of the median validation accuracy (3 seeds)"
    data["chosen"] = max((k for k in by if k != "plain"), key=lambda k: by[k]["val_score"])
    data["chosen_beats_plain_on_val"] = by[data["chosen"]]["val_score"] > by["plain"]["val_score"]


def main() -> None:
    import torch

    from dlopt.core.environment import fingerprint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", nargs="?", default="vit")
    ap.add_argument("--pairs", nargs="*", default=list(PAIRS), help="T:w pairs")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--ratios", nargs="*", type=float, default=[0.5, 0.7])
    ap.add_argument("--summarize", action="store_true", help="only recompute the summary of the results file")
    args = ap.parse_args()
    pairs = [None, *(tuple(float(v) for v in p.split(":")) for p in args.pairs)]
    if args.summarize:
        data = json.loads(RESULTS.read_text())
        summarize(data, pairs, args.ratios)
        RESULTS.write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(json.dumps(data["summary"], indent=1), "chosen:", data["chosen"])
        return
    torch.set_num_threads(1)
    run = trained(args.arch)
    data: dict[str, Any] = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "environment": fingerprint(),
                            "arch": args.arch, "run": str(run.relative_to(ROOT)), "finetune_epochs": EPOCHS,
                            "rows": []}
    for pair in pairs:
        for ratio in args.ratios:
            for seed in args.seeds:
                data["rows"].append(one(run, ratio, seed, pair))
                data["loadavg"] = list(os.getloadavg())
                RESULTS.write_text(json.dumps(data, indent=2, default=str) + "\n")
    summarize(data, pairs, args.ratios)
    RESULTS.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(json.dumps(data["summary"], indent=1), "chosen:", data["chosen"])


if __name__ == "__main__":
    main()
