"""`run_prune`: the prune stage on a run's model (a Target its caller resolved). Measure, prune, fine-tune, save
`<run>/<name>/model.json + model.safetensors` (with the pruned structure), write `prune_report.json`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.contract.stage import Outcome, Section, register_stage
from dlopt.contract.target import Check, Target, TargetOptions, as_target
from dlopt.core.errors import ConfigError
from dlopt.core.results import PruneReport, write_result
from dlopt.core.warn import count
from dlopt.prune import tuning
from dlopt.prune.config import PruneConfig

REPORT = "prune_report.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PruneOutcome(Outcome):
    record: Path  # <run>/<name>/model.json: load_checkpoint(record), or TargetOptions(variant="<name>/model.json")
    report: PruneReport  # what prune_report.json (report_path) holds

    @property
    def result(self) -> dict[str, Any]:
        return self.report.to_json()

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "record": str(self.record), **self.result}


def prune_check(cfg: PruneConfig) -> Check:
    """The support check `resolve_target` runs before a run directory is created: the spec allows this method."""
    def check(spec: Any) -> None:
        from dlopt.prune.model import check_supported

        check_supported(spec, cfg)

    return check


def run_prune(target: Target | TargetOptions, cfg: PruneConfig, progress: Progress | None = None,
              replace: bool = False) -> PruneOutcome:
    """Prune the target's model into `<run>/<cfg.name>/`; returns the outcome (also written as prune_report.json).

    Written in a staging directory and moved in whole when done: a failed or killed prune leaves no pruned
    model behind. `replace` swaps out an existing one (the pipeline's rerun); otherwise an existing one is kept."""
    import torch

    say = progress or (lambda _msg: None)
    target = as_target(target, prune_check(cfg))  # the caller resolved it with prune_check (or passes options)
    run, spec = target.run, target.spec
    final_dir = run.file(cfg.name)
    if (final_dir / "model.json").exists() and not replace:
        raise ConfigError(f"{run.path} already has a pruned model in {cfg.name}/; pass --name with another name "
                          "(e.g. pruned2) to keep both")
    variant = (final_dir.name,)  # replaced whole on request; otherwise made only if no other process made it first
    with run.stage(cfg.name, {"prune": cfg.to_json()}, inputs=[target.checkpoint], owns=variant if replace else (),
                   fresh=() if replace else variant) as rec:
        out_dir = rec.dir(final_dir.name)
        report = _prune_and_save(target, cfg, out_dir, say, torch)
        where = str(final_dir.relative_to(run.path) / "model.json")  # where the record lands, not where it is staged
        report = dataclasses.replace(report, checkpoint=where)
        if cfg.bench:  # the ONNX file the latency measurement times, made (and verified) with the stage
            why = _export_onnx(out_dir, spec, target.config)
            report = dataclasses.replace(report, notes=(*report.notes, why)) if why else report
        elif cfg.speedup and not cfg.target_speedup:  # the default: a second of timing (a target measured its own)
            report = _quick_speedup(target, out_dir, report, say)
        write_result(report, out_dir / REPORT)
        rec.outputs += [p for p in out_dir.iterdir() if p.is_file()]
        rec.metrics.update(_summary(report))
    if cfg.bench:  # needs the pruned model in place; its own stage, so the prune stands if timing is killed
        with run.stage(f"{cfg.name}-latency", {"budget_s": cfg.bench_budget_s},
                       inputs=[final_dir / "model.json"]) as lat:
            report = _bench(target, cfg, lat.dir(final_dir.name), report, say)
            lat.outputs.append(lat.path(final_dir.name, REPORT))
            lat.metrics.update(_summary(report))
    return PruneOutcome(final_dir / "model.json", report, stage=cfg.name, run_dir=run.path,
                        report_path=final_dir / REPORT, summary=_summary(report))


def _export_onnx(out_dir: Path, spec: Any, model_cfg: Any) -> str | None:
    """Export and verify the pruned model's ONNX file; the report's note when that failed (the file is removed)."""
    from dlopt.export import ExportConfig, export_model
    from dlopt.models.checkpoint import load_checkpoint
    from dlopt.models.spec import ExportFormat

    model = load_checkpoint(out_dir / "model.json").model
    res = export_model(model, spec, model_cfg, out_dir, ExportConfig(formats=(ExportFormat.ONNX,), verify=True))
    if res.passed:
        return None
    bad = [f"{fmt}: {str(err).splitlines()[0][:200]}" for fmt, err in res.failures.items()]
    bad += [f"{fmt}: {' / '.join(f[1] + ' ' + f[2] for f in rep.failures()[:1])[:200]}"
            for fmt, rep in res.verification.items() if not rep.passed]
    why = "; ".join(bad) or "its verification failed"
    for p in res.artifacts.values():
        Path(p).unlink(missing_ok=True)
    return f"ONNX export of the pruned model failed or did not verify: {why}"


def _bench(target: Target, cfg: PruneConfig, out_dir: Path, report: PruneReport, say: Progress) -> PruneReport:
    """Latency before/after through dlopt.bench: the report with `latency`, rewritten."""
    from dlopt.prune.latency import measure_latency, slower_notes

    say("benchmarking before/after (eager and ONNX Runtime)")
    latency = measure_latency(target.run, target.spec, target, (cfg.name,), cfg.bench_budget_s, openvino=True)
    latency = {**latency, "rows": latency.pop("rows_by_variant")[cfg.name]}
    report = dataclasses.replace(report, latency=latency, notes=(*report.notes, *slower_notes(latency["rows"])))
    write_result(report, out_dir / REPORT)
    return report


def _quick_speedup(target: Target, out_dir: Path, report: PruneReport, say: Progress) -> PruneReport:
    """The default `latency`: the saved pruned model against the original, batch 1, one thread (latency.py)."""
    from dlopt.models.checkpoint import load_checkpoint
    from dlopt.prune.latency import quick_speedup, slower_notes

    say("timing the speed-up (batch 1, one thread, about a second; --no-speedup skips it)")
    pruned = load_checkpoint(out_dir / "model.json").model
    latency = quick_speedup(target.model, pruned, target.spec, target.config)
    return dataclasses.replace(report, latency=latency, notes=(*report.notes, *slower_notes(latency["rows"])))


def _prune_and_save(target: Target, cfg: PruneConfig, out_dir: Path, say: Progress, torch: Any) -> PruneReport:
    """Prune, fine-tune and save the model in `out_dir`; its report (written by the caller)."""
    from dlopt.models.checkpoint import save_checkpoint
    from dlopt.models.registry import create_model, make_inputs
    from dlopt.models.structure import describe
    from dlopt.prune.finetune import resolve_finetune
    from dlopt.prune.model import prune_model

    t0, requested = time.perf_counter(), cfg
    spec, model = target.spec, target.model
    torch.manual_seed(cfg.seed)
    say("loading the run's data")
    evaluator, no_metric = tuning.evaluator(target, cfg)
    example = make_inputs(spec, target.config, 1, seed=cfg.seed)
    blocks = tuning.blocks_found(target, cfg, example) if evaluator is not None else 0  # no data: no fine-tuning
    cfg, tuning_note = resolve_finetune(cfg, evaluator, no_metric, blocks)
    before = tuning.score(evaluator, model)
    log: list[dict[str, Any]] = []
    if cfg.target_speedup:
        pruned, info, path = tuning.to_speedup(target, cfg, evaluator, example, log, say)
        after_prune = None
    else:
        after_prune = tuning.metric_after_prune(cfg, evaluator, spec, example, target)
        say(f"pruning {spec.name} ({cfg.method}, {_what(cfg)}, {cfg.iterative_steps} step(s))")
        pruned, info = prune_model(model, spec, cfg, example, loss_fn=tuning.taylor(cfg, evaluator),
                                   after_step=tuning.finetune_hook(cfg, evaluator, log, say,
                                                                   model if cfg.distill else None),
                                   probe=tuning.probe(cfg, evaluator))
        path = None
    final = tuning.score(evaluator, pruned)
    metric = {"name": spec.metric, "higher_is_better": evaluator.higher_is_better if evaluator else None,
              "before": before, "after_prune": final if after_prune is None and not log else after_prune,
              "after_finetune": final if log else None,
              "data": evaluator.data_options if evaluator else f"none: {no_metric}"}
    extra = {"source": f"dlopt prune ({cfg.method}, {_what(cfg)})", "pruning": {
        **{k: info[k] for k in ("method", "ratio", "importance", "global", "iterative_steps")},
        **({"drop_blocks": cfg.drop_blocks} if cfg.drop_blocks else {})}}
    if cfg.method == "structured":
        extra["structure"] = describe(pruned, create_model(spec, target.config))
    record = save_checkpoint(pruned, spec, target.config, out_dir / "model.json",
                             metrics={f"test_{spec.metric}": final} if final is not None else {}, extra=extra)
    size = {"before": target.checkpoint.with_suffix(".safetensors").stat().st_size,
            "after": record.with_suffix(".safetensors").stat().st_size}
    result = {"arch": spec.name, "stage": cfg.name, "config": requested.to_json(), **info, "file_bytes": size,
              "metric": metric, "finetune": log, "checkpoint": str(record),
              "seconds": round(time.perf_counter() - t0, 2)}
    if cfg.method == "structured":
        from dlopt.prune.report import explain

        result.update(explain(info, cfg))
    result["notes"] = [tuning_note, *result.get("notes", [])]
    if path is not None:
        from dlopt.prune.plots import plot_path
        from dlopt.prune.speedup import path_note

        result["speedup_path"] = path
        result["notes"].append(path_note(cfg, path))
        result["speedup_plot"] = plot_path(out_dir, cfg, path, spec.metric, metric["higher_is_better"] is not False)
    return PruneReport.of(result)  # a key PruneReport does not declare, or a wrong type, stops here


def _what(cfg: PruneConfig) -> str:
    return f"ratio {cfg.ratio:g}" + (f", {count(cfg.drop_blocks, 'residual block')} dropped" if cfg.drop_blocks else "")


def _summary(report: PruneReport) -> dict[str, Any]:
    """The manifest's metrics of the prune stage."""
    m = report.metric
    name = m.name if m else None
    return {"params_before": report.params.get("before"), "params_after": report.params.get("after"),
            "macs_before": report.macs.get("before"), "macs_after": report.macs.get("after"),
            f"{name}_before": m and m.before, f"{name}_after_prune": m and m.after_prune,
            f"{name}_after_finetune": m and m.after_finetune,
            **({"sparsity": report.sparsity["weights"]} if report.sparsity else {}),
            **({"channels_removed": report.achieved["channels"]} if report.achieved else {}),
            **{f"speedup_{k}": v["speedup"] for k, v in (report.latency or {}).get("rows", {}).items()}}


class PruneStage:
    name = "prune"
    Config = PruneConfig
    section = Section(defaults={"ratio": 0.3},  # every option of `dlopt prune`; the ratio written out
                      comment="dlopt prune options (ratio: share of channels/neurons/heads removed per layer)")

    def check(self, spec: Any, config: PruneConfig | None = None) -> None:
        prune_check(config or PruneConfig())(spec)

    def run(self, target: Any, config: PruneConfig, progress: Progress | None = None) -> PruneOutcome:
        return run_prune(target, config, progress)


STAGE = register_stage(PruneStage())
