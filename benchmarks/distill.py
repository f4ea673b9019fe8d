"""Knowledge distillation after pruning: test accuracy of models pruned at 0.5 and 0.7 and fine-tuned 3 epochs,
with the unpruned model as teacher (`PruneConfig.distill`, the default) and without (--no-distill), median of 3
seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill.py [ARCH ...] [--seeds 0 1 2] [--ratios 0.5 0.7]

Each architecture is trained once on digits with dlopt's default epochs (seed 0; the runs are cached under
benchmarks/.cache/distill/, git-ignored); the seed varies the pruning and fine-tuning (data order, augmentation).
Writes benchmarks/results/distill.json after every model. Target: distilled >= plain at 0.5, higher at 0.7.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache" / "distill"
RESULTS = ROOT / "benchmarks" / "results" / "distill.json"
EPOCHS = 3


def trained(arch: str) -> Path:
    """The cached run of `arch` trained on digits, trained now if missing."""
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    done = sorted((CACHE / arch).glob("*/train_result.json"), key=lambda p: p.stat().st_mtime)
    if done:
        return done[-1].parent
    return Path(train(TrainConfig(arch=arch, data="digits", out=CACHE, progress=False)).run_dir)


def one(run: Path, ratio: float, seed: int, distill: bool) -> dict[str, Any]:
    from dlopt.contract.target import TargetOptions
    from dlopt.prune import PruneConfig
    from dlopt.prune.stage import run_prune

    name = f"d{int(distill)}-r{int(ratio * 100)}-s{seed}"
    t0 = time.time()
    out = run_prune(TargetOptions(name=str(run)), PruneConfig(ratio=ratio, finetune_epochs=EPOCHS, distill=distill,
                                                               seed=seed, name=name), replace=True)
    m = out.report.metric
    return {"ratio": ratio, "seed": seed, "distill": distill, "before": m.before, "after_prune": m.after_prune,
            "after_finetune": m.after_finetune, "seconds": round(time.time() - t0, 1)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ratio in sorted({r["ratio"] for r in rows}):
        med = {d: statistics.median(r["after_finetune"] for r in rows if r["ratio"] == ratio and r["distill"] is d)
               for d in (True, False)}
        out[str(ratio)] = {"distill_median": med[True], "plain_median": med[False],
                           "gain_points": round(100 * (med[True] - med[False]), 3)}
    return out


def main() -> None:
    import torch

    from dlopt.core.environment import fingerprint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archs", nargs="*", default=["cnn", "resnet18"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--ratios", nargs="*", type=float, default=[0.5, 0.7])
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data.update(created=datetime.now(UTC).isoformat(timespec="seconds"), environment=fingerprint(),
                finetune_epochs=EPOCHS, metric="test accuracy (held-out split)",
                method="structured L1 pruning, fine-tuned with dlopt.prune.finetune; distill: KL on logits at T=4, "
                       "weight 0.5, teacher = the unpruned model; trained once per model (seed 0), the seed varies "
                       "pruning and fine-tuning")
    data.setdefault("models", {})
    for arch in args.archs:
        t0, run = time.time(), trained(arch)
        rows = [one(run, ratio, seed, distill) for ratio in args.ratios for seed in args.seeds
                for distill in (True, False)]
        targets = summary(rows)
        met = all(v["gain_points"] >= 0 for k, v in targets.items() if float(k) <= 0.5) and \
            all(v["gain_points"] > 0 for k, v in targets.items() if float(k) > 0.5)
        data["models"][arch] = {"run": str(run.relative_to(ROOT)), "rows": rows, "summary": targets,
                                "target_met": met, "seconds": round(time.time() - t0, 1),
                                "loadavg": list(os.getloadavg())}
        RESULTS.write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(arch, json.dumps(targets))


if __name__ == "__main__":
    main()
