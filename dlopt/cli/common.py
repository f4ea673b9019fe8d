"""Shared CLI pieces: option aliases, consoles, model resolution from options, rendering."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dlopt.errors import ConfigError

console = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes get whole tables, not 80 columns
err_console = Console(stderr=True)

QUIET, NORMAL, VERBOSE = -1, 0, 1
_verbosity = {"level": NORMAL}  # set by -q/-v (dlopt.cli.app), reset for each invocation


def set_verbosity(level: int) -> None:
    _verbosity["level"] = level


def verbosity() -> int:
    return _verbosity["level"]


def note(text: str, **kwargs: Any) -> None:
    """A line around the result (hints, legends, where files went): printed unless -q."""
    if verbosity() > QUIET:
        console.print(text, **kwargs)


def debug(text: str) -> None:
    """Detail only -v shows, on stderr so that stdout stays the result."""
    if verbosity() >= VERBOSE:
        err_console.print(f"[dim]debug: {text}[/dim]", highlight=False, soft_wrap=True)


class _Silent:
    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, _msg: str) -> None:
        return None


class _Lines(_Silent):
    """-v: each progress message as its own timestamped line on stderr instead of a spinner."""

    def __init__(self, first: str) -> None:
        import time

        self._t0 = time.perf_counter()
        self.update(first)

    def update(self, msg: str) -> None:
        import time

        err_console.print(f"[dim]{time.perf_counter() - self._t0:7.1f}s {msg}[/dim]", highlight=False, soft_wrap=True)


def status(message: str, silent: bool = False) -> Any:
    """A spinner on stderr; one line per step with -v; nothing with -q (or `silent`, e.g. --json)."""
    if verbosity() >= VERBOSE:
        return _Lines(message)
    if silent or verbosity() == QUIET:
        return _Silent()
    return err_console.status(message)

def _name_trust(value: str | None) -> str | None:
    """A user model NAME on the command line is the user's own choice: records naming the same code may run it."""
    from dlopt.codetrust import is_user_ref, set_cli

    set_cli(name=value if value and is_user_ref(value) else None)
    return value


def _model_code_trust(values: list[str] | None) -> list[str] | None:
    from dlopt.codetrust import is_user_ref, set_cli

    bad = [v for v in values or [] if not is_user_ref(v)]
    if bad:
        raise typer.BadParameter(f"{bad[0]!r} is not a model reference; give path/to/file.py:fn or package.module:fn")
    set_cli(refs=tuple(values or ()))
    return values


def _trust_code(value: bool) -> bool:
    from dlopt.codetrust import set_cli

    set_cli(everything=bool(value))
    return value


ArchArg = Annotated[str, typer.Argument(help="Architecture name (see `dlopt list`), torchvision:NAME, or file.py:fn.",
                                        show_default=False, callback=_name_trust)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Build option key=value (repeatable), e.g. num_classes=5.")]
InputSizeOpt = Annotated[int | None, typer.Option("--input-size", min=1, help="The input_size build option: image side for image models, features per step for RNNs.")]
InputShapeOpt = Annotated[str | None, typer.Option("--input-shape", help="Per-sample input shape for user models, e.g. 3,32,32.")]
TinyOpt = Annotated[bool, typer.Option("--tiny", help="Use the spec's tiny test configuration.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output root for runs.")]
RunOpt = Annotated[Path | None, typer.Option("--run", help="Run directory to work on (default: the latest run).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Batch size of the example input.")]
NameArg = Annotated[str | None, typer.Argument(help="Architecture name, checkpoint (.json) or run directory; "
                                                    "nothing = the latest run's model.", show_default=False,
                                              callback=_name_trust)]
CheckpointOpt = Annotated[Path | None, typer.Option("--checkpoint", help="Checkpoint record (.json) to start from.")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", metavar="DEFAULT|NAME|PATH", show_default=False,
    help="Weights for a model built by name: torchvision weights (DEFAULT, IMAGENET1K_V1) from the local torch hub "
         "cache, or a state dict file (.safetensors, or .pth/.pt read with torch.load(weights_only=True)).")]
ModelCodeOpt = Annotated[list[str] | None, typer.Option(
    "--model-code", metavar="FILE.py:FN", callback=_model_code_trust,
    help="User model code a checkpoint record or run may run (repeatable); records naming other code are refused.")]
OutputOpt = Annotated[Path | None, typer.Option(
    "-o", "--output", show_default=False,
    help="Also write the result here: a file, or a directory (ending with /); the run keeps its own copy.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace files that -o/--output would overwrite.")]
TrustCodeOpt = Annotated[bool, typer.Option(
    "--trust-code", callback=_trust_code,
    help="Run whatever user model code a checkpoint record or run names. Only for files you trust.")]


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--input-shape {text!r} is not a list of integers; use e.g. 3,32,32") from None
    if not dims or min(dims) < 1:
        raise ConfigError(f"--input-shape {text!r} needs positive sizes, e.g. 3,32,32")
    return dims


def resolve(name: str, sets: list[str] | None, input_size: int | None = None, input_shape: str | None = None,
            tiny: bool = False) -> tuple[Any, Any]:
    """CLI options -> (spec, config), with every error typed."""
    from dlopt.options import parse_sets
    from dlopt.registry import get_spec, make_model_config

    spec = get_spec(name)
    cfg = make_model_config(spec, parse_sets(sets), input_size=input_size, input_shape=parse_shape(input_shape), tiny=tiny)
    return spec, cfg


def print_table(table: Any, keep: tuple[str, ...]) -> None:
    """Print a Rich table; on a console too narrow for it, drop optional columns (right to left) until it fits.

    `keep` names the columns that always stay; --json and --csv always carry everything.
    """
    optional = [c for c in reversed(table.columns) if str(c.header) not in keep]
    while optional and console.measure(table, options=console.options.update_width(10_000)).maximum > console.width:
        table.columns.remove(optional.pop(0))
    console.print(table)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}P"
