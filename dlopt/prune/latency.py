"""Latency before/after pruning through the bench stage: the run's model and the pruned checkpoint, each
eager and in ONNX Runtime, timed interleaved in one `dlopt.bench` call (same machine state for both); and, when
asked and OpenVINO can run here, their ONNX files on OpenVINO's CPU plugin, prepared by bench's own openvino backend
and interleaved with bench's round-robin loop (`dlopt bench` runs a run's .onnx files on ONNX Runtime only, so these
rows are assembled here from bench's parts).

`quick_speedup` is what prune reports by default (no --bench): the unpruned and the pruned model at batch 1 on one
thread, on ONNX Runtime where it runs (else eager), timed interleaved by bench's round-robin loop for a second or
so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.contract.target import Target
from dlopt.core.runs import Run
from dlopt.models.spec import ArchSpec, Backend, ExportFormat
from dlopt.runtime.formats import file_name

ONNX = file_name(ExportFormat.ONNX)  # model.onnx: what is timed on ONNX Runtime and OpenVINO
MIN_CALLS = 50  # on a shared machine, 10 calls can "converge" inside a load spike; 50 spans several round-robin blocks
QUICK_BUDGET_S = 1.0  # the default speed-up's timing: before and after interleaved for at most this long
QUICK_MIN_CALLS = 20  # ...and judged converged on no fewer calls each (tiny models converge in milliseconds)
QUICK_BLOCK_S = 0.02  # round-robin blocks this long: about 50 alternations in the second


def _export(model: Any, spec: ArchSpec, cfg: Any, out_dir: Path) -> str | None:
    """Export to out_dir/model.onnx (verified against the eager model); returns why not, or None."""
    from dlopt.export import ExportConfig, export_model

    if (out_dir / ONNX).is_file():
        return None
    res = export_model(model, spec, cfg, out_dir, ExportConfig(formats=(ExportFormat.ONNX,), verify=True))
    if not res.passed:
        why = res.failures or res.to_dict()["verification"]
        return f"ONNX export of {out_dir.name} failed or did not verify: {why}"
    return None


def _export_variant(run: Run, spec: ArchSpec, cfg: Any, name: str) -> str | None:
    """Export `<run>/<name>/model.json` to ONNX in a stage of its own (`<name>-onnx`): bench only times files a
    finished stage recorded."""
    from dlopt.models.checkpoint import load_checkpoint

    record = run.path / name / "model.json"
    if (run.path / name / ONNX).is_file():
        return None
    with run.stage(f"{name}-onnx", {"export": {"formats": ["onnx"], "verify": True}}, inputs=[record]) as rec:
        staged = rec.dir(name)
        problem = _export(load_checkpoint(record).model, spec, cfg, staged)
        rec.outputs += [p for p in staged.iterdir() if p.is_file()]
    return problem


def _median(rows: list[dict], variant: str, batch: int) -> float | None:
    row = next((r for r in rows if r["variant"] == variant and r["batch_size"] == batch and r.get("stats")), None)
    return None if row is None else row["stats"]["median_ms"]


def measure_latency(run: Run, spec: ArchSpec, target: Target, names: tuple[str, ...], budget_s: float,
                    batch_sizes: tuple[int, ...] | None = None, threads: int = 1, openvino: bool = False
                    ) -> dict[str, Any]:
    """Median ms of the run's model and of each pruned checkpoint `<run>/<name>/model.json`, eager and in ONNX
    Runtime, per batch size (default: bench's), with speed-ups (before / after); all timed interleaved in one bench
    call. With `openvino`, their ONNX files on OpenVINO too (`openvino@bB` rows, timed after, interleaved among
    themselves)."""
    from dlopt.bench.config import Backend, BenchConfig
    from dlopt.bench.runner import bench
    from dlopt.bench.variants import EXPORT_DIR

    batch_sizes = batch_sizes or BenchConfig.batch_sizes

    problems = [_export(target.model, spec, target.config, run.path / EXPORT_DIR)]
    problems += [_export_variant(run, spec, target.config, n) for n in names]
    bcfg = BenchConfig(backends=(Backend.EAGER, Backend.ONNXRUNTIME), batch_sizes=batch_sizes, threads=threads,
                       budget_s=budget_s, min_calls=MIN_CALLS)
    outcome = bench(Target.of_run(run), bcfg)
    rows = outcome.result["rows"]
    tables: dict[str, Any] = {}
    for name in names:
        eager, ort = str(Backend.EAGER), str(Backend.ONNXRUNTIME)  # bench's row names: backend[:variant file]
        pairs = {eager: (eager, f"{eager}:{name}/model"), ort: (ort, f"{ort}:{name}/{ONNX}")}
        table: dict[str, Any] = {}
        for backend, (base, pruned) in pairs.items():
            for b in batch_sizes:
                before, after = _median(rows, base, b), _median(rows, pruned, b)
                table[f"{backend}@b{b}"] = {"before_ms": before, "after_ms": after,
                                            "speedup": round(before / after, 3) if before and after else None}
        tables[name] = table
    if openvino:
        ov_rows, ov_problem = _openvino_rows(run, spec, target, names, budget_s, batch_sizes, threads)
        for name in names:
            tables[name].update(ov_rows.get(name, {}))
        problems.append(ov_problem)
    return {"threads": outcome.result["threads"], "loadavg": outcome.result["loadavg"],
            "bench_json": outcome.report_path.name,  # in the run, beside the report (paths in run files are run-relative)
            "budget_s": budget_s, "rows_by_variant": tables, "problems": [p for p in problems if p]}


def _openvino_rows(run: Run, spec: ArchSpec, target: Target, names: tuple[str, ...], budget_s: float,
                   batch_sizes: tuple[int, ...], threads: int) -> tuple[dict[str, dict[str, Any]], str | None]:
    """{name: {"openvino@bB": before/after ms and speed-up}}: the run's ONNX export and each pruned ONNX file on
    bench's openvino backend (CPU, fp32, `threads` threads), all of them interleaved per batch size (bench's
    round-robin loop, the same budget and min_calls); ({}, why) when OpenVINO cannot run here or a file will not
    compile."""
    from dlopt.bench.config import Device
    from dlopt.bench.variants import EXPORT_DIR
    from dlopt.runtime.formats import why_not_here

    if (why := why_not_here(Backend.OPENVINO, Device.CPU)) is not None:
        return {}, f"{why}: no OpenVINO rows"
    files = {"": run.path / EXPORT_DIR / ONNX, **{n: run.path / n / ONNX for n in names}}
    medians: dict[int, dict[str, float]] = {}
    for b in batch_sizes:
        try:
            medians[b] = _interleaved(files, spec, target, b, budget_s, threads)
        except _NotRun as exc:
            return {}, f"OpenVINO could not run {exc.path.relative_to(run.path)}: {exc.why}"
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        for b, ms in medians.items():
            before, after = round(ms[""], 5), round(ms[name], 5)
            out.setdefault(name, {})[f"openvino@b{b}"] = {"before_ms": before, "after_ms": after,
                                                           "speedup": round(before / after, 3)}
    return out, None


class _NotRun(Exception):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(why)
        self.path, self.why = path, why


def _interleaved(files: dict[str, Path], spec: ArchSpec, target: Target, batch: int, budget_s: float,
                 threads: int) -> dict[str, float]:
    """Median ms per file at `batch`: each prepared by bench's openvino backend, warmed, then timed interleaved."""
    from dlopt.bench.backends import Variant, prepare
    from dlopt.bench.config import BenchConfig, Device
    from dlopt.bench.stats import summarize
    from dlopt.bench.timing import round_robin, warm_up
    from dlopt.models.registry import make_inputs

    cfg = BenchConfig(budget_s=budget_s, min_calls=MIN_CALLS, threads=threads)
    inputs = make_inputs(spec, target.config, batch, seed=0)
    fns, est = {}, {}
    for key, path in files.items():
        try:
            fns[key] = prepare(Variant(f"openvino:{path.name}", Backend.OPENVINO, path=path), inputs, Device.CPU,
                               threads).fn
            est[key] = warm_up(fns[key], cfg.warmup_calls).estimate_s
        except Exception as exc:  # noqa: BLE001 -- OpenVINO raises its own types; the other rows still count
            raise _NotRun(path, f"{type(exc).__name__}: {str(exc)[:160]}") from None
    series = round_robin(fns, est, cfg)
    return {k: summarize(s.times, cfg.percentiles).median_ms for k, s in series.items()}


def slower_notes(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The note a pruned model slower than the original gets: it is never slower without saying so."""
    slower = [f"{key} {row['speedup']:.2f}x" for key, row in rows.items()
              if row.get("speedup") is not None and row["speedup"] < 1]
    return [(f"the pruned model is SLOWER than the original in {', '.join(slower)}; try the default widths (no "
             "--round-to / --exact) or a lower ratio")] if slower else []


def quick_speedup(before: Any, after: Any, spec: ArchSpec, model_cfg: Any,
                  budget_s: float | None = None) -> dict[str, Any]:
    """The report's `latency` by default: `before` and `after` (whole models; their entry networks are timed) at
    batch 1 on one thread, on ONNX Runtime (legacy-exported to a temporary folder, not kept) where it runs and both
    export, else eager; timed interleaved. Rows {"<runtime>@b1": before/after ms, speed-up}, and how it was done."""
    import tempfile

    import torch

    from dlopt.bench.config import BenchConfig
    from dlopt.bench.stats import summarize
    from dlopt.bench.timing import MEDIAN_CALLS, round_robin, warm_up
    from dlopt.models.registry import make_inputs

    budget_s = budget_s or QUICK_BUDGET_S
    inputs = make_inputs(spec, model_cfg, 1, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="dlopt-prune-speedup-") as tmp:
            fns, runtime, problem = _ort_calls({"before": before, "after": after}, spec, model_cfg, inputs, Path(tmp))
            if fns is None:
                fns, runtime = {k: _eager_call(m, spec, inputs) for k, m in (("before", before), ("after", after))}, \
                    str(Backend.EAGER)
            with torch.inference_mode():
                est = {k: warm_up(fn, 3).estimate_s for k, fn in fns.items()}
                # a model of seconds per call still gets a median of MEDIAN_CALLS each: the budget grows to fit them
                # (with the other's blocks between them, and room for a loaded machine)
                budget_s = max(budget_s, 2 * MEDIAN_CALLS * (sum(est.values()) + QUICK_BLOCK_S * len(est)))
                series = round_robin(fns, est, BenchConfig(budget_s=budget_s, min_calls=QUICK_MIN_CALLS,
                                                           block_s=QUICK_BLOCK_S), keep_budget=True)
    finally:
        torch.set_num_threads(threads)
    ms = {k: summarize(s.times).median_ms if s.times else None for k, s in series.items()}
    problems = [problem] if problem else []
    if None in ms.values():  # its calls ran slower than their warm-up said: no timing rather than a guess
        problems.append("budget spent before a timed call of both models: no speed-up measured")
    row = {"before_ms": ms["before"] and round(ms["before"], 5), "after_ms": ms["after"] and round(ms["after"], 5),
           "speedup": round(ms["before"] / ms["after"], 3) if ms["before"] and ms["after"] else None}
    return {"method": f"on {runtime} at batch 1, one thread, before and after interleaved "
                      f"({len(series['before'].times)} and {len(series['after'].times)} calls in at most "
                      f"{budget_s:.3g} s)",
            "threads": 1, "budget_s": round(budget_s, 3), "calls": {k: len(s.times) for k, s in series.items()},
            "rows": {f"{runtime}@b1": row}, "problems": problems}


def _eager_call(model: Any, spec: ArchSpec, inputs: tuple[Any, ...]) -> Any:
    from dlopt.models.registry import entry_module

    net = entry_module(model, spec).eval()
    return lambda: net(*inputs)


def _ort_calls(models: dict[str, Any], spec: ArchSpec, model_cfg: Any, inputs: tuple[Any, ...], folder: Path
               ) -> tuple[dict[str, Any] | None, str, str | None]:
    """ONNX Runtime calls of each model (one thread), or (None, "", why not): not installed, or an export failed."""
    import warnings

    from dlopt.bench.config import Device
    from dlopt.export import ExportConfig, export_model
    from dlopt.runtime.formats import why_not_here

    if (why := why_not_here(Backend.ONNXRUNTIME, Device.CPU)) is not None:
        return None, "", f"timed in eager: ONNX Runtime cannot run here ({why})"
    from dlopt.runtime.ort import ort_session

    fns = {}
    for key, model in models.items():
        with warnings.catch_warnings():  # the exporter's cautions are about a file only timed, never shipped
            warnings.simplefilter("ignore")
            res = export_model(model, spec, model_cfg, folder / key, ExportConfig(formats=(ExportFormat.ONNX,),
                                                                                  exporter="legacy", verify=False))
        if ExportFormat.ONNX not in res.artifacts:
            why = res.failures.get(ExportFormat.ONNX) or "; ".join(res.notes) or "no ONNX file was made"
            return None, "", f"timed in eager: the {key} model did not export to ONNX ({str(why).splitlines()[0][:200]})"
        session = ort_session(res.artifacts[ExportFormat.ONNX], threads=1, inter_threads=1)
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=False)}
        fns[key] = lambda session=session, feed=feed: session.run(None, feed)
    return fns, str(Backend.ONNXRUNTIME), None
