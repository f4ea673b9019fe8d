"""`dlopt pipeline` (every stage in one run) and `dlopt report` (regenerate a run's report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import (
    QUIET,
    InputShapeOpt,
    InputSizeOpt,
    JsonOpt,
    ModelCodeOpt,
    OutOpt,
    SetOpt,
    TinyOpt,
    TrustCodeOpt,
    _name_trust,
    console,
    err_console,
    note,
    parse_shape,
    print_json,
    print_table,
    verbosity,
)
from dlopt.cli.groups import grouped, stage_panel
from dlopt.contract.stage import opt_in_names, stage_names  # the stage table's names, without importing a stage
from dlopt.core.errors import CheckFailedError, UsageError
from dlopt.core.layout import DEFAULT_ROOT


def config_comments() -> dict[str, str]:
    """--print-config's comment above each section, from the stage table."""
    from dlopt.pipeline.stages import table

    return {s.name: s.comment for s in table() if s.comment}


def _effective(name: str | None, config: Path | None, resume: Path | None, flags: dict[str, Any]) -> Any:
    """Defaults < the resumed run's stored config < --config file < command-line flags."""
    from dlopt.core.runs import Run
    from dlopt.pipeline import PipelineConfig, apply, load_config
    from dlopt.pipeline.ledger import stored_config

    cfg = PipelineConfig()
    if resume is not None:
        stored = stored_config(Run.open(resume)) or {}
        from dlopt.core.user_code import (
            require_trusted_name,  # the manifest's arch is data, not code to import
        )

        require_trusted_name(stored.get("arch"), Path(resume) / "manifest.json")
        cfg = apply(cfg, {k: v for k, v in stored.items() if k != "verify"}, origin=f"{resume}'s manifest")
    if config is not None:
        cfg = load_config(config, cfg)
        if not name:  # the file's arch is data: user model code it names runs only when named on the command line
            from dlopt.core.user_code import require_trusted_name

            require_trusted_name(cfg.arch, Path(config))
    cfg = apply(cfg, flags, origin="the command line")
    if name:
        cfg = apply(cfg, {"arch": name}, origin="the command line")
    if not cfg.arch:
        raise UsageError("name an architecture (see dlopt list), or give --resume RUN_DIR or a --config with arch = ...")
    from dlopt.core.user_code import absolute_ref

    cfg = apply(cfg, {"arch": absolute_ref(cfg.arch)}, origin="the command line")  # the run records it: any cwd
    from dlopt.models.registry import get_spec
    from dlopt.pipeline.config import validate

    get_spec(cfg.arch)  # unknown names fail here, with suggestions, before a run is created
    return validate(cfg)


def _flags(stages: str | None, sets: list[str] | None, tiny: bool, input_size: int | None, epochs: int | None,
           ratio: float | None, budget_s: float | None, input_shape: str | None = None) -> dict[str, Any]:
    from dlopt.models.options import parse_sets

    flags: dict[str, Any] = {}
    if stages:
        flags["stages"] = [s.strip() for s in stages.split(",") if s.strip()]
    shape = parse_shape(input_shape)  # a user model's build option, like --set input_shape=[...] (--set wins)
    if sets or shape:
        key, value = ("inputs", shape) if isinstance(shape, str) else ("input_shape", list(shape or ()))  # NAME:DTYPE:DIMS
        flags["sets"] = {**({key: value} if shape else {}), **parse_sets(sets)}
    if tiny:
        flags["tiny"] = True
    if input_size:
        flags["input_size"] = input_size
    for section, key, value in (("train", "epochs", epochs), ("prune", "ratio", ratio), ("bench", "budget_s", budget_s)):
        if value is not None:
            flags.setdefault(section, {})[key] = value
    return flags


def _printable(cfg: Any) -> dict[str, Any]:
    from dlopt.pipeline.config import library_fields
    from dlopt.pipeline.stages import table

    data = cfg.to_json()
    for section in (s.name for s in table() if s.library and s.name in data):  # every option of the command
        data[section] = {k: (str(v) if hasattr(v, "value") else v)
                         for k, v in {**library_fields(section), **data[section]}.items()}
    return data


PIPELINE = stage_panel("pipeline")


def _stages_help() -> str:
    off = opt_in_names()
    default = f"all but {', '.join(off)}, which run only when named" if off else "all"
    return f"Comma list of {','.join(stage_names())} (default: {default})."


@grouped
def pipeline_cmd(
    name: Annotated[str | None, typer.Argument(help="Architecture name (see `dlopt list`), torchvision:NAME or "
                                                    "file.py:fn; omit with --resume.", show_default=False,
                                               callback=_name_trust)] = None,
    config: Annotated[Path | None, typer.Option("--config", rich_help_panel=PIPELINE,
                                                help="pipeline.toml (see --print-config).")] = None,
    stages: Annotated[str | None, typer.Option("--stages", metavar="STAGE,...", rich_help_panel=PIPELINE,
                                               help=_stages_help())] = None,
    resume: Annotated[Path | None, typer.Option("--resume", rich_help_panel=PIPELINE,
                                                help="Continue RUN_DIR: skip steps whose inputs are unchanged.")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", rich_help_panel=PIPELINE,
                                               help="Print the effective config as TOML and exit.")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", rich_help_panel=PIPELINE,
                                               help="Training epochs (config key train.epochs).")] = None,
    ratio: Annotated[float | None, typer.Option("--ratio", rich_help_panel=PIPELINE,
                                                help="Share of channels removed, in (0, 1) (config key prune.ratio).")] = None,
    budget_s: Annotated[float | None, typer.Option("--budget-s", rich_help_panel=PIPELINE, help="Timing budget per "
                                                   "batch size (config key bench.budget_s).")] = None,
    out: OutOpt = DEFAULT_ROOT,
    sets: SetOpt = None,
    tiny: TinyOpt = False,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    trust_code: TrustCodeOpt = False,
    model_code: ModelCodeOpt = None,
    as_json: JsonOpt = False,
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", metavar="FILE.npz", show_default=False, rich_help_panel=PIPELINE,
        help="Your own samples (.npz, one array per model input): verification, int8 calibration and the bench "
             "use them, and without a task metric the ship pick is judged by agreement with fp32 on them.")] = None,
) -> None:
    """Train, prune, quantize, export, verify and benchmark NAME in one run, then write report.md/.html. Add
    optimize to the stages (--stages, or stages = [...] in pipeline.toml, its options in the file's optimize table)
    for a `dlopt optimize` search beside prune and quantize: its pick is benched with the others and can ship."""
    from dlopt.cli.resume import offer_resume
    from dlopt.data.inputs_file import precheck
    from dlopt.pipeline.toml import dumps

    precheck(inputs)  # a missing file fails before a run is made
    flags = _flags(stages, sets, tiny, input_size, epochs, ratio, budget_s, input_shape)
    cfg = _effective(name, config, resume, {**flags, **({"inputs": str(inputs.resolve())} if inputs else {})})
    if print_config:
        typer.echo(dumps(_printable(cfg), config_comments()), nl=False)
        return
    from dlopt.pipeline import run_pipeline

    quiet = as_json or verbosity() == QUIET
    if not quiet:
        _say_idle(cfg)
    say = (lambda _m: None) if quiet else (lambda m: console.print(f"[dim]·[/dim] {m}", highlight=False))
    offer_resume("pipeline", resume, out)  # Ctrl-C from here on prints `dlopt pipeline --resume RUN_DIR ...`
    outcome = run_pipeline(cfg, out, resume, progress=say, show_bars=not quiet)
    if as_json:
        print_json(outcome.to_json())
    else:
        _render(outcome)
    if outcome.failed:
        raise CheckFailedError(failure_message(outcome))


def _say_idle(cfg: Any) -> None:
    """A note for each opt-in stage given options that `stages` leaves out (it will not run)."""
    from rich.markup import escape

    from dlopt.pipeline.config import idle_sections

    for idle in idle_sections(cfg):
        note(f"[yellow]note:[/yellow] {escape(f'[{idle}]')} has options but stages does not name {idle}, so it will "
             f"not run; add \"{idle}\" to stages (or --stages) to run it")


def failure_message(outcome: Any) -> str:
    """One line naming each failed step and why; it points at the report only when one was written."""
    reasons = "; ".join(f"{s.name}: {' '.join((s.reason or 'no reason recorded').split())[:160]}"
                        for s in outcome.failed)
    where = f"details in {outcome.report}" if outcome.report else "no report was written"
    return f"pipeline steps failed: {reasons} ({where}); fix, then --resume {outcome.run_dir}"


def _render(outcome: Any) -> None:
    note(f"run: {outcome.run_dir}")
    table = Table(title="pipeline steps", title_justify="left")
    for col in ("step", "status", "seconds", "note"):
        table.add_column(col)
    for s in outcome.steps:
        style = {"failed": "red", "unsupported": "yellow", "skipped": "dim"}.get(s.status, "")
        table.add_row(s.name, f"[{style}]{s.status}[/{style}]" if style else s.status, f"{s.seconds:.1f}", s.reason or "")
    print_table(table, keep=("step", "status", "seconds", "note"), wrap=("note",))
    if outcome.report:
        console.print(f"report: {outcome.report} (and report.md beside it)")
        ship = (_read_json(Path(outcome.report).with_suffix(".json")) or {}).get("ship") or {}
        if ship.get("label"):
            console.print(f"ship: [bold]{ship['label']}[/bold] ({ship['rule']})")


@grouped
def report_cmd(
    run: Annotated[Path | None, typer.Argument(help="Run directory (default: the latest run under --out).",
                                               show_default=False)] = None,
    out: OutOpt = DEFAULT_ROOT,
    as_json: JsonOpt = False,
) -> None:
    """Regenerate report.md / report.html / report.json of a run from the files in it."""
    from dlopt.core.runs import resolve_run
    from dlopt.report import write_report

    paths = write_report(resolve_run(out, run))
    data = _read_json(paths[2]) or {}
    for skip in data.get("skipped", []):  # files no done stage vouches for, result files that are not valid
        err_console.print(f"[yellow]skipped[/yellow] {skip['path']}: {skip['reason']}", soft_wrap=True)
    ship = data.get("ship") or {}
    if as_json:
        print_json({"markdown": str(paths[0]), "html": str(paths[1]), "json": str(paths[2]), "ship": ship.get("pick")})
    else:
        from dlopt.report.decide import banner

        console.print(f"report: {paths[1]} (and {paths[0].name}, {paths[2].name})")
        console.print(f"ship: {banner(ship)}" if ship.get("pick") else ship.get("rule", ""), soft_wrap=True,
                      highlight=False)


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline_cmd)
    app.command("report")(report_cmd)


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
