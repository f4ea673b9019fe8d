"""Sections of docs/results.md for training, export, latency, start-up and reliability results.

Each function reads the files its glob claims (parsed JSON, shape not promised: look-ups go through `get`) and
returns the section's Markdown and its headline rows for the README."""

from __future__ import annotations

from results_kit import Body, Loaded, get, num, pct, rows_of, section, table, times


@section("train-*.json", "Training the zoo", "benchmarks/train_zoo.py", "docs/train.md")
def train_zoo(files: list[Loaded]) -> Body:
    rows, met, targets = [], 0, 0
    for f in files:
        d = f.data if isinstance(f.data, dict) else {}
        has_target = d.get("target") is not None
        targets += has_target
        met += has_target and d.get("met") is True
        rows.append([get(d, "name", f.name), get(d, "data"), get(d, "metric"), num(get(d, "value")),
                     get(d, "target", "none"), num(get(d, "met")) if has_target else "n/a",
                     f"{num(get(d, 'best_epoch'))} / {num(get(d, 'epochs_run'))}", num(get(d, "wall_s")),
                     num(get(d, "under_time_limit"))])
    lines = table(["architecture", "data", "metric", "test value", "target", "met", "best / run epochs",
                   "wall time (s)", "< 10 min"], rows)
    lines += [f"Targets met: **{met} of {targets}** rows with a target ({len(files)} files).", ""]
    return Body(lines, [("Training every architecture with its defaults", f"{met} of {targets} targets met")])


@section("export-matrix.json", "Export and verification of the zoo", "benchmarks/export_matrix.py", "docs/export.md")
def export_matrix(files: list[Loaded]) -> Body:
    rows, passed, total, worst = [], 0, 0, (0.0, "-")
    for r in rows_of(files[0].data, "results"):
        cells = []
        for fmt in ("onnx", "torchscript", "pt2"):
            f = get(r, f"formats.{fmt}", {})
            ok = get(f, "passed") is True
            passed, total = passed + ok, total + bool(f)
            need = get(f, "needed_atol")
            if isinstance(need, (int, float)) and need > worst[0]:
                worst = (need, f"{get(r, 'arch')} {fmt}")
            verdict = "pass" if ok else "**fail**"
            cells.append(f"{verdict} ({num(get(f, 'seconds'), 3)} s, {num(need, 2)})" if f else "-")
        rows.append([get(r, "arch"), *cells])
    lines = table(["architecture", "ONNX (export s, needed atol)", "TorchScript", ".pt2"], rows)
    lines += [f"Verified: **{passed} of {total}** artifacts; largest needed atol {num(worst[0], 2)} ({worst[1]}).", ""]
    return Body(lines, [("Export + verification, zoo at default sizes", f"{passed} of {total} artifacts pass")])


@section("tv_matrix.json|tv_matrix_int8.json", "torchvision models at 224x224, every stage", "benchmarks/tv_matrix.py",
         "docs/export.md")  # not tv_matrix_mixed.json: that one has its own section
def tv_matrix(files: list[Loaded]) -> Body:
    by_name = {f.name: f.data for f in files}
    matrix, int8 = by_name.get("tv_matrix.json"), by_name.get("tv_matrix_int8.json")
    requant = {get(r, "model"): get(r, "stages.quantize") for r in rows_of(int8, "results")}
    stages: list[str] = []
    for r in rows_of(matrix, "results"):
        stages += [s for s in get(r, "stages", {}) if s not in stages]
    rows, passes, ran = [], dict.fromkeys(stages, 0), dict.fromkeys(stages, 0)
    for r in rows_of(matrix, "results"):
        cells = []
        for s in stages:
            st = get(r, f"stages.{s}")
            if s == "quantize" and get(r, "model") in requant:  # the int8 rerun replaces the matrix's first try
                st = requant[get(r, "model")]
            ok = get(st, "status") == "pass"
            passes[s], ran[s] = passes[s] + ok, ran[s] + (st is not None)
            cells.append("-" if st is None else f"{'pass' if ok else '**' + str(get(st, 'status')) + '**'} "
                         f"({num(get(st, 'seconds'), 3)} s)")
        rows.append([get(r, "model"), *cells])
    n = len(rows)
    lines = table(["model", *stages], rows)
    lines += ["Passed per stage (of the models that reached it): "
              + ", ".join(f"{s} {passes[s]}/{ran[s]}" for s in stages) + "."]
    if requant:
        lines += ["The quantize column is `tv_matrix_int8.json` (the int8 rerun, one model at a time)."]
    lines.append("")
    verify = [s for s in stages if s == "export" or s.startswith("verify")]
    fig = f"export + verify {min((passes[s] for s in verify), default=0)}/{n}"
    fig += f", prune {passes.get('prune', 0)}/{n}, int8 {passes.get('quantize', 0)}/{n}"
    return Body(lines, [("torchvision models at 224x224, every stage", fig)])


@section("tv_tolerance.json", "fp32 error against float64", "benchmarks/tv_tolerance.py", "docs/export.md")
def tv_tolerance(files: list[Loaded]) -> Body:
    rows = []
    for r in rows_of(files[0].data, "results"):
        for name, v in r.items():
            if isinstance(v, dict):
                rows.append([get(r, "model"), name.replace("_", " "), num(get(v, "max_abs"), 2),
                             num(get(v, "err_rms_over_ref_rms"), 2), num(get(v, "needed_atol_old"), 2)])
    return Body(table(["model", "comparison", "max abs error", "error RMS / output RMS",
                       "atol the elementwise bound needed"], rows))


def _bench_rows(data: object) -> list[list[object]]:
    return [[get(r, "backend"), get(r, "batch_size"), num(get(r, "stats.median_ms"), 4), num(get(r, "stats.p90_ms"), 4),
             num(get(r, "stats.p99_ms"), 4), pct(get(r, "stats.iqr_ratio")), times(get(r, "speedup_vs_eager")),
             num((get(r, "setup_s") or 0) + (get(r, "first_call_s") or 0), 2)] for r in rows_of(data, "rows")]


@section("bench-resnet18-*.json", "Latency: ResNet-18 at 224x224", "benchmarks/bench_resnet18.py", "docs/bench.md")
def bench_resnet18(files: list[Loaded]) -> Body:
    lines, headline = [], []
    for f in sorted(files, key=lambda f: get(f.data, "threads", 0) or 0):
        lines += [f"`{f.name}`, {get(f.data, 'threads')} thread(s):", ""]
        lines += table(["backend", "batch", "median ms", "p90", "p99", "IQR", "vs eager", "setup + 1st call s"],
                       _bench_rows(f.data))
        b1 = [r for r in rows_of(f.data, "rows") if get(r, "batch_size") == 1 and get(r, "backend") != "eager"]
        best = max(b1, key=lambda r: get(r, "speedup_vs_eager", 0) or 0, default=None)
        if best and not headline:
            headline = [("ResNet-18 224x224 latency, batch 1", (f"{get(best, 'backend')} "
                         f"{times(get(best, 'speedup_vs_eager'))} eager ({get(f.data, 'threads')} thread)"))]
    return Body(lines, headline)


@section("bench-zoo-*.json", "Latency: the zoo, batch 1 and 8", "benchmarks/bench_zoo.py", "docs/bench.md")
def bench_zoo(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = []
    for arch, entry in (get(d, "passes.0", {}) or {}).items():
        by = {(get(r, "backend"), get(r, "batch_size")): r for r in rows_of(entry, "rows")}
        for batch in sorted({b for _, b in by if isinstance(b, int)}):
            eager = by.get(("eager", batch))
            rows.append([arch, batch, num(get(eager, "stats.median_ms"), 4),
                         *[times(get(by.get((b, batch)), "speedup_vs_eager")) for b in ("torchscript", "onnxruntime")]])
    lines = table(["model", "batch", "eager ms", "TorchScript vs eager", "ONNX Runtime vs eager"], rows)
    spread = [[k.replace("_", " "), num(get(v, "rows_compared")), f"{num(get(v, 'median_pct'), 3)}%",
               f"{num(get(v, 'p90_pct'), 3)}%", f"{num(get(v, 'max_pct'), 4)}%", num(get(v, "within_10pct"))]
              for k, v in (get(d, "spread_summary", {}) or {}).items()]
    lines += ["Run-to-run spread between the two passes:", ""]
    lines += table(["figure", "rows compared", "median move", "p90", "worst", "within 10%"], spread)
    return Body(lines)


@section("bench-vs-timer-*.json", "dlopt's medians against torch.utils.benchmark", "benchmarks/bench_vs_timer.py",
         "docs/bench.md")
def bench_vs_timer(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[get(r, "case"), get(r, "variant"), num(get(r, "dlopt_median_ms"), 4),
             num(get(r, "timer_per_call_median_ms"), 4), f"{num(get(r, 'diff_pct'), 3)}%"] for r in rows_of(d, "rows")]
    lines = table(["case", "backend", "dlopt median ms", "Timer per-call median ms", "diff"], rows)
    fig = f"{num(get(d, 'within_10pct'))} of {num(get(d, 'cases'))} within 10%"
    lines += [(f"Median to median: **{fig}**; dlopt's mean against Timer's `blocked_autorange`: "
              f"{num(get(d, 'mean_vs_blocked_within_10pct'))} of {num(get(d, 'cases'))} within 10%."), ""]
    return Body(lines, [("dlopt's medians against torch.utils.benchmark", fig)])


@section("bench-overhead-*.json", "Harness overhead", "benchmarks/bench_overhead.py", "docs/bench.md")
def bench_overhead(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [["extra ns per call (no-op, from medians)", num(get(d, "noop.extra_ns_from_medians"))],
            ["bare loop ns per call (no-op)", num(get(d, "noop.bare_ns_median"))],
            ["share of a 0.1 ms model", f"{num(get(d, ('noop_overhead_pct_of_0.1ms',)), 3)}%"],
            [f"share of a {num(get(d, 'model.ms_per_call'), 3)} ms MLP (medians / minima)",
             (f"{num(get(d, 'model.overhead_pct_from_medians'), 3)}% / "
             f"{num(get(d, 'model.overhead_pct_from_minima'), 3)}%")],
            ["bookkeeping outside timed calls", f"{num(get(d, 'bookkeeping.outside_timed_pct'), 3)}%"]]
    share = num(get(d, ("noop_overhead_pct_of_0.1ms",)), 2)  # the key holds a dot
    fig = f"{num(get(d, 'noop.extra_ns_from_medians'), 3)} ns per call ({share}% of 0.1 ms)"
    return Body(table(["figure", "value"], rows), [("Benchmark harness overhead", fig)])


@section("startup.json", "CLI start-up time", "benchmarks/startup.py", "docs/usage.md")
def startup(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[f"`{cmd}`", f"{num(get(v, 'median_s'), 3)} s", f"{num(get(v, 'min_s'), 3)}-{num(get(v, 'max_s'), 3)} s",
             num(get(v, "n"))] for cmd, v in (get(d, "results", {}) or {}).items()]
    lines = table(["command", "median", "range", "runs"], rows)
    lines += [f"`dlopt --help` takes {num(get(d, 'help_over_import_torch'), 3)} of `import torch`'s time.", ""]
    help_s, torch_s = get(d, ("results", "dlopt --help", "median_s")), None
    for cmd, v in (get(d, "results", {}) or {}).items():
        torch_s = get(v, "median_s") if "import torch" in cmd else torch_s
    return Body(lines, [("`dlopt --help` start-up", f"{num(help_s, 3)} s (import torch alone: {num(torch_s, 3)} s)")])


@section("kill_resume.json", "Training killed and resumed", "benchmarks/kill_resume.py", "docs/reliability.md")
def kill_resume(files: list[Loaded]) -> Body:
    d = files[0].data
    keys = ["kills", "random_kills", "mid_write_kills", "resumes_succeeded", "identical", "files_corrupted",
            "kills_with_temp_files_left", "temp_files_after_resume", "kills_with_checkpoint_record_out_of_step",
            "wall_s"]
    lines = [f"Command: `{get(d, 'command')}`.", ""] + table(["figure", "value"], [[k.replace("_", " "), num(get(d, k))]
                                                                                  for k in keys])
    fig = f"{num(get(d, 'identical'))} of {num(get(d, 'kills'))} resumes identical bit for bit, " \
          f"{num(get(d, 'files_corrupted'))} files corrupted"
    return Body(lines, [("`dlopt train` SIGKILLed, then resumed", fig)])


@section("kill_stages.json", "Every stage killed at random moments", "benchmarks/kill_stages.py", "docs/reliability.md")
def kill_stages(files: list[Loaded]) -> Body:
    d = files[0].data
    keys = ["kills", "after_work", "ok", "stale_measured", "files_lost", "manifests_invalid", "reruns_failed", "wall_s"]
    rows = [[name, *[num(get(v, k)) for k in keys]] for name, v in (get(d, "by_stage", {}) or {}).items()]
    rows.append(["**all**", *[num(get(d, k)) for k in keys]])
    lines = table(["stage and signal", "kills", "after the work", "ok", "stale files used", "finished files lost",
                   "manifests invalid", "reruns failed", "wall s"], rows)
    fig = f"{num(get(d, 'ok'))} of {num(get(d, 'kills'))} recovered; {num(get(d, 'stale_measured'))} stale files " \
          f"used, {num(get(d, 'files_lost'))} finished files lost"
    return Body(lines, [("Every stage SIGKILLed / SIGINTed at random moments", fig)])


@section("render_report.json", "The report in a real browser", "benchmarks/render_report.py", "docs/pipeline.md")
def render_report(files: list[Loaded]) -> Body:
    d = files[0].data
    rows = [[k.replace("_", " "), num(v)] for k, v in (get(d, "checks", {}) or {}).items()]
    rows += [["external fetches", num(len(get(d, "external_fetches", []) or []))], ["browser", num(get(d, "browser"))]]
    verdict = "passed" if get(d, "passed") is True else "failed"
    return Body(table(["check", "result"], rows), [("Report rendered in headless Chromium", verdict)])
