"""The one table of pipeline stages. Everything the pipeline knows about a stage is declared here, once:

- its name (what `stages = [...]` and `--stages` take) and its pipeline.toml section: the section's defaults
  (a frozen dataclass, or a dict over a library config's fields), its --print-config comment, and the builder of
  the command's own config from it, which is the section's validation;
- its steps: how each runs (`run(ctx) -> outputs`), its config and input files (what `--resume` compares), when it
  is planned and when the architecture rules it out, and what it `makes` and `uses`. The ledger's dependency graph
  (`Step.after`) is derived from makes/uses: a step reruns when any step making what it uses reran.

The stages themselves, their order and their [section]s come from the contract's stage table
(dlopt.contract.stage): TABLE holds only what the pipeline adds (its steps, such as the pruned variant's export).
`table()` is TABLE with each stage's section filled in from its Config, plus every registered stage TABLE does not
name, run by one default step (`Stage.run` on the run's model), in the contract's order. `dlopt.pipeline.config`
(sections, TOML keys, validation), `plan()`, `--print-config` and the ledger all read `table()`
(tests/test_stage_table.py, tests/test_stage_contract.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.models.spec import ArchSpec
from dlopt.pipeline import sections, steps

EVERY = "*"  # in `uses`: every step planned before this one (the report)
# every model and exported file (optimize: its pick, in optimized/)
VARIANTS = ("fp32", "pruned", "int8", "pruned-int8", "fp32-files", "pruned-files", "optimize")


@dataclass(frozen=True)
class Step:
    """One step of a planned run (dlopt.pipeline.runner runs it and records it in the ledger)."""

    name: str
    run: Callable[[steps.Context], list[Path]]
    config: Callable[[steps.Context], Any]
    inputs: Callable[[steps.Context], list[Path]]
    unsupported: Callable[[steps.Context], str | None] = lambda _ctx: None
    after: tuple[str, ...] = ()  # steps whose outputs this one uses: when one of them reruns, so does this one
    always: bool = False  # cheap enough to redo on every resume


@dataclass(frozen=True)
class StepDef:
    name: str
    run: Callable[[steps.Context], list[Path]]
    config: Callable[[steps.Context], Any]  # what --resume compares (with the input files)
    inputs: Callable[[steps.Context], list[Path]] = lambda _ctx: []
    makes: tuple[str, ...] = ()  # what it writes: a model variant, files, a record
    uses: tuple[str, ...] = ()  # what it reads (EVERY: all steps planned before it)
    when: Callable[[Any, ArchSpec], bool] | None = None  # planned when; None: when its stage is in `stages`
    unsupported: Callable[[steps.Context], str | None] = lambda _ctx: None  # the spec's reason, checked at run time
    always: bool = False  # rewritten on every run, even on resume


@dataclass(frozen=True)
class StageDef:
    name: str
    steps: tuple[StepDef, ...] = ()
    section: Callable[[], Any] | None = None  # the [section]'s defaults (dataclass or dict); None: no options
    library: tuple[str, str] | None = None  # (module, config class) whose fields a dict section's keys are
    build: Callable[[Any], Any] | None = None  # the command's own config from the pipeline config (validation);
    # None for a contract stage: its Config from its [section] (dlopt.pipeline.sections.stage_config)
    comment: str = ""  # shown above the section by --print-config
    no_options: str = ""  # for a stage without a section: why (the error for a [section] given anyway)
    selectable: bool = True  # False: in every pipeline, never named in `stages` (evaluate, report)


def _weights(ctx: steps.Context, *folders: str) -> list[Path]:
    return [ctx.path(f, "model.safetensors") if f else ctx.path("model.safetensors") for f in folders]


def _everything(ctx: steps.Context) -> list[Path]:
    from dlopt.pipeline.evaluate import artifacts, checkpoint_records

    records = checkpoint_records(ctx.run)
    return [*records, *(r.with_suffix(".safetensors") for r in records), *artifacts(ctx.run)]


def _method_limit(ctx: steps.Context, stage: str, method: str | None) -> str | None:
    key = f"{stage}:{method}" if method and method != "auto" else stage
    return None if ctx.spec.supports(stage) and ctx.spec.supports(key) else ctx.spec.why_not(key)


def _prune_limit(ctx: steps.Context) -> str | None:
    return _method_limit(ctx, "prune", ctx.cfg.prune.get("method", "structured"))


def _quant_limit(ctx: steps.Context) -> str | None:
    from dlopt.quantize.recipe import unsupported

    return unsupported(ctx.spec, ctx.cfg.quantize.get("method", "auto"))


def _no_pruned(ctx: steps.Context) -> str | None:
    return None if ctx.path(steps.PRUNED, steps.MODEL).is_file() else "no pruned model in this run"


def _trains(cfg: Any, spec: ArchSpec) -> bool:
    return cfg.has("train") and spec.supports("train")


def _model_config(c: steps.Context) -> dict[str, Any]:
    return {"sets": c.cfg.sets, "tiny": c.cfg.tiny, "seed": c.cfg.seed, "input_size": c.cfg.input_size}


def _export_config(c: steps.Context) -> dict[str, Any]:
    return {**dataclasses.asdict(c.cfg.export), "verify": c.cfg.has("verify")}


def _train_build(cfg: Any) -> Any:
    from pathlib import Path

    from dlopt.core.errors import InputFileError
    from dlopt.models.options import shown

    path = cfg.train.data_path  # "" in the table = the architecture's own dataset
    if path and not Path(path).exists():
        raise InputFileError(f"train.data_path = {shown(path)} does not exist; give your data's file or folder")
    return sections.built("train", cfg)


TABLE: tuple[StageDef, ...] = (
    StageDef("train", (
        StepDef("train", steps.train, lambda c: {"train": dataclasses.asdict(c.cfg.train), **_model_config(c)},
                makes=("fp32",), when=_trains),
        # a model the spec cannot train (a user's file), or no training asked for: built as given, seeded
        StepDef("build", steps.build, _model_config, makes=("fp32",), when=lambda cfg, spec: not _trains(cfg, spec)),
    ), build=_train_build),
    StageDef("prune", (
        StepDef("prune", steps.prune, lambda c: c.cfg.prune, lambda c: _weights(c, ""), makes=("pruned",),
                uses=("fp32",), unsupported=_prune_limit),
    )),
    StageDef("quantize", (
        StepDef("quantize", lambda c: steps.quantize(c, "int8", None), lambda c: c.cfg.quantize,
                lambda c: _weights(c, ""), makes=("int8",), uses=("fp32",), unsupported=_quant_limit),
        StepDef("quantize-pruned", lambda c: steps.quantize(c, "pruned-int8", "pruned/model.json"),
                lambda c: c.cfg.quantize, lambda c: _weights(c, steps.PRUNED), makes=("pruned-int8",),
                uses=("pruned",), when=lambda cfg, _s: cfg.has("quantize") and cfg.has("prune"),
                unsupported=lambda c: _quant_limit(c) or _no_pruned(c)),
    )),
    StageDef("export", (
        StepDef("export", lambda c: steps.export(c, "", "export"), _export_config, lambda c: _weights(c, ""),
                makes=("fp32-files",), uses=("fp32",)),
        StepDef("export-pruned", lambda c: steps.export(c, steps.PRUNED, "export-pruned"), _export_config,
                lambda c: _weights(c, steps.PRUNED), makes=("pruned-files",), uses=("pruned",),
                when=lambda cfg, _s: cfg.has("export") and cfg.has("prune"), unsupported=_no_pruned),
    )),
    StageDef("verify", no_options="verification follows export with each spec's tolerance; keep or drop 'verify' "
                                  "in stages"),
    StageDef("evaluate", (
        StepDef("evaluate", steps.evaluate, lambda c: {}, _everything, makes=("evaluation",), uses=VARIANTS,
                when=lambda _c, _s: True),
    ), selectable=False),
    StageDef("bench", (
        StepDef("bench", steps.bench, lambda c: dataclasses.asdict(c.cfg.bench), _everything, makes=("bench",),
                uses=VARIANTS),
    )),
    StageDef("report", (
        StepDef("report", steps.report, lambda c: {}, uses=(EVERY,), when=lambda _c, _s: True, always=True),
    ), selectable=False),
)


def _default_row(name: str) -> StageDef:
    """A registered stage the pipeline has no steps of its own for: one step, `Stage.run` on the run's model, after
    the fp32 model is made; what it writes is its `report_path` (and `outputs`, when its outcome lists them)."""
    def run(ctx: steps.Context) -> list[Path]:
        from dlopt.contract.stage import get_stage
        from dlopt.contract.target import Target

        config = ctx.config(name)
        if ctx.cfg.inputs and "inputs" in {f.name for f in dataclasses.fields(config)}:
            config = dataclasses.replace(config, inputs=str(ctx.cfg.inputs))  # --inputs: a Config field of that name
        outcome = get_stage(name).run(Target.of_run(ctx.run), config, ctx.progress)
        return list(getattr(outcome, "outputs", ()) or ([outcome.report_path] if outcome.report_path else []))

    def unsupported(ctx: steps.Context) -> str | None:
        from dlopt.contract.stage import get_stage
        from dlopt.core.errors import UnsupportedError

        try:
            get_stage(name).check(ctx.spec, ctx.config(name))
        except UnsupportedError as exc:
            return str(exc)
        return None

    return StageDef(name, (StepDef(name, run, lambda c: c.cfg.to_json().get(name, {}), lambda c: _weights(c, ""),
                                   makes=(name,), uses=("fp32",), unsupported=unsupported),))


def _filled(row: StageDef) -> StageDef:
    """A contract stage's row with its [section] from its Config (unless the row gives its own), its comment, and
    no_options when it takes none."""
    from dlopt.contract.stage import get_stage, opt_in_names, stage_names

    if row.name not in stage_names() or row.section is not None:
        return row
    stage = get_stage(row.name)
    if stage.section is None:
        return row if row.no_options else dataclasses.replace(row, no_options=f"{row.name} takes no options")
    factory, library = sections.section_factory(stage)
    comment = row.comment or stage.section.comment
    if row.name in opt_in_names():
        comment += f"\noff unless stages names it: add \"{row.name}\" to stages (or --stages) to run it"
    return dataclasses.replace(row, section=factory, library=row.library or library,
                               build=row.build or (lambda cfg: sections.built(row.name, cfg)), comment=comment)


def table() -> tuple[StageDef, ...]:
    """TABLE, filled in from the contract's stages, with every registered stage TABLE lacks placed before the next
    stage of the contract's order that TABLE has (after the last one, when none follows)."""
    from dlopt.contract.stage import stage_names

    rows, order = list(TABLE), stage_names()
    for i, name in enumerate(order):
        names = [r.name for r in rows]
        if name in names:
            continue
        later = [n for n in order[i + 1:] if n in names]
        last = max((names.index(n) for n in order[:i] if n in names), default=len(rows) - 1)
        rows.insert(names.index(later[0]) if later else last + 1, _default_row(name))
    return tuple(_filled(r) for r in rows)


def stage_names() -> tuple[str, ...]:
    """The stages `stages = [...]` takes, in pipeline order."""
    return tuple(s.name for s in table() if s.selectable)


def default_stages() -> tuple[str, ...]:
    """The stages a pipeline runs when `stages` is not given: all but the opt-in ones (dlopt.contract.stage)."""
    from dlopt.contract.stage import opt_in_names

    return tuple(n for n in stage_names() if n not in opt_in_names())


def _after(step: StepDef, planned: list[Step], table: tuple[StageDef, ...]) -> tuple[str, ...]:
    if EVERY in step.uses:
        return tuple(s.name for s in planned)
    return tuple(d.name for stage in table for d in stage.steps if set(d.makes) & set(step.uses))


def plan(cfg: Any, spec: ArchSpec) -> list[Step]:
    """The steps of a run of `cfg` for `spec`, in table order, each with the steps it depends on."""
    rows = table()
    out: list[Step] = []
    for stage in rows:
        for d in stage.steps:
            planned = d.when(cfg, spec) if d.when is not None else cfg.has(stage.name)
            if planned:
                out.append(Step(d.name, d.run, d.config, d.inputs, d.unsupported, _after(d, out, rows), d.always))
    return out
