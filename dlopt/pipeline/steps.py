"""The pipeline's steps: each calls one stage's library function on the pipeline's run.

A step names its inputs (files whose hash decides whether `--resume` may skip it) and returns its outputs.
Variants live in the run: the fp32 model at the top (`model.json`, exports beside it), the pruned model in
`pruned/`, int8 copies in `int8/` and `pruned-int8/`; the bench stage finds them all there.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.core.runs import Run
from dlopt.models.spec import ArchSpec

MODEL = "model.json"
PRUNED = "pruned"
EVALUATION = "evaluation.json"


@dataclass
class Context:
    run: Run
    cfg: Any  # dlopt.pipeline.config.PipelineConfig (not imported: the stage table imports this module)
    spec: ArchSpec
    progress: Callable[[str], None]
    show_bars: bool = True
    configs: dict[str, Any] = field(default_factory=dict)  # stage -> its own config, as validation built it

    def config(self, stage: str) -> Any:
        """The config stage `stage` runs with: the one validation built (built here when not handed in)."""
        if stage not in self.configs:
            from dlopt.pipeline.sections import built

            self.configs[stage] = built(stage, self.cfg)
        return self.configs[stage]

    def path(self, *parts: str) -> Path:
        return self.run.path.joinpath(*parts)

    def files(self, folder: str) -> list[Path]:
        root = self.path(folder)
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else []


def model_overrides(ctx: Context) -> dict[str, Any]:
    from dlopt.train.config import build_defaults

    sets = {**build_defaults(ctx.spec.train_defaults), **ctx.cfg.sets}
    if ctx.cfg.input_size:
        sets["input_size"] = ctx.cfg.input_size
    return sets


def train(ctx: Context) -> list[Path]:
    from dlopt.train.stage import run_train

    sets = {**ctx.cfg.sets, **({"input_size": ctx.cfg.input_size} if ctx.cfg.input_size else {})}
    cfg = dataclasses.replace(ctx.config("train"), arch=ctx.spec.name, sets=sets, progress=ctx.show_bars)
    result = run_train(ctx.run, cfg, ctx.progress).result  # trains into the pipeline's run, no new one
    if result.stopped and result.stopped.startswith("non-finite"):
        from dlopt.core.errors import CheckFailedError

        raise CheckFailedError(f"training stopped: {result.stopped}; lower [train] lr in the pipeline config")
    names = ("model.json", "model.safetensors", "metrics.jsonl", "learning_curve.png", "train_result.json")
    return [ctx.path(n) for n in names if ctx.path(n).is_file()]


def build(ctx: Context) -> list[Path]:
    """No training asked for: the fresh model (seeded), so later steps have weights to work on."""
    import torch

    from dlopt.models.checkpoint import save_checkpoint
    from dlopt.models.registry import create_model, make_model_config

    mcfg = make_model_config(ctx.spec, model_overrides(ctx), tiny=ctx.cfg.tiny)
    torch.manual_seed(ctx.cfg.seed)
    record = save_checkpoint(create_model(ctx.spec, mcfg), ctx.spec, mcfg, ctx.path(MODEL),
                             extra={"source": f"built with seed {ctx.cfg.seed} (untrained)"})
    return [record, record.with_suffix(".safetensors")]


def prune(ctx: Context) -> list[Path]:
    from dlopt.contract.target import Target
    from dlopt.prune import run_prune

    cfg = dataclasses.replace(ctx.config("prune"), name=PRUNED)
    # The step is rerun (its inputs or config changed): the new pruned model is staged and swapped in whole,
    # so a failed or killed rerun leaves the previous one in place.
    run_prune(Target.of_run(ctx.run), cfg, ctx.progress, replace=True)
    return ctx.files(PRUNED)


def quantize(ctx: Context, name: str, variant: str | None) -> list[Path]:
    from dlopt.contract.target import Target
    from dlopt.quantize import run_quantize

    from dlopt.quantize.calibrate import calibrate_on

    cfg = dataclasses.replace(ctx.config("quantize"), name=name)
    with calibrate_on(Path(ctx.cfg.inputs) if ctx.cfg.inputs else None):  # --inputs: calibrate and judge on them
        run_quantize(Target.of_run(ctx.run, variant), cfg, ctx.progress)
    return ctx.files(name)


def export(ctx: Context, folder: str, stage: str) -> list[Path]:
    """Export one checkpoint variant (and verify each file against it) into its folder of the run: the export
    stage itself (dlopt.export.stage.run_export), recording the pipeline's [export] section as its config."""
    from dlopt.contract.target import Target
    from dlopt.export.stage import run_export
    from dlopt.models.spec import ExportFormat

    e = ctx.cfg.export
    config = ctx.config("export")
    config = dataclasses.replace(config, formats=tuple(ExportFormat(f) for f in config.formats))
    target = Target.of_run(ctx.run, f"{folder}/{MODEL}" if folder else MODEL)
    inputs = Path(ctx.cfg.inputs) if ctx.cfg.inputs and config.verify else None  # --inputs: verify on them
    outcome = run_export(target, config, ctx.progress, inputs, folder=folder, stage=stage,
                         recorded={"formats": e.formats, "exporter": e.exporter, "verify": config.verify})
    return list(outcome.outputs)


def evaluate(ctx: Context) -> list[Path]:
    """The spec's metric on the held-out test split for every variant x runtime in the run."""
    from dlopt.core.results import Evaluation, write_result
    from dlopt.pipeline.evaluate import evaluate_variants

    with ctx.run.stage("evaluate", {}) as rec:  # a stage, so report trusts evaluation.json only when complete
        data = evaluate_variants(ctx.run, ctx.spec, ctx.progress)
        staged = write_result(Evaluation.of(data), rec.path(EVALUATION))  # the record report reads it as
        rec.outputs.append(staged)
    return [ctx.path(EVALUATION)]


def bench(ctx: Context) -> list[Path]:
    from dlopt.bench.stage import run_bench
    from dlopt.contract.target import Target
    from dlopt.runtime.formats import benched_when_present

    cfg = ctx.config("bench")
    if ctx.cfg.inputs:  # --inputs FILE.npz: time on the user's samples
        cfg = dataclasses.replace(cfg, inputs=ctx.cfg.inputs)
    for rec in benched_when_present(ctx.run.scan_artifacts, cfg.backends):  # the quantize step shipped an IR, say
        cfg = dataclasses.replace(cfg, backends=(*cfg.backends, rec.bench_choice))
        ctx.progress(f"bench: the run has {rec.label} files; adding the {rec.bench_choice} backend")
    outcome = run_bench(Target.of_run(ctx.run), cfg, ctx.progress)  # inputs seeded with cfg.seed
    return [outcome.report_path]


def report(ctx: Context) -> list[Path]:
    from dlopt.report import write_report

    return list(write_report(ctx.run))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
