"""Why the cnn's eager batch-8 speed-up at `--ratio 0.3` is what it is: the cnn (dlopt.models.nets.conv.CNN, 1x28x28,
widths 32/64/128, hidden 512) and pruned widths of it, timed eager and in ONNX Runtime at batch 8, one thread,
in interleaved blocks in one process (every variant sees the same machine state), plus where eager time goes
(torch.profiler, self CPU per op) and the page faults per call.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_cnn_b8.py [--rounds 12]

Variants: the widths the measured width table chooses (dlopt.prune.width_table; for ONNX Runtime and for eager,
batch 8), the nearest-multiple rule (24/48/88/360: every layer within 10 points of the ratio), the earlier rule
(16/48/88/360: the 32-channel layer loses 50 %), the exact ratio (22/44/89/358), and other widths inside the
10-point window (kept 20-25 of 32, 40-51 of 64, 77-102 of 128). Writes benchmarks/results/prune_cnn_b8.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BASE = (32, 64, 128, 512)
VARIANTS = {"unpruned": BASE, "rule (24/48/88/360)": (24, 48, 88, 360),
            "earlier rule, 32->16 (16/48/88/360)": (16, 48, 88, 360), "exact (22/44/89/358)": (22, 44, 89, 358),
            "window: 24/48/80/360": (24, 48, 80, 360), "window: 24/48/96/360": (24, 48, 96, 360),
            "window: 20/48/88/360": (20, 48, 88, 360), "window: 24/40/88/360": (24, 40, 88, 360)}
BATCH = 8


def _table_widths(runtime: str) -> tuple[int, int, int, int]:
    """The widths `dlopt prune --ratio 0.3` chooses for the cnn from the measured width table of `runtime` (batch 8;
    the table in DLOPT_CACHE_DIR or ~/.cache/dlopt, measured now where missing)."""
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.prune import PruneConfig
    from dlopt.prune.model import prune_model

    spec = get_spec("cnn")
    mcfg = make_model_config(spec)
    cfg = PruneConfig(ratio=0.3, target_runtime=runtime, target_batch=BATCH)
    _, info = prune_model(create_model(spec, mcfg), spec, cfg, make_inputs(spec, mcfg, 1))
    after = info["widths"]["after"]
    return (after["features.0"]["out"], after["features.4"]["out"], after["features.8"]["out"],
            after["classifier.1"]["out"])


def _model(w: tuple[int, int, int, int]) -> Any:
    from dlopt.models.nets.conv import CNN

    cfg = SimpleNamespace(in_channels=1, input_size=28, num_classes=10, widths=list(w[:3]), hidden=w[3], dropout=0.5)
    return CNN(cfg).eval()


def _add_table_variants() -> None:
    for runtime in ("onnxruntime", "eager"):
        w = _table_widths(runtime)
        VARIANTS[f"width table, {runtime} ({'/'.join(map(str, w))})"] = w


def _calls(x: Any) -> dict[str, dict[str, Any]]:
    import torch

    from dlopt.runtime.formats import ort_session

    out = {}
    for name, w in VARIANTS.items():
        m = _model(w)
        buf = io.BytesIO()
        torch.onnx.export(m, (x,), buf, dynamo=False)
        sess = ort_session(buf.getvalue(), threads=1, inter_threads=1)
        feed = {sess.get_inputs()[0].name: x.numpy()}

        def eager(m: Any = m) -> Any:
            with torch.no_grad():
                return m(x)

        out[name] = {"eager": eager, "onnxruntime": lambda s=sess, f=feed: s.run(None, f)}
    return out


def _interleaved(fns: dict[str, Any], rounds: int, block: int) -> dict[str, dict[str, float]]:
    """Round-robin blocks of `block` calls, the starting variant rotating each round; median and quartiles (ms)."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, int] = {n: 0 for n in names}
    for fn in fns.values():
        for _ in range(5):
            fn()
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(block):
                t0 = time.perf_counter()
                fns[n]()
                times[n].append((time.perf_counter() - t0) * 1e3)
            faults[n] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    out = {}
    for n, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        out[n] = {"median_ms": round(statistics.median(ts), 4), "p25_ms": round(q[0], 4), "p75_ms": round(q[2], 4),
                  "calls": len(ts), "page_faults_per_call": round(faults[n] / len(ts), 1)}
    return out


def _profile(fn: Any, calls: int = 40) -> dict[str, float]:
    """Self CPU ms per call by op, the ops over 2 % of the total."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    rows = {e.key: e.self_cpu_time_total / 1e3 / calls for e in prof.key_averages()}
    total = sum(rows.values())
    return {"total_ms": round(total, 3), **{k: round(v, 3) for k, v in sorted(rows.items(), key=lambda kv: -kv[1])
                                            if v > 0.02 * total}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--block", type=int, default=20)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    x = torch.randn(BATCH, 1, 28, 28)
    _add_table_variants()
    calls = _calls(x)
    load0 = os.getloadavg()
    timings = {rt: _interleaved({n: c[rt] for n, c in calls.items()}, args.rounds, args.block)
               for rt in ("eager", "onnxruntime")}
    speedups = {rt: {n: round(t["unpruned"]["median_ms"] / r["median_ms"], 3) for n, r in t.items()}
                for rt, t in timings.items()}
    prof = {n: _profile(calls[n]["eager"]) for n in ("unpruned", "rule (24/48/88/360)")}
    run = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": args.rounds, "block": args.block,
           "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg()), "speedup_vs_unpruned": speedups,
           "timings": timings, "eager_profile_ms_per_call": prof}
    print(json.dumps(speedups, indent=1))
    path = Path(__file__).resolve().parent / "results" / "prune_cnn_b8.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    runs = old.get("runs") or ([{k: old[k] for k in run if k in old}] if "timings" in old else [])
    out = {"benchmark": "prune_cnn_b8", "batch": BATCH, "threads": 1, "torch": torch.__version__,
           "cpus": os.cpu_count(), "widths": {n: list(w) for n, w in VARIANTS.items()},
           "note": "shared 2-core machine (other agents' jobs ran during every timing); random weights (dense "
                   "kernels: timing does not depend on the values); every run of the script is kept in `runs`",
           "runs": [*runs, run]}
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
