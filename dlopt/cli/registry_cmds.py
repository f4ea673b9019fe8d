"""`dlopt list` and `dlopt info`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dlopt.cli.common import (
    ArchArg,
    InputShapeOpt,
    InputSizeOpt,
    JsonOpt,
    SetOpt,
    TinyOpt,
    console,
    human,
    note,
    print_json,
    print_table,
    resolve,
)
from dlopt.cli.groups import BUILD, grouped
from dlopt.models.spec import ExportFormat, Stage, Task

FORMAT_SHORT = {ExportFormat.ONNX: "onnx", ExportFormat.TORCHSCRIPT: "ts", ExportFormat.PT2: "pt2",
                ExportFormat.OPENVINO: "ov"}


FILTER = "Filters"


@grouped
def list_cmd(
    task: Annotated[Task | None, typer.Option(rich_help_panel=FILTER, help="Only this task.")] = None,
    stage: Annotated[Stage | None, typer.Option(rich_help_panel=FILTER,
                                                help="Only architectures that support this stage.")] = None,
    as_json: JsonOpt = False,
    timm: Annotated[str | None, typer.Option("--timm", metavar="PATTERN", rich_help_panel=FILTER, show_default=False,
                                             help="List timm's model names matching PATTERN ('*' for all, "
                                                  "'resnet*'), as timm:NAME.")] = None,
) -> None:
    """List the architectures in the zoo."""
    from dlopt.models.registry import TARGET_KINDS, list_specs

    if timm is not None:  # timm's own names, not the zoo
        from dlopt.models.timm_models import list_timm

        names = list_timm(timm)
        print_json(names) if as_json else console.print("\n".join(names) or f"no timm model matches {timm!r}",
                                                        highlight=False, soft_wrap=True)
        return
    specs = list_specs(task=task, stage=stage)
    if as_json:
        print_json([{"name": s.name, "task": str(s.task), "dataset": s.dataset, "metric": s.metric,
                     "stages": sorted(map(str, s.stages)), "formats": sorted(map(str, s.formats)),
                     "limits": dict(s.limits), "summary": s.summary} for s in specs])
        return
    table = Table(title=f"dlopt zoo ({len(specs)} architectures)", title_justify="left")
    table.add_column("name")
    for col in ("task", "data", "metric"):
        table.add_column(col)
    for st in Stage:
        table.add_column(st.value[0].upper(), justify="center")  # one letter each: legend below
    table.add_column("formats")
    for s in specs:
        marks = ["[green]✓[/green]" if st in s.stages else "[red]✗[/red]" for st in Stage]
        formats = ",".join(FORMAT_SHORT.get(f, str(f)) for f in ExportFormat if f in s.formats)  # new: its name
        table.add_row(s.name, str(s.task), s.dataset, s.metric, *marks, formats)
    stages = tuple(st.value[0].upper() for st in Stage)
    print_table(table, keep=("name", "task", "metric", *stages, "formats", "data"), wrap=("name",))
    legend = ", ".join(f"{st.value[0].upper()} {st.value}" for st in Stage)
    note(f"[dim]Stages: {legend}; ✗ = unsupported (`dlopt info NAME` says why). Formats: ts = TorchScript, "
                  "pt2 = torch.export. Targets:[/dim]")
    for form, what in TARGET_KINDS:
        note(f"[dim]  {form:<27} {what}[/dim]", highlight=False)


@grouped
def info_cmd(
    name: ArchArg,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    tiny: TinyOpt = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, rich_help_panel=BUILD,
                                            help="Batch size FLOPs and MACs are counted at.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Parameters, FLOPs/MACs, signature, size and supported stages of one architecture."""
    from dlopt.models.registry import create_model
    from dlopt.models.summary import describe

    spec, cfg = resolve(name, sets, input_size, input_shape, tiny)
    info = describe(spec, cfg, create_model(spec, cfg), batch_size)
    if as_json:
        print_json(info)
        return
    table = Table(title=f"{info['name']}: {info['summary']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("task / data / metric", f"{info['task']} / {info['dataset']} / {info['metric']}"),
        ("parameters", f"{info['parameters']:,}" + (f" (entry {info['entry']}: {info['entry_parameters']:,})"
                                                      if spec.entry else "")),
        ("size", f"{info['size_mb']:.2f} MB (fp32 weights and buffers)"),
        (f"FLOPs / MACs (batch {batch_size})", f"{human(info['flops'])} / {human(info['macs'])}"),
        ("inputs", "; ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in info["inputs"])),
        ("outputs", "; ".join(f"{o['name']} {o['shape']}" for o in info["outputs"])),
        ("dynamic axes", "; ".join(f"{i['name']} {i['dynamic_axes']}" for i in info["inputs"] if i["dynamic_axes"])),
        ("stages", ", ".join(info["stages"])),
        ("export formats", ", ".join(info["formats"]) + f" (TorchScript by {info['torchscript']})"),
        ("parity tolerance", f"atol {info['tolerance']['atol']:g}, rtol {info['tolerance']['rtol']:g}"),
        ("build options", ", ".join(f"{k}={v}" for k, v in info["config"].items())),
    ]
    rows += [(f"not supported: {k}", v) for k, v in info["limits"].items()]
    for row in rows:
        table.add_row(*row)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("info")(info_cmd)
