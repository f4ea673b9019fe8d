"""`dlopt train`: train an architecture on its data into a new run (or continue one with --resume)."""

from __future__ import annotations

from dataclasses import dataclass
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
from dlopt.cli.groups import ADVANCED, grouped, stage_panel
from dlopt.core.errors import CheckFailedError
from dlopt.core.layout import DEFAULT_ROOT
from dlopt.train.config import OptimizerName, TrainConfig

TRAIN, DISTRIBUTED = stage_panel("train"), "Distributed"
TORCHRUN_HELP = "Passed to torchrun for multi-node runs (with --nproc-per-node)."


def _torchrun(flag: str, kind: type) -> object:
    return Annotated[kind | None, typer.Option(flag, rich_help_panel=DISTRIBUTED, help=TORCHRUN_HELP)]


@dataclass(frozen=True)
class TorchrunArgs:
    """Workers on this machine, and what torchrun needs for several machines."""

    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", min=1, rich_help_panel=DISTRIBUTED,
                                                help="Workers on this machine (torchrun).")] = 1
    nnodes: _torchrun("--nnodes", str) = None  # type: ignore[valid-type]
    node_rank: _torchrun("--node-rank", int) = None  # type: ignore[valid-type]
    master_addr: _torchrun("--master-addr", str) = None  # type: ignore[valid-type]
    master_port: _torchrun("--master-port", int) = None  # type: ignore[valid-type]
    rdzv_endpoint: _torchrun("--rdzv-endpoint", str) = None  # type: ignore[valid-type]
    rdzv_backend: _torchrun("--rdzv-backend", str) = None  # type: ignore[valid-type]

    def args(self) -> tuple[str, ...]:
        pairs = (("--nnodes", self.nnodes), ("--node-rank", self.node_rank), ("--master-addr", self.master_addr),
                 ("--master-port", self.master_port), ("--rdzv-endpoint", self.rdzv_endpoint),
                 ("--rdzv-backend", self.rdzv_backend))
        return tuple(part for flag, value in pairs if value is not None for part in (flag, str(value)))


@dataclass(frozen=True)
class TrainArgs:
    """`dlopt train`'s own options (the model's build options come apart, beside every command's)."""

    data: Annotated[str | None, typer.Option("--data", metavar="NAME", rich_help_panel=TRAIN,
                                             help="Dataset name (default: the architecture's own).")] = None
    data_path: Annotated[Path | None, typer.Option("--data-path", rich_help_panel=TRAIN, help="Your files: "
                                                   "ImageFolder dir, MNIST/CIFAR-10 files, .npz with X and y, or CSV "
                                                   "of text,label.")] = None
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, rich_help_panel=TRAIN, help="Epochs (default: the "
                                               "family's); with --resume, train on until this many in all.")] = None
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, rich_help_panel=TRAIN,
                                                   help="Global batch size.")] = None
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, rich_help_panel=TRAIN, help="Peak learning rate.")] = None
    optimizer: Annotated[OptimizerName | None, typer.Option("--optimizer", rich_help_panel=TRAIN,
                                                            help="Optimizer.")] = None
    amp: Annotated[bool, typer.Option("--amp", rich_help_panel=TRAIN,
                                      help="Mixed precision on CUDA (bf16, or fp16 with a grad scaler).")] = False
    resume: Annotated[Path | None, typer.Option(
        "--resume", rich_help_panel=TRAIN,
        help="Continue the run in RUN_DIR from its last epoch, with the options it was started with.")] = None
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=ADVANCED,
                                      help="Seed for data splits, weights and shuffling.")] = 0
    limit: Annotated[int | None, typer.Option("--limit", min=1, rich_help_panel=ADVANCED,
                                              help="Use at most N training samples.")] = None


@grouped
def train_cmd(
    name: Annotated[str | None, typer.Argument(help="Architecture name (see `dlopt list`); omit with --resume.",
                                               show_default=False)] = None,
    *,
    args: TrainArgs,
    workers: TorchrunArgs,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    tiny: TinyOpt = False,
    out: OutOpt = DEFAULT_ROOT,
    as_json: JsonOpt = False,
) -> None:
    """Train NAME on its data: best checkpoint, metrics.jsonl, learning curve and test metric in a new run."""
    from dlopt.cli.resume import offer_resume
    from dlopt.core.errors import UsageError
    from dlopt.train import train

    if name is None and args.resume is None:
        raise UsageError("name an architecture to train (see dlopt list), or give --resume RUN_DIR")
    cfg = TrainConfig(arch=name or "", data=args.data, data_path=args.data_path, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, seed=args.seed, out=out,
                      resume=args.resume, sets=_build_sets(name, sets, input_size, input_shape), tiny=tiny,
                      limit=args.limit, amp=args.amp, nproc_per_node=workers.nproc_per_node,
                      progress=not as_json and verbosity() > QUIET, torchrun_args=workers.args())
    offer_resume("train", args.resume, out)  # Ctrl-C from here on prints `dlopt train --resume RUN_DIR ...`
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
