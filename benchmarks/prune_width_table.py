"""What the measured width table (dlopt.prune.width_table) costs and chooses, and the default prune's speed on
torchvision models.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_width_table.py [--size 96] [--rounds 8]

For the cnn (1x28x28), resnet18 as trained on digits (3x32x32), torchvision resnet50 and mobilenet_v2 (random
weights, 3x{size}x{size}; 224 is too slow for this 2-core machine): `prune_model` at ratio 0.3 with the rule alone
(width_table=False), then with the table on an EMPTY cache (every call measured: the seconds the table adds to a
first prune on a machine), then again (served from the cache), for ONNX Runtime and eager at batch 8. Then, for
the torchvision models, the ONNX Runtime batch-8 speed-up of the default prune (table widths) over the unpruned
model, and of the rule's widths, timed interleaved in one process (median of per-round medians).
Writes benchmarks/results/prune_width_table.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {"cnn": {}, "resnet18": {"input_size": 32}, "torchvision:resnet50": "size",
         "torchvision:mobilenet_v2": "size"}


def _prune(arch: str, kw: dict, width_table: bool, runtime: str) -> tuple[Any, dict, float, Any]:
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.prune import PruneConfig
    from dlopt.prune.model import prune_model

    spec = get_spec(arch)
    mcfg = make_model_config(spec, **kw)
    model = create_model(spec, mcfg).eval()
    cfg = PruneConfig(ratio=0.3, width_table=width_table, target_runtime=runtime)
    t0 = time.perf_counter()
    pruned, info = prune_model(model, spec, cfg, make_inputs(spec, mcfg, 1))
    return pruned, info, time.perf_counter() - t0, (model, spec, mcfg)


def _moved(info: dict) -> dict[str, str]:
    return {n: f"{p['rule_width']} -> {p['planned']}" for n, p in info["width_plan"].items()
            if "rule_width" in p and p["rule_width"] != p["planned"]}


def _costs(arch: str, kw: dict, runtime: str) -> tuple[dict, Any]:
    from dlopt.prune import PruneConfig
    from dlopt.prune.report import explain

    _, rule, rule_s, _ = _prune(arch, kw, False, runtime)
    with tempfile.TemporaryDirectory(prefix="width-table-") as cache:
        old = os.environ.get("DLOPT_CACHE_DIR")
        os.environ["DLOPT_CACHE_DIR"] = cache
        try:
            _, cold, cold_s, _ = _prune(arch, kw, True, runtime)
            pruned, warm, warm_s, base = _prune(arch, kw, True, runtime)
        finally:
            os.environ.pop("DLOPT_CACHE_DIR") if old is None else os.environ.__setitem__("DLOPT_CACHE_DIR", old)
    table = next((p["table"] for p in cold["width_plan"].values() if "table" in p), None)
    achieved = explain(warm, PruneConfig(ratio=0.3))["achieved"]
    row = {"arch": arch, "config": kw, "runtime": runtime, "batch": 8,
           "prune_s": {"rule": round(rule_s, 2), "table_cold_cache": round(cold_s, 2),
                       "table_warm_cache": round(warm_s, 2)},
           "table": table, "groups_timed": len({json.dumps(p["candidates_ms"]) for p in warm["width_plan"].values()
                                                 if "candidates_ms" in p}),
           "moved_from_rule": _moved(warm),
           "channels_removed": {"rule": _share(rule), "table": achieved["channels"]},
           "params_removed": {"rule": rule["params"]["removed"], "table": warm["params"]["removed"]}}
    return row, (base, pruned, rule)


def _share(info: dict) -> float:
    before = sum(w.get("out", 0) for n, w in info["widths"]["before"].items() if n in info["width_plan"])
    after = sum(w.get("out", 0) for n, w in info["widths"]["after"].items() if n in info["width_plan"])
    return round(1 - after / before, 4)


def _session(module: Any, x: Any) -> Any:
    import torch

    from dlopt.runtime.formats import ort_session

    buf = io.BytesIO()
    torch.onnx.export(module.eval(), (x,), buf, dynamo=False)
    sess = ort_session(buf.getvalue(), threads=1, inter_threads=1)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def _speed(models: dict[str, Any], x: Any, rounds: int) -> dict[str, Any]:
    """ORT batch-8 median ms per variant (per-round medians of 3 calls, rounds interleaved, start rotating)."""
    from dlopt.models.registry import entry_module

    calls = {n: _session(entry_module(m, spec), x) for n, (m, spec) in models.items()}
    for fn in calls.values():
        fn()
    per: dict[str, list[float]] = {n: [] for n in calls}
    names = list(calls)
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                calls[n]()
                ts.append((time.perf_counter() - t0) * 1e3)
            per[n].append(statistics.median(ts))
    ms = {n: round(statistics.median(v), 3) for n, v in per.items()}
    return {"median_ms": ms, "speedup": {n: round(ms["unpruned"] / v, 3) for n, v in ms.items()},
            "speedup_per_round": {n: [round(a / b, 3) for a, b in zip(per["unpruned"], v)] for n, v in per.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96, help="torchvision input size")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("archs", nargs="*", default=list(CASES))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows, speed, load0 = [], {}, os.getloadavg()
    _prune("cnn", {}, False, "eager")  # imports and first-call set-up, so the first rule timing is not charged them
    for arch in args.archs:
        kw = {"input_size": args.size} if CASES[arch] == "size" else CASES[arch]
        for runtime in ("onnxruntime", "eager"):
            print(f"{arch} {runtime}: rule, table (empty cache), table (cached)", flush=True)
            row, (base, pruned, _) = _costs(arch, kw, runtime)
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("prune_s", "moved_from_rule", "params_removed")}), flush=True)
            if arch.startswith("torchvision") and runtime == "onnxruntime":
                model, spec, mcfg = base
                rule_model, _, _, _ = _prune(arch, kw, False, runtime)
                x = torch.randn(8, *tuple(make_shape(spec, mcfg)))
                speed[arch] = {"input": [8, *make_shape(spec, mcfg)], **_speed(
                    {"unpruned": (model, spec), "default (table)": (pruned, spec),
                     "rule widths": (rule_model, spec)}, x, args.rounds)}
                print(json.dumps(speed[arch]["speedup"]), flush=True)
    out = {"benchmark": "prune_width_table", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ratio": 0.3, "threads": 1, "batch": 8, "torch": torch.__version__,
           "machine": {"cpus": os.cpu_count(), "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg()),
                       "note": "shared 2-core machine, other agents' jobs running: timings inflated and noisy"},
           "rows": rows, "torchvision_onnxruntime_b8": speed}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "prune_width_table.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


def make_shape(spec: Any, mcfg: Any) -> list[int]:
    from dlopt.models.registry import make_inputs

    return list(make_inputs(spec, mcfg, 1)[0].shape[1:])


if __name__ == "__main__":
    main()
