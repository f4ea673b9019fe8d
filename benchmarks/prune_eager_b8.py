"""Where eager time goes at batch 8, and why `dlopt prune --ratio 0.3` buys less of it than ONNX Runtime does:
the cnn (1x28x28) and resnet18 (3x32x32, the digits shapes) with random weights, unpruned and at the widths the
default prune, the nearest-multiple rule and the exact ratio keep; one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_eager_b8.py [--rounds 15]

Three measurements, written to benchmarks/results/prune_eager_b8.json (every run kept under `runs`):
- `by_layer_type`: each model's eager CPU ms per call by layer type (forward hooks, thread CPU time, 20 calls):
  how much of the time sits in layers whose cost falls only linearly with the channels kept (MaxPool2d,
  BatchNorm2d, ReLU: 0.7x at ratio 0.3) or not at all, against convs and linears (0.7 x 0.7 = 0.49x);
- `first_layer_calls`: the cnn's first conv (1 -> c at 28x28) and the conv reading it (c -> 48 at 14x14) at
  c = 16 / 20 / 24 / 32, eager and ONNX Runtime (dlopt.prune.op_calls: the width table's own timer), and
  MaxPool2d on 8 x c x 28 x 28 in NCHW and channels-last;
- `speedups`: whole-model eager and ONNX Runtime speed-ups, interleaved rounds, the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

BATCH = 8
VARIANTS = {"default": {}, "rule": {"width_table": False}, "exact": {"round_to": 1}}


def _models(arch: str) -> tuple[dict[str, Any], Any, dict[str, list[int]]]:
    from dlopt.models.registry import create_model, get_spec, make_inputs, make_model_config
    from dlopt.prune import PruneConfig
    from dlopt.prune.model import prune_model

    spec, mcfg = get_spec(arch), make_model_config(get_spec(arch))
    if arch == "resnet18":  # the digits run's shapes (prune_targets.json model_config)
        mcfg = dataclasses.replace(mcfg, in_channels=3, input_size=32, num_classes=10)
    models, widths = {"unpruned": create_model(spec, mcfg).eval()}, {}
    for name, over in VARIANTS.items():
        cfg = PruneConfig(ratio=0.3, **over)
        m, info = prune_model(create_model(spec, mcfg), spec, cfg, make_inputs(spec, mcfg, 1))
        models[name] = m.eval()
        widths[name] = sorted({v["out"] for v in info["widths"]["after"].values()})
    return models, make_inputs(spec, mcfg, BATCH)[0], widths


def _by_layer_type(model: Any, x: Any, calls: int = 20) -> dict[str, float]:
    import torch

    spent: dict[str, float] = {}
    start: dict[int, float] = {}
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_pre_hook(lambda m, a: start.__setitem__(id(m), time.thread_time())) for m in leaves]
    hooks += [m.register_forward_hook(lambda m, a, o: spent.__setitem__(
        type(m).__name__, spent.get(type(m).__name__, 0.0) + time.thread_time() - start[id(m)])) for m in leaves]
    with torch.no_grad():
        model(x)
        spent.clear()
        for _ in range(calls):
            model(x)
    for h in hooks:
        h.remove()
    return {k: round(v * 1e3 / calls, 4) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0}


def _first_layer_calls() -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from dlopt.prune.op_calls import Op, measure_ops

    ops = {f"{a}->{b}@{s}": Op("conv", (BATCH, a, s, s), b, (3, 3), (1, 1), (1, 1), (1, 1))
           for c in (16, 20, 24, 32) for a, b, s in ((1, c, 28), (c, 48, 14))}
    out: dict[str, Any] = {rt: {k: round(measure_ops(list(ops.values()), rt)[op.key], 4) for k, op in ops.items()}
                           for rt in ("eager", "onnxruntime")}
    pool = {}
    for c in (16, 24, 32):
        x = torch.randn(BATCH, c, 28, 28)
        for fmt, t in (("nchw", x), ("channels_last", x.contiguous(memory_format=torch.channels_last))):
            best = min(_cpu_ms(lambda t=t: F.max_pool2d(t, 2), 20) for _ in range(5))
            pool[f"{c}ch {fmt}"] = round(best, 4)
    out["maxpool2d_8xCx28x28_ms"] = pool
    return out


def _cpu_ms(fn: Any, n: int) -> float:
    t0 = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t0) * 1e3 / n


def _speedups(models: dict[str, Any], x: Any, rounds: int) -> dict[str, Any]:
    import torch

    from dlopt.runtime.formats import ort_session

    fns = {}
    for name, m in models.items():
        buf = io.BytesIO()
        torch.onnx.export(m, (x,), buf, dynamo=False)
        sess = ort_session(buf.getvalue(), threads=1, inter_threads=1)
        feed = {sess.get_inputs()[0].name: x.numpy()}
        fns[("eager", name)] = lambda m=m: _no_grad(m, x)
        fns[("onnxruntime", name)] = lambda s=sess, f=feed: s.run(None, f)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            n = 5 if k[0] == "eager" else 20
            t0 = time.perf_counter()
            for _ in range(n):
                fns[k]()
            times[k].append((time.perf_counter() - t0) * 1e3 / n)
    out: dict[str, Any] = {}
    for rt in ("eager", "onnxruntime"):
        base = times[(rt, "unpruned")]
        out[rt] = {n: {"speedup": round(statistics.median(b / a for b, a in zip(base, times[(rt, n)], strict=True)), 3),
                       "median_ms": round(statistics.median(times[(rt, n)]), 4)} for n in models}
    return out


def _no_grad(m: Any, x: Any) -> Any:
    import torch

    with torch.no_grad():
        return m(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    load0 = os.getloadavg()
    run: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": args.rounds}
    for arch in ("cnn", "resnet18"):
        models, x, widths = _models(arch)
        run[arch] = {"widths": widths, "by_layer_type": {n: _by_layer_type(m, x) for n, m in models.items()},
                     "speedups": _speedups(models, x, args.rounds)}
        print(arch, json.dumps(run[arch]["speedups"]), flush=True)
    run["first_layer_calls"] = _first_layer_calls()
    run["loadavg_start"], run["loadavg_end"] = list(load0), list(os.getloadavg())
    path = Path(__file__).resolve().parent / "results" / "prune_eager_b8.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    out = {"benchmark": "prune_eager_b8", "batch": BATCH, "threads": 1, "torch": torch.__version__,
           "cpus": os.cpu_count(), "note": "random weights (timing does not depend on the values); shared machine: "
           "the load average is recorded per run", "runs": [*old.get("runs", []), run]}
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
