"""Sections of docs/results.md for pruning, quantization, the runtime bars, the pipeline and memory results.

Each function reads the files its glob claims (parsed JSON, shape not promised: look-ups go through `get`) and
returns the section's Markdown and its headline rows for the README."""

from __future__ import annotations

from typing import Any

from results_kit import Body, Loaded, cell, get, mb, num, pct, rows_of, section, table, times

CELLS = ("eager@b8", "onnxruntime@b8", "openvino@b8", "eager@b1", "onnxruntime@b1")


def _speedup(variant: Any, key: str) -> str:
    """"1.71x (1.68-1.88)": the median over interleaved timings, their range in brackets."""
    value, runs = get(variant, f"speedup.{key}"), get(variant, f"latency.{key}.speedup_timings")
    spread = f" ({min(runs):.2f}-{max(runs):.2f})" if isinstance(runs, list) and runs and \
        all(isinstance(x, (int, float)) for x in runs) else ""
    return times(value) + spread if value is not None else "-"


def _prune_rows(rows: list[dict]) -> list[list[Any]]:
    out = []
    for r in rows:
        for name, v in (get(r, "variants", {}) or {}).items():
            failed = [k.split(" ")[0] for k, ok in (get(v, "checks", {}) or {}).items() if ok is False]
            out.append([get(r, "arch"), name, pct(get(v, "achieved.channels")), pct(get(v, "params.removed")),
                        f"{num(get(v, 'accuracy.after_finetune'))} ({num(get(v, 'accuracy.drop_points'), 2)} pt)",
                        *[_speedup(v, k) for k in CELLS], "yes" if get(v, "met") else "no: " + ", ".join(failed)])
    return out


PRUNE_HEAD = ["model", "variant", "channels removed", "params removed", "accuracy after fine-tuning (drop)",
              *[c.replace("onnxruntime", "ORT").replace("@", " ") for c in CELLS], "targets met"]


@section("prune_targets.json", "Pruning targets: cnn and ResNet-18, ratio 0.3", "benchmarks/prune_targets.py",
         "docs/prune.md")
def prune_targets(files: list[Loaded]) -> Body:
    d = files[0].data
    lines = ["Targets: " + ", ".join(f"{k} {v}" for k, v in (get(d, "targets", {}) or {}).items()) + ".", ""]
    lines += table(PRUNE_HEAD, _prune_rows(rows_of(d, "rows")))
    shown: dict[str, str] = {}
    for key, what in (("first_timing", "First timing, loaded machine"), ("loaded_retime", "Loaded re-time"),
                      ("previous_run", "Previous run")):
        rows = _prune_rows(rows_of(d, f"{key}.rows"))
        if not rows:
            continue
        lines += [f"{what} (`{key}`, {cell(get(d, f'{key}.created', ''))}):", ""]
        same = shown.get(repr(rows))
        lines += [f"The same figures as `{same}` in this file.", ""] if same else table(PRUNE_HEAD, rows)
        shown.setdefault(repr(rows), key)
    head = [f"{get(r, 'arch')} eager b8 {times(get(r, 'variants.pruned.speedup.eager@b8'))}, "
            f"ORT b8 {times(get(r, 'variants.pruned.speedup.onnxruntime@b8'))}" for r in rows_of(d, "rows")]
    met = all(get(r, "variants.pruned.met") is True for r in rows_of(d, "rows"))
    return Body(lines, [("`dlopt prune --ratio 0.3` at its defaults",
                         "; ".join(head) + ("; targets met" if met else "; targets missed"))])


@section("prune_extra.json", "Pruning to a latency target, and torchvision models", "benchmarks/prune_extra.py",
         "docs/prune.md")
def prune_extra(files: list[Loaded]) -> Body:
    d = files[0].data
    path = [[get(s, "step"), num(get(s, "channels_kept")), times(get(s, "speedup")), num(get(s, "metric")),
             num(get(s, "drop_points"), 3), get(s, "stopped", "")] for s in rows_of(d, "part1.speedup_path")]
    lines = [f"Part 1, target: {get(d, 'targets.part1')}.", ""]
    lines += table(["step", "channels kept", "ORT b8 speed-up", "accuracy", "drop (points)", "stopped"], path)
    keys = ("eager@b1", "eager@b8", "onnxruntime@b1", "onnxruntime@b8")
    models = [[m, *[times(get(v, f"latency.{k}.speedup")) for k in keys], pct(get(v, "params.removed")),
               num(all((get(v, "checks", {}) or {}).values()))] for m, v in (get(d, "part2", {}) or {}).items()]
    lines += [f"Part 2, untrained torchvision models, target: {get(d, 'targets.part2')}.", ""]
    lines += table(["model", *keys, "params removed", "checks met"], models)
    final = get(d, "part1.final_step", {})
    return Body(lines, [("`dlopt prune --target-speedup 2` on ResNet-18", (f"{times(get(final, 'speedup'))} ORT b8, "
                         f"-{num(get(final, 'drop_points'), 2)} point"))])


def _widths(d: Any) -> list[str]:
    return table(["layer shape, width", "eager ms", "ORT ms", "ORT GMAC/s"], [
        [k, num(get(v, "eager_ms"), 3), num(get(v, "ort_ms"), 3), num(get(v, "ort_gmacs_per_s"), 3)]
        for k, v in (get(d, "rows", {}) or {}).items()])


def _cnn_b8(d: Any) -> list[str]:
    last = (rows_of(d, "runs") or [{}])[-1]
    by = get(last, "speedup_vs_unpruned", {}) or {}
    names = list((by.get("eager") or by.get("onnxruntime") or {}).keys())
    return table(["cnn widths", "eager b8", "ORT b8"], [[n, times(get(by, f"eager.{n}")),
                                                         times(get(by, f"onnxruntime.{n}"))] for n in names])


def _eager_b8(d: Any) -> list[str]:
    last = (rows_of(d, "runs") or [{}])[-1]
    rows = [[m, v, *[times(get(last, f"{m}.speedups.{b}.{v}.speedup")) for b in ("eager", "onnxruntime")]]
            for m in ("cnn", "resnet18") for v in (get(last, f"{m}.speedups.eager", {}) or {})]
    return table(["model", "widths", "eager b8", "ORT b8"], rows)


@section("prune_widths.json|prune_cnn_b8.json|prune_eager_b8.json", "Pruning: widths timed against each other",
         "benchmarks/prune_widths.py, prune_cnn_b8.py, prune_eager_b8.py", "docs/prune.md")
def prune_width_studies(files: list[Loaded]) -> Body:
    lines: list[str] = []
    for f in files:
        render = {"prune_widths.json": _widths, "prune_cnn_b8.json": _cnn_b8, "prune_eager_b8.json": _eager_b8}[f.name]
        lines += [f"`{f.name}`:", ""] + render(f.data)
    return Body(lines)


def _moved(moved: Any) -> str:
    """"9 layers, e.g. layer2.0.conv1 88 -> 80, ...": which widths the table moved away from the rule's."""
    items = [f"{k} {v}" for k, v in moved.items()] if isinstance(moved, dict) else []
    return f"{len(items)} layers, e.g. " + ", ".join(items[:2]) if len(items) > 2 else ", ".join(items) or "none"


@section("prune_width_table.json", "Pruning: the measured width table", "benchmarks/prune_width_table.py",
         "docs/prune.md")
def prune_width_table(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[get(r, "arch"), get(r, "runtime"), _moved(get(r, "moved_from_rule")),
             f"{pct(get(r, 'params_removed.rule'))} / {pct(get(r, 'params_removed.table'))}",
             (f"{num(get(r, 'prune_s.rule'), 3)} / {num(get(r, 'prune_s.table_cold_cache'), 3)} / "
             f"{num(get(r, 'prune_s.table_warm_cache'), 3)}")] for r in rows_of(d, "rows")]
    lines = table(["model", "runtime", "moved from the rule", "params removed (rule / table)",
                   "prune s (rule / cold table / warm table)"], rows)
    tv = [[m, *[times(get(v, f"speedup.{k}")) for k in ("default (table)", "rule widths")]]
          for m, v in (get(d, "torchvision_onnxruntime_b8", {}) or {}).items()]
    return Body(lines + table(["model (ORT b8, 96x96)", "table widths", "rule widths"], tv) if tv else lines)


@section("prune_zoo.json", "Pruning the zoo (structured, ratio 0.3)", "benchmarks/prune_zoo.py", "docs/prune.md")
def prune_zoo(files: list[Loaded]) -> Body:
    rows, structured = [], 0
    for r in rows_of(files[0].data, "rows"):
        structured += get(r, "structured") is True
        v = get(r, "variants.pruned", {})
        rows.append([get(r, "arch"), num(get(r, "structured")), pct(get(v, "params.removed")),
                     times(get(v, "speedup.eager@b1")), times(get(v, "speedup.onnxruntime@b1")), get(r, "why", "")])
    lines = table(["model", "structured", "params removed", "eager b1", "ORT b1", "why not"], rows)
    return Body(lines, [("Structured pruning across the zoo", f"{structured} of {len(rows)} architectures")])


@section("prune_unstructured.json", "Unstructured pruning (ratio 0.5)", "benchmarks/prune_zoo.py", "docs/prune.md")
def prune_unstructured(files: list[Loaded]) -> Body:
    rows = [[get(r, "arch"), pct(get(r, "sparsity.weights")), pct(get(r, "params.removed")),
             *[times(get(r, f"speedup.{k}")) for k in ("eager@b1", "eager@b8", "onnxruntime@b1", "onnxruntime@b8")]]
            for r in rows_of(files[0].data, "rows")]
    return Body(table(["model", "weights zeroed", "params removed", "eager b1", "eager b8", "ORT b1", "ORT b8"], rows))


@section("quantize_targets.json", "int8 against eager fp32", "benchmarks/quantize_targets.py", "docs/quantize.md")
def quantize_targets(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[get(t, "arch"), get(t, "recipe"), num(get(t, "bench_eager_ms_b1"), 3), num(get(t, "bench_int8_ms_b1"), 3),
             f"{times(get(t, 'speedup_vs_eager_b1'))} ({num(get(t, 'target_speedup'))}x)",
             f"{num(get(t, 'metric_before'), 3)} -> {num(get(t, 'metric_after'), 3)}",
             f"{mb(get(t, 'size_bytes.fp32'))} -> {mb(get(t, 'size_bytes.quantized'))}", num(get(t, "met"))]
            for t in rows_of(d, "targets")]
    lines = table(["model", "recipe", "eager fp32 ms", "int8 ms", "speed-up (target)", "test metric fp32 -> int8",
                   "size fp32 -> int8", "met"], rows)
    extra = [[get(d, f"{k}.measured"), num(get(d, f"{k}.bench_eager_ms_b1"), 3),
              num(get(d, f"{k}.onnxruntime_fp32_ms_b1"), 3),
              num(get(d, f"{k}.bench_int8_ms_b1"), 3), times(get(d, f"{k}.speedup_vs_eager_b1"))]
             for k in ("supplementary", "supplementary_earlier_machine") if isinstance(get(d, k), dict)]
    if extra:
        lines += ["ResNet-18 at 224x224, untrained (speed only), batch 1:", ""]
        lines += table(["measured on", "eager fp32 ms", "ORT fp32 ms", "ORT int8 ms", "over eager"], extra)
    ts = rows_of(d, "targets")
    best = max(ts, key=lambda t: get(t, "speedup_vs_eager_b1", 0) or 0, default={})
    met = sum(get(t, "met") is True for t in ts)
    return Body(lines, [("int8 (`dlopt quantize`) against eager fp32, batch 1",
                         (f"{get(best, 'arch')} {times(get(best, 'speedup_vs_eager_b1'))}; "
                         f"{met} of {len(ts)} targets met"))])


@section("quantize_zoo.json", "int8 across the zoo (tiny sizes)", "benchmarks/quantize_zoo.py", "docs/quantize.md")
def quantize_zoo(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[get(r, "arch"), get(r, "recipe"), get(r, "status"), num(get(r, "verified")),
             f"{num(get(r, 'metric_before'), 3)} -> {num(get(r, 'metric_after'), 3)}", num(get(r, "drop_points"), 3),
             times(get(r, "speedup_vs_eager_b1")), times(get(r, "size_bytes.ratio"))] for r in rows_of(d, "rows")]
    lines = table(["model", "recipe", "status", "verified", "metric fp32 -> int8", "drop (points)", "vs eager b1",
                   "smaller by"], rows)
    fig = f"{num(get(d, 'verified'))} of {num(get(d, 'total'))} pass every check"
    return Body(lines + [f"**{fig}**.", ""], [("int8 across the zoo (tiny sizes)", fig)])


@section("openvino_bar.json", "OpenVINO beside ONNX Runtime: int8 bar", "benchmarks/openvino_bar.py",
         "docs/quantize.md")
def openvino_bar(files: list[Loaded]) -> Body:
    d = files[0].data
    cells = rows_of(d, "cells")
    names: list[str] = []
    for c in cells:
        names += [n for n in (get(c, "rows", {}) or {}) if n not in names]
    heads = [f"t{get(c, 'threads')} b{get(c, 'batch')}" for c in cells]
    lines = ["Median ms per call, every variant interleaved in one process:", ""]
    lines += table(["variant", *heads, "top-1 agreement with eager fp32"],
                   [[n, *[num(get(c, ("rows", n, "median_ms")), 3) for c in cells],
                     num(get(d, ("agreement_vs_eager_fp32", n, "top1_agreement")), 3)] for n in names])
    verdict = [[get(v, "threads"), get(v, "batch"), num(get(v, "dlopt_ms"), 3), get(v, "best_by_hand"),
                num(get(v, "best_ms"), 3), num(get(v, "ratio"), 3), get(v, "verdict")]
               for v in rows_of(d, "verdict.cells")]
    lines += [cell(get(d, "verdict.rule", ""), 400), ""]
    lines += table(["threads", "batch", "dlopt auto ms", "best by hand", "its ms", "ratio", "verdict"], verdict)
    if get(d, "summary_two_runs.text"):
        lines += [cell(get(d, "summary_two_runs.text"), 2000), ""]
    fig = f"met in {num(get(d, 'summary_two_runs.cells_met'))} of {num(get(d, 'summary_two_runs.cells'))} cells" \
        if get(d, "summary_two_runs") else cell(get(d, "verdict.overall", "-"))
    return Body(lines, [("`quantize --method auto` at least as fast as int8 by hand (ResNet-18 224)", fig)])


@section("openvino_bf16.json", "OpenVINO bf16 against fp32 and NNCF int8: mobilenet_v2", "benchmarks/openvino_bf16.py",
         "docs/optimize.md")
def openvino_bf16(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = rows_of(d, "rows")
    names = list(get(rows[0], "timing", {}) or {}) if rows else []
    px = [f"{get(r, 'size')}px" for r in rows]

    def spread(r: Any, n: str) -> str:
        iqr = get(r, ("timing", n, "iqr_pct_rounds"), []) or []
        return f"{num(get(r, ('timing', n, 'p50_ms')), 3)} ({', '.join(num(i, 0) for i in iqr)})"

    body = [[n, *[spread(r, n) for r in rows], *[times(get(r, ("vs_nncf_int8", n))) for r in rows],
             *[f"{num(get(r, ('agreement', n, 'top1_agreement')), 3)} / {num(get(r, ('agreement', n, 'rel_l2')), 3)}"
               for r in rows]] for n in names]
    lines = ["Batch 1, one thread, every file interleaved in one process through dlopt's OpenVINO backend; ms: the "
             "median of the rounds' medians (each round's IQR in % of its median); vs NNCF int8: its ms over this "
             "one; agreement with eager fp32: top-1 / relative L2 error.", ""]
    lines += table(["file", *[f"{p} ms (IQR %)" for p in px], *[f"{p} vs NNCF int8" for p in px],
                    *[f"{p} agreement" for p in px]], body)
    kinds = [[n, ", ".join(f"{c} {k}" for k, c in sorted((get(rows[0], ("layers_by_precision", n), {}) or {}).items()))]
             for n in names] if rows else []
    if any(k[1] for k in kinds):
        lines += [f"Convolution and fully connected layers of the compiled graph ({px[0]}), by the precision they "
                  "run in:", ""] + table(["file", "layers"], kinds)
    return Body(lines)


@section("fp32_bar.json", "fp32: dlopt's backends against the fastest by hand", "benchmarks/fp32_bar.py",
         "docs/bench.md")
def fp32_bar(files: list[Loaded]) -> Body:
    d = files[0].data
    runs = [d, *rows_of(d, "earlier")]
    rows, within, total = [], 0, 0
    for run in runs:
        for c in rows_of(run, "cells"):
            within, total = within + (get(c, "within_10pct") is True), total + 1
            when = cell(str(get(run, "created", ""))[:16].replace("T", " "))
            rows.append([when, get(c, "threads"), get(c, "batch"), get(c, "dlopt_best"),
                         num(get(c, "dlopt_best_ms"), 4), get(c, "fastest_by_hand"),
                         num(get(c, "fastest_by_hand_ms"), 4),
                         num(get(c, "ratio"), 3), num(get(c, "within_10pct")), f"{num(get(c, 'pct_peak'), 3)}%"])
    lines = table(["run", "threads", "batch", "dlopt's best", "ms", "fastest by hand", "ms", "ratio", "within 10%",
                   "% of fp32 peak"], rows)
    lines += [f"Latest run: {cell(get(d, 'summary', ''), 400)}", ""]
    fig = f"within 10% of the fastest in {within} of {total} cells ({len(runs)} runs)"
    return Body(lines, [("dlopt's best fp32 backend against the fastest by hand (ResNet-18 224)", fig)])


def _range(ratios: Any) -> str:
    vals = [v for v in (ratios or {}).values() if isinstance(v, (int, float))] if isinstance(ratios, dict) else []
    if not vals:
        return "-"
    near = sum(abs(v - 1) <= 0.15 for v in vals)
    return f"{min(vals):.2f}x - {max(vals):.2f}x ({near} of {len(vals)} within 15%)"


@section("pipeline-vs-stages-*.json", "The pipeline against the same stages by hand",
         "benchmarks/pipeline_vs_stages.py", "docs/pipeline.md")
def pipeline_vs_stages(files: list[Loaded]) -> Body:
    rows, equal = [], []
    for f in files:
        d = f.data
        metrics = get(d, "metrics.pipeline", {}) or {}
        equal.append(get(d, "metrics.equal") is True)
        rows.append([get(d, "arch"), num(get(d, "pipeline_seconds"), 3),
                     ", ".join(f"{k} {num(v, 4)}" for k, v in metrics.items() if not isinstance(v, dict)),
                     num(get(d, "metrics.equal")), _range(get(d, "latency_ms.ratio_pipeline_over_hand")),
                     _range(get(d, "speedup_vs_own_eager.ratio_pipeline_over_hand"))])
    lines = table(["model", "pipeline s", "pipeline metrics", "same metrics by hand",
                   "raw latency, pipeline / by hand", "speed-up over own eager, pipeline / by hand"], rows)
    fig = "metrics identical" if equal and all(equal) else "metrics differ"
    return Body(lines, [("`dlopt pipeline` against the stages run by hand", f"{fig} ({len(files)} models)")])


@section("memory_peak.json", "Peak memory at 224x224", "benchmarks/memory_peak.py", "docs/data.md")
def memory_peak(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[get(r, "label"), get(r, "arch"), get(r, "command"), num(get(r, "rss_mb"), 5), num(get(r, "rc")),
             num(get(r, "under_limit"))] for r in rows_of(d, "rows")]
    lines = [(f"Limit: {num(get(d, 'limit_mb'))} MB. Rows are in the order they were measured; `before` is the code "
             "before the memory work, a label ending in `limit256` a run with 256 calibration samples."), ""]
    lines += table(["label", "model", "command", "peak MB", "exit code", "under the limit"], rows)
    latest: dict[tuple, dict] = {}  # the last measurement of each model, command and sample count
    for r in rows_of(d, "rows"):
        if get(r, "label") != "before":
            latest[(get(r, "arch"), get(r, "command"), str(get(r, "label", "")).endswith("limit256"))] = r
    under = sum(get(r, "under_limit") is True for r in latest.values())
    top = max(latest.values(), key=lambda r: get(r, "rss_mb", 0) or 0, default={})
    lines += [(f"Latest measurement of each model, command and sample count: {under} of {len(latest)} under the "
              f"limit; the largest {num(get(top, 'rss_mb'), 5)} MB ({get(top, 'arch')} {get(top, 'command')})."), ""]
    return Body(lines, [("Peak memory of one `dlopt` process at 224x224",
                         f"{under} of {len(latest)} commands under {num(get(d, 'limit_mb'))} MB (latest of each)")])
