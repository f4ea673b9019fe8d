"""`dlopt prune`: make a model smaller (structured: fewer channels, neurons, heads) or sparse (unstructured)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import (  # user model code a record may run (issue 21)  # -o/--output (issue 19)
    CheckpointOpt,
    ForceOpt,
    InputShapeOpt,
    InputSizeOpt,
    JsonOpt,
    ModelCodeOpt,
    NameArg,
    OutOpt,
    OutputOpt,
    RunOpt,
    SetOpt,
    TinyOpt,
    TrustCodeOpt,
    WeightsOpt,  # --weights for a model built by name (issue 15)
    console,
    fmt_bytes,
    fmt_ms,
    human,
    note,
    parse_shape,
    print_json,
    status,
)


def prune_cmd(
    name: NameArg = None,
    ratio: Annotated[float, typer.Option("--ratio", help="Share of output channels / neurons / heads removed from each "
                                                         "prunable layer (structured), or of all weights zeroed "
                                                         "(unstructured); between 0 and 1.")] = 0.3,
    method: Annotated[str, typer.Option("--method", help="structured (smaller, faster) or unstructured (sparse).")] = (
        "structured"),
    importance: Annotated[str, typer.Option("--importance", help="l1, l2, taylor or bn-scale.")] = "l1",
    iterative_steps: Annotated[int, typer.Option("--iterative-steps", help="Prune in K steps (fine-tuning spread "
                                                                           "over them).")] = 1,
    finetune_epochs: Annotated[int | None, typer.Option(
        "--finetune-epochs", help="Epochs of the training loop on the run's data after pruning; default 3 where the "
                                  "run was trained on data, else none (the report says so); 0 skips it.",
        show_default=False)] = None,
    finetune_lr: Annotated[float | None, typer.Option("--finetune-lr", help="Default: half the training LR.",
                                                      show_default=False)] = None,
    global_pruning: Annotated[bool, typer.Option("--global", help="Rank channels across all layers together.")] = False,
    round_to: Annotated[int | None, typer.Option(
        "--round-to", help="Default: layers keeping 16+ channels keep a multiple of 8 within 10 points of the "
                           "ratio, the fastest on --target-runtime by a measured per-layer table (cached per "
                           "machine), narrower ones the exact ratio. 1: the exact ratio everywhere; N: round "
                           "down to multiples of N.", show_default=False)] = None,
    exact: Annotated[bool, typer.Option("--exact", help="The exact ratio in every layer (same as --round-to 1).")] = (
        False),
    target_speedup: Annotated[float | None, typer.Option(
        "--target-speedup", help="Prune in steps (fine-tuning between) until the model runs this many times faster "
                                 "on --target-runtime at --target-batch, or --max-drop would be broken; --ratio is "
                                 "then not used.", show_default=False)] = None,
    target_runtime: Annotated[str, typer.Option("--target-runtime", help="onnxruntime or eager (one thread).")] = (
        "onnxruntime"),
    target_batch: Annotated[int, typer.Option("--target-batch", help="Batch size the speed-up is measured at.")] = 8,
    max_drop: Annotated[float, typer.Option("--max-drop", help="--target-speedup's budget: metric points lost "
                                                               "(percent for lower-is-better metrics).")] = 1.0,
    bench: Annotated[bool, typer.Option("--bench", help="Measure latency before/after (eager and ONNX Runtime, "
                                                        "batch 1 and 8, one thread).")] = False,
    stage_name: Annotated[str, typer.Option("--name", help="Stage name and run sub-directory.")] = "pruned",
    limit: Annotated[int | None, typer.Option("--limit", help="Cap on samples per split (quick runs).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint: CheckpointOpt = None,
    out: OutOpt = Path("artifacts"),
    run: RunOpt = None,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    tiny: TinyOpt = False,
    trust_code: TrustCodeOpt = False,
    model_code: ModelCodeOpt = None,
    weights: WeightsOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Prune into RUN/pruned/ (safetensors + the pruned structure), fine-tune, and report size, MACs and metric."""
    from dlopt.contract.deliver import deliver, plan_output
    from dlopt.contract.target import TargetOptions, resolve_target
    from dlopt.core.errors import ConfigError
    from dlopt.models.options import parse_sets
    from dlopt.prune import PruneConfig

    if exact and round_to not in (None, 1):
        raise ConfigError(f"--exact keeps the exact ratio and --round-to {round_to} rounds it: pass one of them")
    dest = plan_output(output, force, (".json", ".safetensors"))  # a checkpoint: record + weights, one stem
    cfg = PruneConfig(ratio=ratio, method=method, importance=importance, iterative_steps=iterative_steps,
                      finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, global_pruning=global_pruning,
                      round_to=1 if exact else round_to, seed=seed, name=stage_name, bench=bench, data_limit=limit,
                      target_speedup=target_speedup, target_runtime=target_runtime, target_batch=target_batch,
                      max_drop=max_drop)
    opts = TargetOptions(name=name, checkpoint=checkpoint, run=run, root=out, sets=parse_sets(sets) or None,
                         input_size=input_size, input_shape=parse_shape(input_shape), tiny=tiny, seed=seed,
                         weights=weights)
    from dlopt.prune.stage import prune_check, run_prune

    with status("pruning…") as spinner:
        target = resolve_target(opts, prune_check(cfg))  # a method the spec rules out: no run directory is made
        outcome = run_prune(target, cfg, lambda msg: spinner.update(msg + "…"))
    copies = deliver(dest, [outcome.record], outcome.run_dir, stage_name)
    if as_json:
        print_json({**outcome.to_json(), **({"output": [str(p) for p in copies]} if dest else {})})
    else:
        _render(outcome.result, outcome.record)
        for p in copies:
            note(f"[dim]wrote {p}[/dim]", highlight=False)


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.4g}" if isinstance(x, float) else human(x))


def _render(r: dict[str, Any], record: Path) -> None:
    table = Table(title=f"{r['arch']}: {r['method']} pruning, ratio {r['ratio']:g}", title_justify="left")
    for col in ("", "before", "after", "change"):
        table.add_column(col)
    if "achieved" in r:
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
