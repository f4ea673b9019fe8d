"""Shared CLI pieces: option aliases, consoles, model resolution from options, rendering."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dlopt.core.errors import ConfigError, UsageError
from dlopt.models.spec import Exporter

console = Console()  # its width is set for each invocation (configure_width): COLUMNS, the terminal, or unbounded
err_console = Console(stderr=True)
UNBOUNDED = 100_000  # piped with no COLUMNS: lines as long as their content, nothing wrapped or cut


def configure_width() -> None:
    """COLUMNS wins (a terminal or a pipe); else the terminal's width; else (piped) no limit at all."""
    cols = os.environ.get("COLUMNS", "")
    for con, stream in ((console, sys.stdout), (err_console, sys.stderr)):
        if cols.isdigit() and int(cols) > 0:
            con.width = int(cols)
        else:
            con._width = None if stream.isatty() else UNBOUNDED  # None: ask the terminal at each print

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
    from dlopt.core.user_code import is_user_ref, set_cli

    set_cli(name=value if value and is_user_ref(value) else None)
    return value


def _model_code_trust(values: list[str] | None) -> list[str] | None:
    from dlopt.core.user_code import is_user_ref, set_cli

    bad = [v for v in values or [] if not is_user_ref(v)]
    if bad:
        raise typer.BadParameter(f"{bad[0]!r} is not a model reference; give path/to/file.py:fn or package.module:fn")
    set_cli(refs=tuple(values or ()))
    return values


def _trust_code(value: bool) -> bool:
    from dlopt.core.user_code import set_cli

    set_cli(everything=bool(value))
    return value


ArchArg = Annotated[str, typer.Argument(help="Architecture name (see `dlopt list`), torchvision:NAME, or file.py:fn.",
                                        show_default=False, callback=_name_trust)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Build option key=value (repeatable), e.g. num_classes=5.")]
InputSizeOpt = Annotated[int | None, typer.Option("--input-size", min=1, help="The input_size build option: image side for image models, features per step for RNNs.")]
InputShapeOpt = Annotated[str | None, typer.Option("--input-shape", help="A user model's inputs (file.py:fn), "
                                                   "without the batch: 3,32,32 (one float32 input), or "
                                                   "NAME:DTYPE:DIMS[:LOW-HIGH] each, e.g. ids:int64:16,mask:bool:16 "
                                                   "(docs/data.md).")]
ExporterOpt = Annotated[Exporter, typer.Option("--exporter", help="ONNX exporter: dynamo (torch.export based) or legacy "
                                               "(TorchScript based, faster to export); also used by quantize and bench "
                                               "when they export.")]
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


# -- options renamed so that one name means one thing in every command (issue 18) --------------------------------
# An old spelling is a hidden option: it keeps working for one release, with a one-line notice on stderr.

def old_spelling(old: str) -> Any:
    """A hidden option under an old name; read it with `renamed(...)`."""
    return typer.Option(old, hidden=True, show_default=False)


def renamed(new_value: Any, old_value: Any, new: str, old: str, what: str = "") -> Any:
    """The value given under the new name or the old spelling (with a notice); both at once is a usage error."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise UsageError(f"{old} is the old spelling of {new}: give {new} only")
    if verbosity() > QUIET:
        err_console.print(f"note: {old} is now {new}{what}; the old spelling goes away in the next release",
                          markup=False, highlight=False, soft_wrap=True)
    return old_value


def parse_shape(text: str | None) -> tuple[int, ...] | str | None:
    """'3,32,32' -> (3, 32, 32), one float32 input; 'ids:int64:16,mask:bool:16' (NAME:DTYPE:DIMS[:LOW-HIGH], any
    ':') -> that signature's canonical text, which picks a user model's spec (dlopt.models.zoo.external.parse_signature)."""
    if text is None:
        return None
    if ":" in text:
        from dlopt.models.zoo.external import parse_signature, signature_text

        return signature_text(parse_signature(text))
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--input-shape {text!r} is not a list of integers; use e.g. 3,32,32, or NAME:DTYPE:DIMS "
                          "per input (e.g. ids:int64:16,mask:bool:16)") from None
    if not dims or min(dims) < 1:
        raise ConfigError(f"--input-shape {text!r} needs positive sizes, e.g. 3,32,32")
    return dims


def resolve(name: str, sets: list[str] | None, input_size: int | None = None, input_shape: str | None = None,
            tiny: bool = False) -> tuple[Any, Any]:
    """CLI options -> (spec, config), with every error typed."""
    from dlopt.models.options import parse_sets
    from dlopt.models.registry import get_spec, make_model_config, spec_for

    spec = get_spec(name)
    cfg = make_model_config(spec, parse_sets(sets), input_size=input_size, input_shape=parse_shape(input_shape), tiny=tiny)
    return spec_for(spec, cfg), cfg


def _table_width(table: Any) -> int:
    return console.measure(table, options=console.options.update_width(UNBOUNDED)).maximum


def wrap_name(text: str, width: int) -> str:
    """Break a name into lines of at most `width` after separators (/ : - _ . space), folding a long part."""
    lines, line = [], ""
    for part in re.findall(r"[^/:\-_. ]*[/:\-_. ]?", text):
        while len(part) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line] if line else lines)


def print_table(table: Any, keep: tuple[str, ...], wrap: tuple[str, ...] = ()) -> None:
    """Print a Rich table that fits the console without cutting a value.

    Columns not in `keep` go first, right to left; then names in the `wrap` columns are broken over lines; then
    `keep` columns from its end (keep lists them most important first; the first always stays). No cell is ever
    cut: a table still too wide overflows the line instead. A note names hidden columns (--json has them all).
    """
    for column in table.columns:
        column.no_wrap = True  # Rich would otherwise shrink and cut numbers ("9.4...") to fit
    width, hidden = console.width, []
    optional = [c for c in reversed(table.columns) if str(c.header) not in keep]
    kept = sorted((c for c in table.columns if str(c.header) in keep), key=lambda c: -keep.index(str(c.header)))
    for column in optional + ["wrap"] + kept[:-1]:  # type: ignore[operator]
        if _table_width(table) <= width:
            break
        if column == "wrap":
            _wrap_columns(table, wrap, width)
            continue
        table.columns.remove(column)
        hidden.append(str(column.header))
    old, console.width = console.width, max(width, _table_width(table))
    try:
        console.print(table)
    finally:
        console.width = old
    if hidden:
        note(f"[dim]hidden at {width} columns: {', '.join(reversed(hidden))} (a wider terminal, COLUMNS=..., or "
             "--json shows them)[/dim]", highlight=False)


def _wrap_columns(table: Any, wrap: tuple[str, ...], width: int) -> None:
    for column in (c for c in table.columns if str(c.header) in wrap):
        excess = _table_width(table) - width
        if excess <= 0:
            return
        longest = max((len(line) for cell in column._cells if isinstance(cell, str) for line in cell.splitlines()),
                      default=0)
        room = max(12, len(str(column.header)), longest - excess)
        column._cells = ["\n".join(wrap_name(line, room) for line in c.splitlines()) if isinstance(c, str)
                         and "[" not in c else c for c in column._cells]


def sig3(x: float) -> str:
    """Three significant digits, never in exponent form: 4013 -> '4013', 9.421 -> '9.42', 0.01234 -> '0.0123'."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if abs(x) >= 99.95:
        return f"{x:.0f}"
    r = float(f"{x:.3g}")  # 9.996 -> 10.0: the digits after rounding decide the decimals
    return f"{r:.{max(0, 2 - math.floor(math.log10(abs(r))))}f}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else sig3(x)


def fmt_speedup(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _scaled(x: float | None, units: tuple[str, str, str], sep: str, small: str) -> str:
    """x in the largest of units (1e9, 1e6, 1e3) it reaches, 3 significant digits; `small` formats the rest."""
    if x is None:
        return "-"
    for unit, scale in zip(units, (1e9, 1e6, 1e3), strict=True):
        if abs(x) >= scale:
            return f"{sig3(x / scale)}{sep}{unit}"
    return small


def fmt_bytes(n: float | None) -> str:
    return _scaled(n, ("GB", "MB", "KB"), " ", "-" if n is None else f"{n:.0f} B")


def fmt_rate(x: float | None) -> str:
    """Items per second: 28123.4 -> '28.1k', 512 -> '512', 3.2e6 -> '3.20M'."""
    return _scaled(x, ("G", "M", "k"), "", "-" if x is None else sig3(x))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}P"
