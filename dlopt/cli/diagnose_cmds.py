"""`dlopt diagnose`: where an exported or int8 file parts from its model, layer by layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import JsonOpt, err_console, note, print_json, print_table, status

TargetArg = Annotated[Path, typer.Argument(
    help="The model the file was made from: a run directory or a checkpoint (.json).", show_default=False)]
FileArg = Annotated[Path, typer.Argument(help="The .onnx or OpenVINO .xml file to compare with it.",
                                         show_default=False)]


def diagnose_cmd(
    target: TargetArg,
    file: FileArg,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Inputs compared: the run's test split where it "
                                         "feeds the model, else random valid inputs.")] = 16,
    tolerance: Annotated[float | None, typer.Option(
        "--tolerance", show_default=False, help="Relative error per layer that flags it (default 0.1 for int8 files, "
        "0.01 fp16, 0.001 fp32).")] = None,
    inputs: Annotated[Path | None, typer.Option("--inputs", metavar="FILE.npz", show_default=False,
                                                help="Compare on your own inputs (one array per model input).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare every layer of FILE with the eager model on the same inputs; mark the first past the tolerance."""
    from dlopt.data.inputs_file import precheck
    from dlopt.verify.diagnose import DiagnoseOptions, diagnose_file

    precheck(inputs)  # a missing inputs file fails before any model is built
    with status(f"diagnosing {file}…"):
        outcome = diagnose_file(DiagnoseOptions(target, file, samples=samples, tolerance=tolerance, inputs=inputs))
    report = outcome.report
    for line in report["notes"]:
        err_console.print(f"[yellow]note:[/yellow] {line}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({**report, "report": str(outcome.json_path)})
        return
    _render(report)
    first = report["first_flagged"]
    verdict = (f"first layer past {report['tolerance']:g}: [bold red]{first['layer'] or '(model)'}[/bold red] "
               f"({', '.join(first['modules'])}; relative error {first['rel_error']:.3g})" if first else
               f"no layer past {report['tolerance']:g}")
    note(verdict, highlight=False)
    note(f"[dim]names from {report['mapping']}; inputs: {report['samples']} from {report['inputs']}; "
         f"report: {outcome.json_path}" + (f"; plot: {outcome.plot_path}" if outcome.plot_path else "") + "[/dim]",
         highlight=False)
    if outcome.run_dir is not None:
        note(f"[dim]recorded as the run's stage diagnose: `dlopt report {outcome.run_dir}` shows it[/dim]",
             highlight=False)


def _num(x: float | None, fmt: str = "{:.3g}") -> str:
    return "-" if x is None else fmt.format(x)


def _render(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['arch']}: {Path(report['file']).name} ({report['kind']}) against eager, per layer",
                  title_justify="left")
    for col in ("#", "layer", "op", "rel error", "SQNR dB", "max abs", "", "folded in"):
        table.add_column(col)
    first = (report["first_flagged"] or {}).get("index")
    for i, r in enumerate(report["rows"]):
        mark = "[bold red]first[/bold red]" if i == first else ("[red]over[/red]" if r["flagged"] else "")
        table.add_row(str(i), r["layer"] or "(model)", r["op"] + (" q" if r["quantized"] else ""),
                      _num(r["rel_error"]), _num(r["sqnr_db"], "{:.1f}"), _num(r["max_abs"]), mark,
                      ", ".join(m for m in r["modules"] if m != r["layer"]))
    for o in report["outputs"]:
        table.add_row("out", f"output {o['output']}", "", _num(o["rel_error"]), _num(o["sqnr_db"], "{:.1f}"),
                      _num(o["max_abs"]), "[red]over[/red]" if o["flagged"] else "", "")
    print_table(table, keep=("layer", "rel error", "", "SQNR dB", "op"))
    if report.get("top1_agreement") is not None:
        note(f"top-1 agreement with eager: {report['top1_agreement']:.3f}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose_cmd)
