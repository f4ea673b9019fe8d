"""Option groups and help panels: a command takes a few frozen dataclasses instead of thirty parameters.

    @dataclass(frozen=True)
    class PruneArgs:
        ratio: Annotated[float, typer.Option("--ratio", rich_help_panel="Prune options")] = 0.3

        def config(self) -> PruneConfig: ...

    @grouped
    def prune_cmd(name: NameArg = None, *, args: PruneArgs, model: TargetArgs, outputs: OutputArgs) -> None:
        ...

Typer sees each group's fields as the command's own options (same names, types and panels as if written out);
the call rebuilds the groups before the command runs. So a command's body is parse -> build config -> call one
library function -> render, and the code that turns a group into a config sits beside its options.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

# Help panels, in the order a command's help shows them: Arguments, Options (-q, -v, --help), the command's own
# panels ("Prune options"...), then these (`grouped` sorts a command's options so).
TARGET = "Target"  # which model: a run, a checkpoint, weights, the code it may run
BUILD = "Model build"  # options of a model built by name
OUTPUT = "Output"  # where results go and how they are printed
ADVANCED = "Advanced"  # rarely needed: seeds, sample caps, variant names, exporters
LAST = (TARGET, BUILD, OUTPUT, ADVANCED)


def stage_panel(stage: str) -> str:
    """The panel of a command's own options: 'Prune options'."""
    return f"{stage.capitalize()} options"


def choices(values: Iterable[Any]) -> str:
    """The metavar that shows an option's choices as Typer shows an enum's: <a|b|c>. For options whose value the
    library checks (its message names the choices, and tests and scripts read it): they stay a `str`, and two
    commands' --method may offer different choices under one name (tests/test_option_vocabulary.py)."""
    return "<" + "|".join(str(v.value if isinstance(v, Enum) else v) for v in values) + ">"


def grouped(func: Callable[..., Any]) -> Callable[..., Any]:
    """Let `func` take option groups: each parameter annotated with a dataclass is replaced, in the signature
    Typer reads, by that dataclass's fields (each an `Annotated[..., typer.Option(...)]` with its default)."""
    sig = inspect.signature(func, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for p in sig.parameters.values():
        if not (isinstance(p.annotation, type) and dataclasses.is_dataclass(p.annotation)):
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        hints = typing.get_type_hints(p.annotation, include_extras=True)
        fields = [f for f in dataclasses.fields(p.annotation) if f.init]
        groups[p.name] = (p.annotation, [f.name for f in fields])
        params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                     default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
                   for f in fields]
    params.sort(key=_panel_rank)  # stable: within a panel, the order written
    names = [p.name for p in params] + list(groups)
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise TypeError(f"{func.__qualname__}: option groups repeat {', '.join(sorted(clash))}")

    @functools.wraps(func)
    def call(**kwargs: Any) -> Any:
        for name, (cls, fields) in groups.items():
            kwargs[name] = cls(**{f: kwargs.pop(f) for f in fields})
        return func(**kwargs)

    call.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params}  # __signature__ wins over __wrapped__'s
    return call


def _panel_rank(p: inspect.Parameter) -> int:
    panel = next((getattr(m, "rich_help_panel", None) for m in typing.get_args(p.annotation)[1:]), None)
    return 1 + LAST.index(panel) if panel in LAST else 0
