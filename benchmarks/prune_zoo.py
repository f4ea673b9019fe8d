"""Structured pruning at ratio 0.3 for every architecture whose spec declares it: parameters, MACs, file size
and latency before/after (eager and ONNX Runtime, batch 1 and 8, one thread, interleaved through dlopt.bench).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_zoo.py [--budget 2] [names...]

Models are untrained (random weights, seed 0): this table is about size and speed; the accuracy after pruning
and fine-tuning is measured on trained models in prune_targets.py. Sizes: the spec's defaults, except where the
default is too heavy for a 2-core CPU benchmark (ViT-B/16, the 6-layer Transformer, BERT-base-like): those use
the spec's train_defaults (the size dlopt trains on the CPU), recorded per row.
Writes benchmarks/results/prune_zoo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"pruned": None, "pruned-r8": 8}  # the exact ratio; kept channels rounded down to a multiple of 8
USE_TRAIN_SIZE = {"vit", "transformer_classifier", "transformer_seq2seq", "bert_classifier", "resnet18"}


def _sets(spec) -> dict:
    from dlopt.train.config import build_defaults

    return build_defaults(spec.train_defaults) if spec.name in USE_TRAIN_SIZE else {}


def _row(r: dict, lat: dict) -> dict:
    return {"params": r["params"], "macs_batch1": r["macs"], "file_bytes": r["file_bytes"],
            "speedup": {k: v["speedup"] for k, v in lat.items()}, "latency": lat,
            "heads_and_widths_after": r["widths"]["after"]}


def run_unstructured(spec, root: Path, budget: float) -> dict:
    """Global magnitude pruning at 0.5: half the weights are zero, and dense kernels take as long as before."""
    from dlopt.contract.target import TargetOptions
    from dlopt.prune import PruneConfig
    from dlopt.prune.stage import run_prune

    sets = _sets(spec)
    out = run_prune(TargetOptions(name=spec.name, root=root, sets=sets or None),
                    PruneConfig(ratio=0.5, method="unstructured", bench=True, bench_budget_s=budget, data_limit=64))
    r = out.result
    return {"arch": spec.name, "size": "train_defaults" if sets else "default", "sparsity": r["sparsity"],
            "params": r["params"], "file_bytes": r["file_bytes"],
            "speedup": {k: v["speedup"] for k, v in r["latency"]["rows"].items()}, "latency": r["latency"]["rows"],
            "bench_loadavg": r["latency"]["loadavg"]}


def run_one(spec, root: Path, budget: float) -> dict:
    from dlopt.contract.target import TargetOptions, resolve_target
    from dlopt.core.errors import ConfigError
    from dlopt.prune import PruneConfig
    from dlopt.prune.latency import measure_latency
    from dlopt.prune.stage import run_prune

    sets = _sets(spec)
    t0 = time.perf_counter()
    target = resolve_target(TargetOptions(name=spec.name, root=root, sets=sets or None))
    results, skipped = {}, {}
    for name, round_to in VARIANTS.items():
        try:
            results[name] = run_prune(TargetOptions(name=str(target.run.path)),
                                      PruneConfig(ratio=0.3, round_to=round_to, name=name, data_limit=64)).result
        except ConfigError as exc:  # e.g. --round-to 8 on a 6-channel layer
            skipped[name] = str(exc)
    lat = measure_latency(target.run, target.spec, target, tuple(results), budget)
    first = next(iter(results.values()))
    return {"arch": spec.name, "size": "train_defaults" if sets else "default",
            "sets": {k: str(v) for k, v in sets.items()}, "kept_layers": first["kept_layers"],
            "variants": {n: _row(r, lat["rows_by_variant"][n]) for n, r in results.items()}, "skipped": skipped,
            "export_problems": lat["problems"], "bench_loadavg": lat["loadavg"],
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--budget", type=float, default=2.0, help="bench seconds per batch size")
    ap.add_argument("--unstructured", action="store_true",
                    help="unstructured 0.5 instead (default names: cnn resnet18); writes prune_unstructured.json")
    args = ap.parse_args()
    import torch

    from dlopt.core.errors import DloptError
    from dlopt.models.registry import list_specs

    torch.set_num_threads(1)
    names = args.names or (["cnn", "resnet18"] if args.unstructured else [])
    specs = [s for s in list_specs() if (not names or s.name in names)]
    load_start, rows = os.getloadavg(), []
    with tempfile.TemporaryDirectory(prefix="prune-zoo-") as tmp:
        for spec in specs:
            if args.unstructured:
                rows.append(run_unstructured(spec, Path(tmp), args.budget))
                print(json.dumps({k: rows[-1][k] for k in ("arch", "sparsity", "speedup")}), flush=True)
                continue
            if not spec.supports("prune:structured"):
                rows.append({"arch": spec.name, "structured": False, "why": spec.why_not("prune:structured")})
                continue
            print(f"{spec.name} ...", flush=True)
            try:
                rows.append({**run_one(spec, Path(tmp), args.budget), "structured": True})
            except DloptError as exc:
                rows.append({"arch": spec.name, "structured": True, "failed": f"{type(exc).__name__}: {exc}"})
            brief = {n: v["speedup"] for n, v in rows[-1].get("variants", {}).items()}
            print(json.dumps({"arch": spec.name, "speedup": brief, "failed": rows[-1].get("failed")}), flush=True)
    kind = "prune_unstructured" if args.unstructured else "prune_zoo"
    out = {"benchmark": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ratio": 0.5 if args.unstructured else 0.3, "method": "unstructured" if args.unstructured else "structured",
           "importance": "l1", "threads": 1, "batch_sizes": [1, 8], "budget_s": args.budget,
           "machine": {"cpus": os.cpu_count(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
                       "note": "shared machine: other agents were using the CPU during the run"},
           "weights": "untrained (seed 0): size and speed only", "torch": torch.__version__, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{kind}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
