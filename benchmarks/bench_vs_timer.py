"""How far dlopt's medians are from torch.utils.benchmark.Timer on the very same callables (target: 10%).

    .venv/bin/python benchmarks/bench_vs_timer.py [--threads 2] [--repeats 3]

For each case, dlopt's loop (warm-up, then adaptive timing until IQR < 10% or a 3 s budget) and Timer
alternate `--repeats` times on one callable, two ways:
- like for like: dlopt's per-call median against Timer timing one call at a time (timeit(number=1), as
  many calls as dlopt made) -- the comparison the 10% target applies to;
- Timer's own method: blocked_autorange(min_run_time=2)'s median of per-block means, against dlopt's mean.
  A block mean includes the time the process spends preempted, so on a loaded machine it tracks the mean,
  not the median; dlopt's median vs blocked_autorange is recorded too.
Writes benchmarks/results/bench-vs-timer-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

from dlopt.bench.backends import Variant, prepare
from dlopt.bench.config import Backend, BenchConfig, Device
from dlopt.bench.report import machine_tag
from dlopt.bench.stats import summarize
from dlopt.bench.timing import round_robin, warm_up
from dlopt.models.registry import build_model, entry_module, make_inputs

RESULTS = Path(__file__).parent / "results"
# (arch, build options, batch, backends): from ~0.05 ms to ~30 ms per call
CASES = [("mlp", {}, 1, ("eager", "torchscript")), ("lenet5", {}, 8, ("eager", "torchscript")),
         ("cnn", {}, 8, ("eager", "torchscript")), ("resnet18", {"input_size": 112}, 1, ("eager", "torchscript")),
         ("lstm", {}, 8, ("eager",)), ("transformer_classifier", {"num_layers": 2}, 1, ("eager",))]


def _onnx_case(arch: str, sets: dict, batch: int, tmp: Path) -> Variant:
    model, spec, cfg = build_model(arch, sets)
    path = tmp / f"{arch}.onnx"
    from dlopt.export import ExportConfig, export_model
    from dlopt.models.spec import ExportFormat

    export_model(model, spec, cfg, tmp, ExportConfig(formats=(ExportFormat.ONNX,), exporter="legacy", verify=False),
                 stem=arch)
    return Variant("onnxruntime", Backend.ONNXRUNTIME, path=path)


def _dlopt(fn, cfg: BenchConfig) -> tuple[float, float, int]:
    """(median ms, mean ms, n) from dlopt's loop."""
    wu = warm_up(fn, cfg.warmup_calls)
    series = round_robin({"x": fn}, {"x": wu.estimate_s}, cfg)["x"]
    st = summarize(series.times)
    return st.median_ms, st.mean_ms, st.n


def _timer_blocked(fn, threads: int) -> float:
    """Timer's own method: the median of per-block means (blocks of back-to-back calls)."""
    m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=2.0)
    return m.median * 1e3


def _timer_per_call(fn, threads: int, n: int) -> float:
    """Timer timing one call at a time (timeit(number=1)), n times: the median per call."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return statistics.median(timer.timeit(1).times[0] for _ in range(n)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(budget_s=3.0, threads=args.threads)
    rows, tmp = [], Path(os.environ.get("TMPDIR", "/tmp")) / "dlopt-vs-timer"
    tmp.mkdir(exist_ok=True)
    load0 = list(os.getloadavg())
    with torch.inference_mode():
        for arch, sets, batch, backends in CASES:
            model, spec, mcfg = build_model(arch, sets)
            inputs = make_inputs(spec, mcfg, batch)
            variants = [Variant(b, Backend(b), module=entry_module(model, spec)) for b in backends]
            variants.append(_onnx_case(arch, sets, batch, tmp))
            for v in variants:
                fn = prepare(v, inputs, Device.CPU, args.threads).fn
                med, mean, per_call, blocked = [], [], [], []
                for _ in range(args.repeats):
                    m, mu, n = _dlopt(fn, cfg)
                    med.append(m)
                    mean.append(mu)
                    per_call.append(_timer_per_call(fn, args.threads, min(n, 2000)))
                    blocked.append(_timer_blocked(fn, args.threads))
                a, b = statistics.median(med), statistics.median(per_call)
                c, d = statistics.median(mean), statistics.median(blocked)
                rows.append({"case": f"{arch} b{batch}", "variant": v.name, "dlopt_median_ms": round(a, 5),
                             "timer_per_call_median_ms": round(b, 5), "diff_pct": round(100 * (a - b) / b, 2),
                             "dlopt_mean_ms": round(c, 5), "timer_blocked_median_ms": round(d, 5),
                             "mean_vs_blocked_diff_pct": round(100 * (c - d) / d, 2),
                             "dlopt_median_vs_blocked_diff_pct": round(100 * (a - d) / d, 2),
                             "runs": {"dlopt_median": med, "dlopt_mean": mean, "timer_per_call": per_call,
                                      "timer_blocked": blocked}})
                r = rows[-1]
                print(f"{arch:22s} b{batch} {v.name:12s} median {a:8.4f} vs Timer per-call {b:8.4f} ({r['diff_pct']:+.1f}%)"
                      f" | mean {c:8.4f} vs Timer blocked {d:8.4f} ({r['mean_vs_blocked_diff_pct']:+.1f}%)")
    worst = max(abs(r["diff_pct"]) for r in rows)
    worst_blocked = max(abs(r["mean_vs_blocked_diff_pct"]) for r in rows)
    out = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "threads": args.threads,
           "loadavg": {"start": load0, "end": list(os.getloadavg())}, "rows": rows,
           "max_abs_diff_pct": worst, "within_10pct": sum(abs(r["diff_pct"]) <= 10 for r in rows), "cases": len(rows),
           "max_abs_mean_vs_blocked_pct": worst_blocked,
           "mean_vs_blocked_within_10pct": sum(abs(r["mean_vs_blocked_diff_pct"]) <= 10 for r in rows)}
    path = RESULTS / f"bench-vs-timer-{machine_tag()}-{datetime.now(UTC):%Y%m%d}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"median vs Timer per-call: max |diff| {worst:.1f}%, {out['within_10pct']}/{len(rows)} within 10%; "
          f"mean vs Timer blocked: max |diff| {worst_blocked:.1f}%; load {out['loadavg']}; wrote {path}")


if __name__ == "__main__":
    main()
