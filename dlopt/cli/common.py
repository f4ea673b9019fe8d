"""Shared CLI pieces: option aliases, old spellings, model resolution from options, number formats. The consoles
and tables live in dlopt.cli.console, the target options in dlopt.cli.target_opts; both are importable from here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from dlopt.cli.console import (  # noqa: F401 - one import point for the command modules
    NORMAL,
    QUIET,
    UNBOUNDED,
    VERBOSE,
    configure_width,
    console,
    debug,
    err_console,
    note,
    print_json,
    print_table,
    set_verbosity,
    status,
    verbosity,
    wrap_name,
)
from dlopt.cli.groups import ADVANCED, OUTPUT, choices  # noqa: F401
from dlopt.cli.target_opts import (  # noqa: F401
    ArchArg,
    CheckpointOpt,
    InputShapeOpt,
    InputSizeOpt,
    ModelCodeOpt,
    NameArg,
    OutOpt,
    RunOpt,
    SetOpt,
    TargetArgs,
    TinyOpt,
    TrustCodeOpt,
    WeightsOpt,
    _name_trust,
    parse_shape,
)
from dlopt.core.errors import UsageError
from dlopt.models.spec import Exporter

ExporterOpt = Annotated[Exporter, typer.Option("--exporter", rich_help_panel=ADVANCED,
                                               help="ONNX exporter: dynamo (torch.export based) or legacy "
                                               "(TorchScript based, faster to export); also used by quantize and bench "
                                               "when they export.")]
JsonOpt = Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT, help="Print JSON for scripts instead of a table.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Batch size of the example input.")]
OutputOpt = Annotated[Path | None, typer.Option(
    "-o", "--output", show_default=False, rich_help_panel=OUTPUT,
    help="Also write the result here: a file, or a directory (ending with /); the run keeps its own copy.")]
ForceOpt = Annotated[bool, typer.Option("--force", rich_help_panel=OUTPUT,
                                        help="Replace files that -o/--output would overwrite.")]
StageNameOpt = Annotated[str, typer.Option("--name", rich_help_panel=ADVANCED, help="Stage name and run sub-directory.")]


@dataclass(frozen=True)
class OutputArgs:
    """Where a stage's result goes besides its run (-o), and how it is printed (prune, quantize, export)."""

    output: OutputOpt = None
    force: ForceOpt = False
    as_json: JsonOpt = False

    def plan(self, suffixes: tuple[str, ...]) -> Any:
        """-o checked before anything runs (dlopt.contract.deliver.plan_output); None without -o."""
        from dlopt.contract.deliver import plan_output

        return plan_output(self.output, self.force, suffixes)


# -- options renamed so that one name means one thing in every command ---------------------------------------------
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


def resolve(name: str, sets: list[str] | None, input_size: int | None = None, input_shape: str | None = None,
            tiny: bool = False) -> tuple[Any, Any]:
    """CLI options -> (spec, config), with every error typed."""
    from dlopt.models.options import parse_sets
    from dlopt.models.registry import get_spec, make_model_config, spec_for

    spec = get_spec(name)
    cfg = make_model_config(spec, parse_sets(sets), input_size=input_size, input_shape=parse_shape(input_shape), tiny=tiny)
    return spec_for(spec, cfg), cfg


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


def human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}P"
