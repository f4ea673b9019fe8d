"""`dlopt runs`: the runs under an output root."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dlopt.cli.common import JsonOpt, OutOpt, console, print_json


def runs_cmd(out: OutOpt = Path("artifacts"), as_json: JsonOpt = False) -> None:
    """List runs (newest last) with the stages each has done."""
    from dlopt.runs import list_runs

    rows = []
    for run in list_runs(out):
        m = run.manifest()
        stages = {name: rec.get("status") for name, rec in m.get("stages", {}).items()}
        rows.append({"path": str(run.path), "arch": m.get("arch"), "created": m.get("created"), "stages": stages})
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no runs under {out}; start one with `dlopt train NAME`")
        return
    table = Table(title=f"runs under {out}", title_justify="left")
    for col in ("run", "arch", "created", "stages"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["path"], r["arch"], r["created"], ", ".join(f"{k}:{v}" for k, v in r["stages"].items()) or "-")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_cmd)
