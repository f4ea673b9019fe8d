"""`dlopt quantize`: int8 or half precision, chosen by measurement, held to an accuracy budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import (  # user model code a record may run (issue 21)  # -o/--output (issue 19)
    CheckpointOpt,
    ExporterOpt,
    ForceOpt,
    InputShapeOpt,
    InputSizeOpt,
    JsonOpt,
    ModelCodeOpt,
    NameArg,
    OutOpt,
    OutputOpt,
    RunOpt,
    SetOpt,
    TinyOpt,
    TrustCodeOpt,
    WeightsOpt,  # --weights for a model built by name (issue 15)
    console,
    fmt_bytes,
    fmt_ms,
    fmt_speedup,
    note,
    old_spelling,
    parse_shape,
    print_json,
    print_table,
    renamed,
    status,
)
from dlopt.core.errors import CheckFailedError
from dlopt.models.spec import Exporter, QuantFormat, QuantMethod

METHODS = ", ".join(QuantMethod)  # the one enum: spec.quant_methods, QuantizeConfig.method and this option


def quantize_cmd(
    name: NameArg = None,
    method: Annotated[str, typer.Option("--method", help=f"{METHODS}: auto builds every int8 path, measures latency "
                                        "and accuracy, and keeps the fastest within budget.")] = "auto",
    backend: Annotated[str | None, typer.Option(
        "--backend", help="onnxruntime, torch (torchao) or openvino (NNCF, static int8). Without it, auto measures "
        "onnxruntime and openvino (when installed) together; other methods use onnxruntime.",
        show_default=False)] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples",
                                                     help="Training samples used to calibrate static int8.")] = 256,
    calibration_method: Annotated[str, typer.Option("--calibration-method",
                                                    help="minmax, entropy or percentile.")] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor",
                                              help="One weight scale per output channel.")] = True,
    quant_format: Annotated[QuantFormat | None, typer.Option(
        "--quant-format", show_default=False,
        help="ONNX Runtime static int8 graph: qdq (default) or qoperator.")] = None,
    max_drop: Annotated[float, typer.Option("--max-drop", help="Accuracy budget in points (percentage points for "
                                                               "accuracy, % relative for other metrics).")] = 1.0,
    exporter: ExporterOpt = Exporter.DYNAMO,
    variant: Annotated[str | None, typer.Option("--variant", help="Checkpoint record inside the run to start from, "
                                                                  "e.g. pruned/model.json.")] = None,
    stage_name: Annotated[str, typer.Option("--name", help="Stage name and run sub-directory.")] = "int8",
    checkpoint: CheckpointOpt = None,
    out: OutOpt = Path("artifacts"),
    run: RunOpt = None,
    sets: SetOpt = None,
    input_size: InputSizeOpt = None,
    input_shape: InputShapeOpt = None,
    tiny: TinyOpt = False,
    trust_code: TrustCodeOpt = False,
    model_code: ModelCodeOpt = None,
    weights: WeightsOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    old_format: Annotated[str | None, old_spelling("--format")] = None,  # --quant-format before issue 18
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", metavar="FILE.npz", show_default=False,
        help="Calibrate static int8 on your own inputs: an .npz with one array per model input (named, or arr_0, "
             "arr_1...), samples first. Without it a model with no dataset calibrates on nothing real.")] = None,
) -> None:
    """Quantize into RUN/int8/ (an int8 .onnx or a .pt2), verify it, and report size, accuracy and speed."""
    from dlopt.contract.deliver import deliver, plan_output
    from dlopt.models.options import parse_sets
    from dlopt.models.spec import ExportFormat
    from dlopt.quantize import QuantizeConfig, run_quantize
    from dlopt.runtime.formats import FORMAT_SUFFIX

    dest = plan_output(output, force, tuple(FORMAT_SUFFIX[f] for f in (ExportFormat.ONNX, ExportFormat.PT2,
                                                                      ExportFormat.OPENVINO)))
    from dlopt.contract.target import TargetOptions, resolve_target

    qformat = renamed(quant_format, old_format, "--quant-format", "--format", " for qdq/qoperator")
    if old_format is not None:  # checked here so that the message names the spelling used
        from dlopt.models.options import check_choice

        check_choice("quantize", "quant_format", old_format, QuantFormat, flag="--format")
    extra: dict[str, Any] = {}
    if backend is not None:
        extra.update(backend=backend, auto_backends=(backend,))
    cfg = QuantizeConfig(method=method, calibration_samples=calibration_samples, calibration_method=calibration_method,
                         per_channel=per_channel, quant_format=qformat or QuantFormat.QDQ, max_drop=max_drop,
                         name=stage_name,
                         exporter=exporter,
                         **extra)
    opts = TargetOptions(name=name, checkpoint=checkpoint, run=run, root=out, sets=parse_sets(sets) or None,
                         input_size=input_size, input_shape=parse_shape(input_shape), tiny=tiny, variant=variant,
                         weights=weights)
    from dlopt.data.inputs_file import precheck
    from dlopt.quantize.calibrate import calibrate_on

    precheck(inputs)  # a missing file fails before a run is made
    from dlopt.quantize.stage import quantize_check

    with status("quantizing…") as spinner, calibrate_on(inputs):
        target = resolve_target(opts, quantize_check(cfg))  # a method the spec rules out: no run directory is made
        outcome = run_quantize(target, cfg, lambda msg: spinner.update(msg + "…"))
    copies = deliver(dest, [outcome.artifact], outcome.run_dir, stage_name) if outcome.passed else []
    if as_json:
        print_json({**outcome.to_json(), **({"output": [str(p) for p in copies]} if dest else {})})
    else:
        _render(outcome.result, outcome.artifact)
        for p in copies:
            note(f"[dim]wrote {p}[/dim]", highlight=False)
    if not outcome.passed:
        from dlopt.quantize.judge import failure_line

        raise CheckFailedError(f"the quantized model failed verification: {failure_line(outcome.result)}; "
                               f"see {outcome.report_path}")


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _render(r: dict[str, Any], artifact: Path) -> None:
    if r.get("auto"):
        table = Table(title=f"{r['arch']}: candidates (batch 1, one thread)", title_justify="left")
        for col in ("recipe", "val drop", "ms", "speed-up", "size", "chosen"):
            table.add_column(col)
        for c in r["auto"]["candidates"]:
            if "failed" in c:
                table.add_row(c["recipe"], "-", "-", "-", "-", f"[red]failed[/red]: {c['failed'][:60]}")
                continue
            table.add_row(c["recipe"], _fmt(c["val_drop"]), fmt_ms(c["latency_ms_b1"]),
                          fmt_speedup(c["speedup_vs_eager"]), fmt_bytes(c["bytes"]), "yes" if c["chosen"] else "")
        print_table(table, keep=("recipe", "val drop", "ms", "speed-up", "size", "chosen"), wrap=("recipe",))
        note(f"[dim]{r['auto'].get('backends_note', '')}; chosen: {r['auto']['why']}[/dim]", highlight=False)
    size = r["size_bytes"]
    no_metric = r["metric_before"] is None and r["metric_after"] is None
    metric_row = ("task metric", "not available (no task metric on data for this model): judged by parity with "
                  "fp32 below") if no_metric else \
        (r["metric"] + " before / after", f"{_fmt(r['metric_before'])} / {_fmt(r['metric_after'])}")
    calib = r.get("calibration") or {}
    rows = [("recipe", r["recipe"]["label"]), metric_row,
            ("drop (points)", _fmt(r["drop_points"])), ("top-1 agreement", _fmt(r["top1_agreement"])),
            ("relative error vs fp32", _fmt(r.get("relative_error"))),
            *([("calibration", f"{calib.get('samples', '-')} samples, {calib.get('source', '-')}")]
              if r.get("method") == "static" else []),
            ("size", f"{fmt_bytes(size['fp32'])} -> {fmt_bytes(size['quantized'])}"),
            ("speed-up vs eager (batch 1)", fmt_speedup(r["speedup_vs_eager_b1"])),
            ("layers int8 / float", f"{r['layers_int8']} / {r.get('layers_float', 0)}"
             + (f" ({r['float_why']})" if r.get("float_why") else "")),
            ("kept in float by the search", ", ".join(r["kept_float"]) or "none"),
            ("verified", "[green]pass[/green]" if r["verified"] else "[red]FAIL[/red]"), ("file", str(artifact))]
    table = Table(title=f"{r['arch']} quantized ({r['accuracy_basis']})", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in r.get("notes", []):
        note(f"[dim]note: {line}[/dim]")


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize_cmd)
