"""Where the CLI writes: the two consoles, their width, -q/-v, spinners, tables that fit, and JSON."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import typer
from rich.console import Console

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


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


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
