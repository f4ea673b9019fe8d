"""`dlopt train`: train an architecture on its data into a new run (or continue one with --resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlopt.cli.common import (
    QUIET,
    InputShapeOpt,
    InputSizeOpt,
    JsonOpt,
    OutOpt,
    SetOpt,
    TinyOpt,
    console,
    err_console,
    parse_shape,
    print_json,
    verbosity,
)
from dlopt.core.errors import CheckFailedError
from dlopt.core.layout import DEFAULT_ROOT
from dlopt.train.config import OptimizerName, TrainConfig

TORCHRUN_HELP = "Passed to torchrun for multi-node runs (with --nproc-per-node)."


def _torchrun_args(nnodes: str | None, node_rank: int | None, master_addr: str | None, master_port: int | None,
                   rdzv_endpoint: str | None, rdzv_backend: str | None) -> tuple[str, ...]:
    pairs = (("--nnodes", nnodes), ("--node-rank", node_rank), ("--master-addr", master_addr),
             ("--master-port", master_port), ("--rdzv-endpoint", rdzv_endpoint), ("--rdzv-backend", rdzv_backend))
    return tuple(part for flag, value in pairs if value is not None for part in (flag, str(value)))


def train_cmd(
    name: Annotated[str | None, typer.Argument(help="Architecture name (see `dlopt list`); omit with --resume.",
                                               show_default=False)] = None,
    data: Annotated[str | None, typer.Option("--data", help="Dataset name (default: the architecture's own).")] = None,
    data_path: Annotated[Path | None, typer.Option("--data-path", help="Your files: ImageFolder dir, MNIST/CIFAR-10 "
                                                   "files, .npz with X and y, or CSV of text,label.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (default: the family's); with --resume, "
                                                       "train on until this many in all.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Global batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = None,
    optimizer: Annotated[OptimizerName | None, typer.Option("--optimizer", help="Optimizer.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data splits, weights and shuffling.")] = 0,
    out: OutOpt = DEFAULT_ROOT,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the run in RUN_DIR from its last epoch, with the options it was started with.")] = None,
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", min=1, help="Workers on this machine (torchrun).")] = 1,
    nnodes: Annotated[str | None, typer.Option("--nnodes", help=TORCHRUN_HELP)] = None,
    node_rank: Annotated[int | None, typer.Option("--node-rank", help=TORCHRUN_HELP)] = None,
    master_addr: Annotated[str | None, typer.Option("--master-addr", help=TORCHRUN_HELP)] = None,
    master_port: Annotated[int | None, typer.Option("--master-port", help=TORCHRUN_HELP)] = None,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help=TORCHRUN_HELP)] = None,
    rdzv_backend: Annotated[str | None, typer.Option("--rdzv-backend", help=TORCHRUN_HELP)] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision on CUDA (bf16, or fp16 with a grad scaler).")] = False,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    tiny: TinyOpt = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use at most N training samples.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train NAME on its data: best checkpoint, metrics.jsonl, learning curve and test metric in a new run."""
    from dlopt.core.errors import UsageError
    from dlopt.train import train

    if name is None and resume is None:
        raise UsageError("name an architecture to train (see dlopt list), or give --resume RUN_DIR")
    cfg = TrainConfig(arch=name or "", data=data, data_path=data_path, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, seed=seed, out=out, resume=resume,
                      sets=_build_sets(name, sets, input_size, input_shape), tiny=tiny,
                      limit=limit, amp=amp, nproc_per_node=nproc_per_node, progress=not as_json and verbosity() > QUIET,
                      torchrun_args=_torchrun_args(nnodes, node_rank, master_addr, master_port, rdzv_endpoint,
                                                   rdzv_backend))
    result = train(cfg)
    if as_json:
        print_json(result.to_json())
    else:
        _render(result)
    if result.stopped and result.stopped.startswith("non-finite"):
        raise CheckFailedError(f"training stopped: {result.stopped}; lower --lr or check the data")


def _build_sets(name: str | None, sets: list[str] | None, input_size: int | None,
                input_shape: str | None) -> dict[str, object]:
    """--set plus --input-size/--input-shape (the same build options as in every other command; --set wins)."""
    from dlopt.core.user_code import is_user_ref
    from dlopt.models.options import parse_sets

    given = {k: v for k, v in (("input_size", input_size), ("input_shape", parse_shape(input_shape))) if v is not None}
    if given and name and not is_user_ref(name):  # "mlp takes no --input-shape" before anything starts
        from dlopt.models.registry import get_spec, make_model_config

        make_model_config(get_spec(name), input_size=input_size, input_shape=parse_shape(input_shape))
    return {**given, **parse_sets(sets)}


def _render(result: object) -> None:
    r = result  # TrainResult
    table = Table(title=f"trained {r.arch} -> {r.run_dir}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in r.test.items():
        table.add_row(f"test {key}", f"{value:.4f}")
    hp = r.hparams
    rows = [("best epoch", f"{r.best_epoch} of {r.epochs_run} run"), ("stopped", r.stopped or "all epochs done"),
            ("data", f"{r.data.get('name', '-')} {r.data.get('sizes', '')}"),
            ("hyperparameters", f"{hp.get('optimizer')} lr {hp.get('lr')} batch {hp.get('batch_size')} "
                                f"epochs {hp.get('epochs')}"),
            ("workers / device", f"{r.world_size} / {r.device}"), ("time", f"{r.seconds:.1f} s")]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if r.stopped and r.stopped.startswith("non-finite"):
        err_console.print(f"[yellow]warning:[/yellow] {r.stopped}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
