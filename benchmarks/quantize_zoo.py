"""Every zoo architecture's int8 path: train at its tiny size for a few epochs, `dlopt quantize` (auto, the
default 1-point budget), and record what was chosen, whether it was verified, and the batch-1 speed-up over
eager fp32 (one thread, interleaved by dlopt.bench's timing loop).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize_zoo.py [--epochs 3] [--arch NAME ...]

Writes benchmarks/results/quantize_zoo.json. Tiny models are far smaller than the articles' sizes, so their
speed-ups say little about the default sizes (see quantize_targets.json for those); what this checks is that
each architecture has an int8 path that runs and holds accuracy after real training. The machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def one(spec, root: Path, epochs: int) -> dict:
    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    t0 = time.time()
    row: dict = {"arch": spec.name}
    try:
        trained = train(TrainConfig(arch=spec.name, out=root, tiny=True, epochs=epochs, progress=False))
        row["train_test"] = trained.test
        q = run_quantize(TargetOptions(name=trained.run_dir), QuantizeConfig(method="auto", search_budget_s=60))
    except Exception as exc:  # one architecture failing is a row that says why, not a crashed benchmark
        return {**row, "status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "seconds": round(time.time() - t0, 1)}
    r = q.result
    return {**row, "status": "ok", "recipe": r["recipe"]["label"], "layers_int8": r["layers_int8"],
            "kept_float": r["kept_float"], "accuracy_basis": r["accuracy_basis"], "metric": r["metric"],
            "metric_before": r["metric_before"], "metric_after": r["metric_after"], "drop_points": r["drop_points"],
            "top1_agreement": r["top1_agreement"], "relative_error": r["relative_error"], "verified": r["verified"],
            "verification": {k: v["failure"] for k, v in r["verification"]["task"].items()}
            | {"shapes": r["verification"]["shapes"]["passed"]},
            "speedup_vs_eager_b1": r["speedup_vs_eager_b1"], "latency_ms_b1": r["latency_ms_b1"],
            "auto": [{k: c.get(k) for k in ("recipe", "val_drop", "latency_ms_b1", "failed")}
                     for c in (r["auto"] or {}).get("candidates", [])],
            "size_bytes": r["size_bytes"], "notes": r["notes"], "seconds": round(time.time() - t0, 1)}


def main() -> None:
    import torch

    from dlopt.models.registry import list_specs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--arch", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_start = list(os.getloadavg())
    specs = [s for s in list_specs() if not args.arch or s.name in args.arch]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            rows.append(one(spec, Path(tmp), args.epochs))
            r = rows[-1]
            print(f"{r['arch']:22s} {r['status']:6s} {r.get('recipe', r.get('error', ''))[:60]:60s} "
                  f"verified={r.get('verified')} drop={r.get('drop_points')} x{r.get('speedup_vs_eager_b1')}",
                  flush=True)
    result = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "threads": 1, "epochs": args.epochs,
              "size": "tiny", "note": "tiny configurations trained briefly; the machine was shared with other jobs",
              "loadavg": {"start": load_start, "end": list(os.getloadavg()), "cpus": os.cpu_count()},
              "torch": torch.__version__, "rows": rows,
              "verified": sum(bool(r.get("verified")) for r in rows), "total": len(rows)}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "quantize_zoo.json"
    if args.arch and path.is_file():  # a partial rerun replaces those rows and keeps the others
        old = json.loads(path.read_text())
        redone = {r["arch"]: r for r in rows}
        rows = [redone.pop(r["arch"], r) for r in old["rows"]] + list(redone.values())
        result.update(rows=rows, verified=sum(bool(r.get("verified")) for r in rows), total=len(rows),
                      rerun={"archs": args.arch, "created": result["created"], "loadavg": result["loadavg"]},
                      created=old["created"], loadavg=old["loadavg"])
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
