"""`dlopt`: the Typer app, global options, and the one error boundary."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup, TyperOption

from dlopt import __version__

try:  # typer >= 0.22 vendors click, and raises its exceptions; typer exports no public base class
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click.exceptions import ClickException

from dlopt.core.errors import EXIT_CODES, INTERRUPTED_EXIT_CODE, DloptError

INTERNAL_ERROR_EXIT = 70
_type_of = TyperOption.display_type_rich


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value: show `--json`, not `--json <bool>` (typer's rich help shows a type for every option)."""
    return None if self.is_flag and not self.count else _type_of(self, ctx)


TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
VERBOSITY_FLAGS = ("quiet", "verbose")
# `dlopt --help` lists the commands in the order of the work; a command not named here comes after these.
COMMAND_ORDER = ["list", "info", "train", "prune", "quantize", "export", "verify", "bench", "optimize", "pipeline",
                 "report", "runs"]
INTERRUPTED = ("[yellow]interrupted[/yellow]: partial files were removed and the stage is marked interrupted in the "
               "run's manifest")


class DloptGroup(TyperGroup):
    """Runs every command inside the error boundary: library errors become one line and an exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """-q/-v are declared once, on the root callback, and offered by every command too (`dlopt bench -q`)."""
        super().__init__(*args, **kwargs)
        shared = [p for p in self.params if p.name in VERBOSITY_FLAGS]
        for cmd in self.commands.values():
            cmd.params += [p for p in shared if p.name not in {q.name for q in cmd.params}]

    def list_commands(self, ctx: Any) -> list[str]:
        known = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: known.get(name, len(known)))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Usage errors become one line too (click would print a multi-line panel)."""
        from dlopt.cli.console import NORMAL, configure_width, err_console, set_verbosity
        from dlopt.cli.resume import set_argv

        set_verbosity(NORMAL)
        configure_width()
        set_argv(kwargs.get("args") or (args[0] if args else None) or sys.argv[1:])
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            err_console.print("[yellow]interrupted[/yellow]")
            rv = INTERRUPTED_EXIT_CODE
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `dlopt` alone: the help is the answer
                exc.show()
                return sys.exit(0) if standalone_mode else 0
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "dlopt"
            err_console.print(f"[bold red]error:[/bold red] {escape(exc.format_message())} (see {where} --help)",
                              highlight=False, soft_wrap=True)
            rv = exc.exit_code
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: typer.Context) -> Any:
        from dlopt.cli.console import QUIET, err_console, verbosity
        from dlopt.core.user_code import code_trust_scope
        from dlopt.core.warn import calm_warnings

        def warn(line: str) -> None:
            if verbosity() > QUIET:
                err_console.print(f"[dim]{line}[/dim]", highlight=False)

        try:  # code_trust_scope: --trust-code and friends last for this one command
            with code_trust_scope(), calm_warnings(warn):
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except DloptError as exc:
            if _debug(ctx):
                raise
            err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (KeyboardInterrupt, ImportError) as exc:
            # pybind11 modules (onnxruntime, matplotlib) turn Ctrl-C during their import into an ImportError
            if isinstance(exc, ImportError) and not isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                return self._internal_error(ctx, exc)
            err_console.print(f"{INTERRUPTED}; {_next_step()}", highlight=False, soft_wrap=True)
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
        except BrokenPipeError:  # output piped into a reader that closed early (`| head`): not an error
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing else may write to the closed pipe
            raise typer.Exit(0) from None
        except Exception as exc:  # a bug in dlopt, not the user's mistake
            return self._internal_error(ctx, exc)

    def _internal_error(self, ctx: Any, exc: BaseException) -> Any:
        from dlopt.cli.console import err_console

        if _debug(ctx):
            raise exc
        err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(str(exc))} "
                          "(rerun with --debug for the traceback, and please report it)", highlight=False)
        raise typer.Exit(INTERNAL_ERROR_EXIT) from None


def _next_step() -> str:
    """The exact resume command when the interrupted command offered one (dlopt.cli.resume), else: rerun it."""
    from dlopt.cli.resume import resume_line

    try:
        line = resume_line()
    except OSError:  # the run directory went away meanwhile: nothing to resume
        line = None
    return f"resume with: {escape(line)}" if line else "rerun the command"


def _debug(ctx: typer.Context) -> bool:
    return bool((ctx.obj or {}).get("debug"))


def _level(level: int) -> Any:
    def set_level(ctx: typer.Context, param: Any, value: bool) -> bool:
        from dlopt.cli.console import NORMAL, set_verbosity, verbosity

        if value:
            if verbosity() not in (NORMAL, level):
                raise typer.BadParameter("-q and -v contradict each other; give one of them")
            set_verbosity(level)
            if level > NORMAL:  # dlopt's own loggers only: torch's debug logs would bury the answer
                import logging

                logger = logging.getLogger("dlopt")
                logger.setLevel(logging.DEBUG)
                if not logger.handlers:
                    logger.addHandler(logging.StreamHandler())
        return value
    return set_level


app = typer.Typer(
    cls=DloptGroup, no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    help="Train, prune, quantize, export, verify and benchmark PyTorch models.\n\n"
         "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + f"; {INTERNAL_ERROR_EXIT} internal error.",
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlopt {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", expose_value=False, callback=_level(-1),
                                        help="Print only results and errors: no progress, notes or hints.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", expose_value=False, callback=_level(1),
                                          help="Show debug detail: each step with its time.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    max_params: Annotated[float | None, typer.Option("--max-params", min=1, help="Refuse models with more parameters "
                                                     "than this (default 2e9, or half the RAM).")] = None,
) -> None:
    ctx.obj = {"debug": debug}
    from dlopt.models.options import set_max_params

    set_max_params(max_params)  # None: the default ceiling (or DLOPT_MAX_PARAMS) for this command


def _register() -> None:
    """Each command group is a module dlopt/cli/*_cmds.py with register(app): adding one is one new file."""
    import importlib
    import pkgutil

    import dlopt.cli

    for info in sorted(pkgutil.iter_modules(dlopt.cli.__path__), key=lambda m: m.name):
        if info.name.endswith("_cmds"):
            importlib.import_module(f"dlopt.cli.{info.name}").register(app)


_register()


def main() -> None:
    sys.exit(app(prog_name="dlopt"))
