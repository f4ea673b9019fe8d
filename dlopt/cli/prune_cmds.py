"""`dlopt prune`: make a model smaller (structured: fewer channels, neurons, heads) or sparse (unstructured)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import (
    NameArg,
    OutputArgs,
    StageNameOpt,
    TargetArgs,
    console,
    fmt_bytes,
    fmt_ms,
    human,
    note,
    print_json,
    status,
)
from dlopt.cli.groups import ADVANCED, choices, grouped, stage_panel
from dlopt.prune.config import Importance, PruneConfig, PruneMethod

PRUNE = stage_panel("prune")
SPEED = "Speed target"
TARGET_RUNTIMES = ("onnxruntime", "eager")  # PruneConfig checks it; --target-runtime shows them


@dataclass(frozen=True)
class PruneArgs:
    """`dlopt prune`'s own options, and the PruneConfig they make."""

    ratio: Annotated[float, typer.Option(
        "--ratio", rich_help_panel=PRUNE, help="Share of output channels / neurons / heads removed from each prunable "
        "layer (structured), or of all weights zeroed (unstructured); between 0 and 1.")] = 0.3
    drop_blocks: Annotated[int, typer.Option(
        "--drop-blocks", rich_help_panel=PRUNE, help="Also remove this many residual blocks whole (depth pruning): "
        "the ones whose removal alone changes the outputs least; with it --ratio 0 prunes depth only.")] = 0
    method: Annotated[str, typer.Option("--method", metavar=choices(PruneMethod), rich_help_panel=PRUNE,
                                        help="structured (smaller, faster) or unstructured (sparse).")] = "structured"
    importance: Annotated[str, typer.Option("--importance", metavar=choices(Importance), rich_help_panel=PRUNE,
                                            help="How channels are ranked.")] = "l1"
    iterative_steps: Annotated[int, typer.Option("--iterative-steps", rich_help_panel=PRUNE,
                                                 help="Prune in K steps (fine-tuning spread over them).")] = 1
    finetune_epochs: Annotated[int | None, typer.Option(
        "--finetune-epochs", rich_help_panel=PRUNE, show_default=False,
        help="Epochs of the training loop on the run's data after pruning; default 3 where the run was trained on "
             "data (plus up to 6 more in proportion to the residual blocks --drop-blocks removes), else none (the "
             "report says so); 0 skips it.")] = None
    finetune_lr: Annotated[float | None, typer.Option("--finetune-lr", rich_help_panel=PRUNE, show_default=False,
                                                      help="Default: half the training LR.")] = None
    distill: Annotated[bool, typer.Option("--distill/--no-distill", rich_help_panel=PRUNE,
                                          help="Classifiers fine-tune against the unpruned model's softened logits "
                                               "too (KL at T=4 plus the task loss). Off by default: measured no gain "
                                               "on digits (docs/prune.md).")] = False
    global_pruning: Annotated[bool, typer.Option("--global", rich_help_panel=PRUNE,
                                                 help="Rank channels across all layers together.")] = False
    round_to: Annotated[int | None, typer.Option(
        "--round-to", rich_help_panel=PRUNE, show_default=False,
        help="Default: layers keeping 16+ channels keep a multiple of 8 within 10 points of the ratio, the fastest "
             "on --target-runtime by a measured per-layer table (cached per machine), narrower ones the exact "
             "ratio. 1: the exact ratio everywhere; N: round down to multiples of N.")] = None
    exact: Annotated[bool, typer.Option("--exact", rich_help_panel=PRUNE,
                                        help="The exact ratio in every layer (same as --round-to 1).")] = False
    bench: Annotated[bool, typer.Option("--bench", rich_help_panel=PRUNE, help="Measure latency before/after (eager "
                                        "and ONNX Runtime, batch 1 and 8, one thread).")] = False
    speedup: Annotated[bool, typer.Option("--speedup/--no-speedup", rich_help_panel=PRUNE,
                                          help="Without --bench: time the speed-up at batch 1 on ONNX Runtime (else "
                                               "eager), one thread, before/after interleaved, about a second.")] = True
    target_speedup: Annotated[float | None, typer.Option(
        "--target-speedup", rich_help_panel=SPEED, show_default=False,
        help="Prune in steps (fine-tuning between) until the model runs this many times faster on --target-runtime "
             "at --target-batch, or --max-drop would be broken; --ratio is then not used.")] = None
    target_runtime: Annotated[str, typer.Option("--target-runtime", metavar=choices(TARGET_RUNTIMES),
                                                rich_help_panel=SPEED,
                                                help="Where the speed-up is measured (one thread).")] = "onnxruntime"
    target_batch: Annotated[int, typer.Option("--target-batch", rich_help_panel=SPEED,
                                              help="Batch size the speed-up is measured at.")] = 8
    max_drop: Annotated[float, typer.Option("--max-drop", rich_help_panel=SPEED, help="--target-speedup's budget: "
                                            "metric points lost (percent for lower-is-better metrics).")] = 1.0
    stage_name: StageNameOpt = "pruned"
    limit: Annotated[int | None, typer.Option("--limit", rich_help_panel=ADVANCED,
                                              help="Cap on samples per split (quick runs).")] = None
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=ADVANCED, help="Seed for ranking data and "
                                      "fine-tuning.")] = 0

    def check(self) -> None:
        from dlopt.core.errors import ConfigError

        if self.exact and self.round_to not in (None, 1):
            raise ConfigError(f"--exact keeps the exact ratio and --round-to {self.round_to} rounds it: pass one of them")

    def config(self) -> PruneConfig:
        return PruneConfig(ratio=self.ratio, drop_blocks=self.drop_blocks, method=self.method, importance=self.importance,
                           iterative_steps=self.iterative_steps, finetune_epochs=self.finetune_epochs,
                           finetune_lr=self.finetune_lr, distill=self.distill, global_pruning=self.global_pruning,
                           round_to=1 if self.exact else self.round_to, seed=self.seed, name=self.stage_name,
                           bench=self.bench, speedup=self.speedup, data_limit=self.limit,
                           target_speedup=self.target_speedup, target_runtime=self.target_runtime,
                           target_batch=self.target_batch, max_drop=self.max_drop)


@grouped
def prune_cmd(name: NameArg = None, *, args: PruneArgs, model: TargetArgs, outputs: OutputArgs) -> None:
    """Prune into RUN/pruned/ (safetensors + the pruned structure), fine-tune, and report size, MACs and metric."""
    from dlopt.contract.deliver import deliver
    from dlopt.contract.target import resolve_target
    from dlopt.prune.stage import prune_check, run_prune

    args.check()
    dest = outputs.plan((".json", ".safetensors"))  # a checkpoint: record + weights, one stem
    cfg = args.config()
    opts = model.options(name, seed=args.seed)
    with status("pruning…") as spinner:
        resolved = resolve_target(opts, prune_check(cfg))  # a method the spec rules out: no run directory is made
        outcome = run_prune(resolved, cfg, lambda msg: spinner.update(msg + "…"))
    copies = deliver(dest, [outcome.record], outcome.run_dir, args.stage_name)
    if outputs.as_json:
        print_json({**outcome.to_json(), **({"output": [str(p) for p in copies]} if dest else {})})
    else:
        _render(outcome.result, outcome.record)
        from dlopt.core.assumptions import assumptions  # what the numbers rest on: weights, input size, classes

        if said := assumptions(outcome.run_dir):
            note(f"[dim]assumed: {said}[/dim]", highlight=False)
        for p in copies:
            note(f"[dim]wrote {p}[/dim]", highlight=False)


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.4g}" if isinstance(x, float) else human(x))


def _render(r: dict[str, Any], record: Path) -> None:
    blocks = r.get("blocks")
    title = f"{r['arch']}: {r['method']} pruning, ratio {r['ratio']:g}" + (
        f", {len(blocks['dropped'])} residual block(s) dropped" if blocks else "")
    table = Table(title=title, title_justify="left")
    for col in ("", "before", "after", "change"):
        table.add_column(col)
    if blocks:
        table.add_row("residual blocks", str(blocks["found"]), str(blocks["found"] - len(blocks["dropped"])),
                      f"-{len(blocks['dropped'])}: {', '.join(blocks['dropped'][:4])}"
                      + (" ..." if len(blocks["dropped"]) > 4 else ""))
    if "achieved" in r and r["ratio"]:
        table.add_row("channels (pruned layers)", "", "", f"-{r['achieved']['channels']:.1%} (asked {r['ratio']:.0%})")
    for key in ("params", "macs"):
        table.add_row(key, _fmt(r[key]["before"]), _fmt(r[key]["after"]), f"-{r[key]['removed']:.1%}")
    fb = r["file_bytes"]
    table.add_row("file size", fmt_bytes(fb["before"]), fmt_bytes(fb["after"]), f"{fb['after'] / fb['before'] - 1:+.1%}")
    m = r["metric"]
    if m["before"] is not None:
        table.add_row(m["name"], _fmt(m["before"]), _fmt(m["after_finetune"] if m["after_finetune"] is not None
                                                        else m["after_prune"]),
                      f"after prune {_fmt(m['after_prune'])}" + ("" if m["after_finetune"] is None else ", fine-tuned"))
    if "sparsity" in r:
        table.add_row("weight sparsity", "0", f"{r['sparsity']['weights']:.1%}", r["note"])
    for key, row in (r.get("latency") or {}).get("rows", {}).items():
        table.add_row(f"{key} ms", fmt_ms(row["before_ms"]), fmt_ms(row["after_ms"]),
                      "-" if row["speedup"] is None else f"{row['speedup']:.2f}x " + ("faster" if row["speedup"] >= 1 else
                                                                                        "[red]SLOWER[/red]"))
    console.print(table)
    from dlopt.prune.report import speedup_line  # imports torch: not at the CLI's start

    if said := speedup_line(r):
        note(f"[dim]{said}[/dim]", highlight=False)
    if r.get("layers"):
        console.print(_layers_table(r["layers"]))
    if r.get("speedup_path"):
        console.print(_path_table(r["speedup_path"], r["config"]))
    for line in r.get("notes", []):
        note(f"[yellow]note:[/yellow] {line}")
    note(f"[dim]saved {record} (load with dlopt.models.checkpoint.load_checkpoint, or --variant "
                  f"{record.parent.name}/model.json); report {record.parent / 'prune_report.json'}[/dim]")


def _path_table(path: list[dict[str, Any]], cfg: dict[str, Any]) -> Table:
    table = Table(title=f"--target-speedup {cfg['target_speedup']:g} on {cfg['target_runtime']} at batch "
                        f"{cfg['target_batch']}, step by step", title_justify="left")
    for col in ("step", "channels kept", "ms (before -> after)", "speed-up", "metric", "drop", ""):
        table.add_column(col)
    for r in path:
        ms = f"{fmt_ms(r['base_ms'])} -> {fmt_ms(r['ms'])}" if "ms" in r else "-"
        table.add_row(str(r["step"]), f"{r['channels_kept']:.0%}", ms, f"{r['speedup']:.2f}x", _fmt(r["metric"]),
                      f"{r.get('drop_points', 0):.2f}", r.get("stopped", ""))
    return table


def _layers_table(layers: dict[str, dict[str, Any]]) -> Table:
    """One row per (before, after, reason): layers that got the same width for the same reason share a row."""
    groups: dict[tuple, list[str]] = {}
    for name, row in layers.items():
        groups.setdefault((row["unit"], row["before"], row["after"], row["why"]), []).append(name)
    table = Table(title="widths per layer", title_justify="left")
    for col in ("layers", "before", "after", "removed", "why"):
        table.add_column(col)
    for (unit, before, after, why), names in groups.items():
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        removed = f"-{1 - after / before:.0%}" if before else "-"
        table.add_row(shown, f"{before} {unit}", str(after), removed, why)
    return table


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
