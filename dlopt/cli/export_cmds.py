"""`dlopt export` and `dlopt verify`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dlopt.cli.common import (
    CheckpointOpt,
    JsonOpt,
    ModelCodeOpt,
    NameArg,
    OutOpt,
    OutputArgs,
    RunOpt,
    TargetArgs,
    TrustCodeOpt,
    debug,
    err_console,
    note,
    print_json,
    print_table,
    status,
)
from dlopt.cli.groups import TARGET, grouped, stage_panel
from dlopt.core.errors import CheckFailedError, UsageError
from dlopt.core.layout import DEFAULT_ROOT
from dlopt.models.options import parse_int_list
from dlopt.models.spec import Exporter, ExportFormat
from dlopt.runtime.formats import FORMAT_SUFFIX

FORMAT_ALIASES = {"ts": "torchscript", "jit": "torchscript", "torch.export": "pt2", "export": "pt2"}
EXPORT, VERIFY = stage_panel("export"), "Verification"

TrustOpt = Annotated[bool, typer.Option("--trust-pickle", rich_help_panel=TARGET, help="Load pickle-based files "
                                        "(.ts, .pt2) that no dlopt run manifest records. Only for files you trust.")]
AtolOpt = Annotated[float | None, typer.Option(
    "--atol", min=0.0, rich_help_panel=VERIFY, show_default=False,
    help="Absolute tolerance: pass when |out - ref| <= atol + rtol*|ref| everywhere (default: the architecture's, "
         "1e-5 for most).")]
RtolOpt = Annotated[float | None, typer.Option(
    "--rtol", min=0.0, rich_help_panel=VERIFY, show_default=False,
    help="Relative tolerance (see --atol) (default: the architecture's, 1e-4 for most).")]
InputsOpt = Annotated[Path | None, typer.Option(
    "--inputs", metavar="FILE.npz", show_default=False, rich_help_panel=VERIFY,
    help="Verify on your own inputs: an .npz with one array per model input, named after it or positional "
         "(arr_0, arr_1...), samples first (numpy.savez). Never unpickled.")]
TimeLimitOpt = Annotated[float, typer.Option("--time-limit-s", min=0.001, rich_help_panel=VERIFY, help="Stop "
                                             "verifying an artifact whose runs take longer than this many seconds in "
                                             "all (exit 1).")]


def parse_formats(text: str) -> tuple[tuple[ExportFormat, ...], bool]:
    """'onnx,ts' -> the formats, and whether they were named explicitly (then unsupported is an error)."""
    items = [FORMAT_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in text.split(",") if p.strip()]
    if not items or items == ["all"]:  # empty (the default): onnx, torchscript, pt2; all: openvino too
        from dlopt.export import DEFAULT_FORMATS

        return (tuple(ExportFormat) if items else DEFAULT_FORMATS), False
    bad = [p for p in items if p not in ExportFormat._value2member_map_]
    if bad:
        choices = ", ".join([*map(str, ExportFormat), "all"])
        raise UsageError(f"unknown export format {', '.join(map(repr, bad))}; choose from {choices} (comma-separated)")
    return tuple(dict.fromkeys(ExportFormat(p) for p in items)), True


def _format_for_file(output: Path, fmts: tuple[ExportFormat, ...], explicit: bool) -> tuple[tuple[ExportFormat, ...], bool]:
    """-o model.onnx without --format exports that one format; with --format it must be one matching format."""
    wanted = next(f for f, s in FORMAT_SUFFIX.items() if s == output.suffix)
    if not explicit:
        return (wanted,), True
    if fmts != (wanted,):
        raise UsageError(f"-o {output} names one {output.suffix} file but --format asks for "
                         f"{', '.join(map(str, fmts))}; give --format {wanted} or a directory (ending with /)")
    return fmts, explicit


@dataclass(frozen=True)
class ExportArgs:
    """`dlopt export`'s own options, and the ExportConfig they make."""

    formats: Annotated[str, typer.Option(
        "--format", metavar="FORMAT,...", rich_help_panel=EXPORT,
        help="onnx, torchscript, pt2, openvino, comma-separated, or all (default: onnx, torchscript, pt2).")] = ""
    exporter: Annotated[Exporter, typer.Option("--exporter", rich_help_panel=EXPORT, help="ONNX exporter: dynamo "
                                               "(torch.export based) or legacy (TorchScript based, faster to export); "
                                               "also used by quantize and bench when they export.")] = Exporter.DYNAMO
    opset: Annotated[int | None, typer.Option("--opset", rich_help_panel=EXPORT,
                                              help="ONNX opset (dynamo 18..23, legacy 7..20).")] = None
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, rich_help_panel=EXPORT,
                                            help="Batch size of the example input.")] = 2
    no_verify: Annotated[bool, typer.Option("--no-verify", rich_help_panel=VERIFY,
                                            help="Skip verification after export.")] = False
    atol: AtolOpt = None
    rtol: RtolOpt = None
    time_limit_s: TimeLimitOpt = 300.0
    inputs: InputsOpt = None  # --trust-pickle is a target option (TargetArgs)

    def check(self) -> None:
        from dlopt.data.inputs_file import precheck

        if self.inputs is not None and self.no_verify:
            raise UsageError("--inputs is what verification runs on; drop --no-verify, or drop --inputs")
        precheck(self.inputs)  # a missing file fails before a run is made

    def config(self, outputs: OutputArgs) -> tuple[Any, Any]:
        """The ExportConfig, and the -o plan (a file named there picks its one format)."""
        from dlopt.export import ExportConfig

        fmts, explicit = parse_formats(self.formats)
        dest = outputs.plan(tuple(FORMAT_SUFFIX.values()))
        if dest is not None and not dest.is_dir:
            fmts, explicit = _format_for_file(outputs.output, fmts, explicit)
        return ExportConfig(formats=fmts, exporter=str(self.exporter), opset=self.opset, batch_size=self.batch_size,
                            verify=not self.no_verify, strict_formats=explicit, atol=self.atol, rtol=self.rtol,
                            verify_time_limit_s=self.time_limit_s), dest


@grouped
def export_cmd(name: NameArg = None, *, args: ExportArgs, model: TargetArgs, outputs: OutputArgs) -> None:
    """Export to ONNX, TorchScript and torch.export (.pt2) in the run directory, then verify every artifact."""
    from dlopt.contract.deliver import deliver
    from dlopt.contract.target import resolve_target
    from dlopt.export.stage import export_check, run_export

    args.check()
    config, dest = args.config(outputs)
    debug(f"export config: {config}")
    target_opts = model.options(name)
    with status("exporting…") as spinner:
        resolved = resolve_target(target_opts, export_check(config))  # bad options: no run directory is made
        outcome = run_export(resolved, config, on_step=lambda msg: spinner.update(msg + "…"), inputs=args.inputs)
    target, result, report = outcome.target, outcome.result, outcome.report_path
    good = [p for fmt, p in result.artifacts.items() if getattr(result.verification.get(fmt), "passed", True)]
    copies = deliver(dest, good, target.run.path, "export") if good else []  # a failed file stays in the run only
    if outputs.as_json:
        print_json({"arch": target.spec.name, "run": str(target.run.path), "report": str(report) if report else None,
                    **result.to_dict(), **({"output": [str(p) for p in copies]} if dest else {})})
    else:
        _render_export(target, result)
        _assumed(target.run.path)
        for p in copies:
            note(f"[dim]wrote {p}[/dim]", highlight=False)
    _raise_on_failure(result.failures, result.verification, report)


def _render_export(target: Any, result: Any) -> None:
    table = Table(title=f"{target.spec.name} exported to {target.run.path}", title_justify="left")
    for col in ("format", "how", "seconds", "verified", "max abs err", "err/RMS", "worst at", "file"):
        table.add_column(col)
    for fmt, path in result.artifacts.items():
        d, rep = result.details.get(fmt, {}), result.verification.get(fmt)
        how = {"onnx": f"{d.get('exporter')} opset {d.get('opset')}",
               "torchscript": f"{d.get('method')}{', frozen' if d.get('frozen') else ''}"}.get(fmt, "torch.export")
        worst = rep.worst() if rep else {}
        verdict = "-" if rep is None else _verdict(rep)
        table.add_row(fmt, how, f"{result.seconds[fmt]:.2f}", verdict, _num(worst.get("max_abs")),
                      _num(worst.get("err_rms")), str(worst.get("case") or "-"), path.name)
    for fmt, why in result.failures.items():
        table.add_row(fmt, "-", "-", "[red]export failed[/red]", "-", "-", "-", why[:80])
    print_table(table, keep=("format", "verified", "max abs err", "file", "how", "seconds", "err/RMS"),
                wrap=("file", "how"))
    _render_outputs(result.verification)
    for line in result.notes:
        note(f"[dim]note: {line}[/dim]")


def _assumed(run_dir: Path) -> None:
    from dlopt.core.assumptions import assumptions  # what the numbers rest on: weights, input size, classes

    if said := assumptions(run_dir):
        note(f"[dim]assumed: {said}[/dim]", highlight=False)


def _render_outputs(reports: dict[str, Any]) -> None:
    """With several outputs (a tuple or dict), each one's worst error and verdict, per format."""
    rows = [(fmt, name, row) for fmt, r in reports.items() for name, row in r.per_output().items()]
    if len({name for _, name, _ in rows}) < 2:
        return
    table = Table(title="per output", title_justify="left")
    for col in ("format", "output", "shape", "max abs err", "err/RMS", "needed atol", "verdict"):
        table.add_column(col)
    for fmt, name, row in rows:
        table.add_row(fmt, name, str(row["shape"]), _num(row["max_abs"]), _num(row["err_rms"]), _num(row["needed_atol"]),
                      "[green]pass[/green]" if row["passed"] else "[red]FAIL[/red]")
    print_table(table, keep=("format", "output", "max abs err", "verdict"))


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _verdict(rep: Any) -> str:
    """pass, FAIL, or FAIL (degenerate): the reference is too small or constant for the tolerance to mean anything."""
    if rep.passed:  # a reference within atol: judged against its own scale (dlopt.verify.criteria), and said
        return "[green]pass[/green]" + (" (judged relative to the output's scale)" if getattr(rep, "relative", None)
                                        else "")
    return "[red]FAIL (degenerate)[/red]" if rep.degenerate else "[red]FAIL[/red]"


def _raise_on_failure(export_failures: dict[str, str], reports: dict[str, Any], report: Path | None) -> None:
    rows = [(fmt, "export", "-", why) for fmt, why in export_failures.items()]
    rows += [(fmt, case, out, why) for fmt, r in reports.items() for case, out, why in r.failures()]
    if not rows:
        return
    table = Table(title=f"{len(rows)} failure(s)", title_justify="left", title_style="bold red")
    for col in ("artifact", "shape", "output", "why"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    err_console.print(table)
    where = f"; full report: {report}" if report else ""
    only = f" ({rows[0][3]})" if len(rows) == 1 else ""  # one failure: its reason is the error line
    raise CheckFailedError(f"{len(rows)} check(s) failed in {', '.join(sorted({r[0] for r in rows}))}{only}{where}")


def verify_cmd(
    path: Annotated[Path | None, typer.Argument(
        help="An artifact (.onnx, .ts, .pt2) or a run directory (default: the latest run).", show_default=False)] = None,
    checkpoint: CheckpointOpt = None,
    batch_sizes: Annotated[str | None, typer.Option(
        "--batch-sizes", metavar="N,N,...", rich_help_panel=VERIFY,
        help="Batch sizes, e.g. 1,2,3 (default: the export batch, 1 and an odd one).")] = None,
    trust_pickle: TrustOpt = False,
    trust_code: TrustCodeOpt = False,
    model_code: ModelCodeOpt = None,
    atol: AtolOpt = None,
    rtol: RtolOpt = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="DEFAULT|NAME|PATH", show_default=False, rich_help_panel=TARGET,
        help="Reference = the architecture an .onnx written by dlopt records, with these weights (torchvision "
             "weights from the local hub cache, or a state dict file), instead of --checkpoint.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = DEFAULT_ROOT,
    run: RunOpt = None,
    time_limit_s: TimeLimitOpt = 300.0,
    inputs: InputsOpt = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", metavar="REF.onnx", show_default=False, rich_help_panel=VERIFY,
        help="Compare with this ONNX file instead of a model: both run on the same inputs (REF's graph inputs, or "
             "--inputs), each output judged as an export is.")] = None,
) -> None:
    """Compare artifacts with the eager model at several batch sizes (and sequence lengths); exit 1 on any failure."""
    from dlopt.data.inputs_file import precheck
    from dlopt.verify import VerifyConfig
    from dlopt.verify.stage import VerifyOptions, verify_path

    precheck(inputs)
    config = VerifyConfig(batch_sizes=parse_int_list(batch_sizes, "--batch-sizes") or None, atol=atol, rtol=rtol,
                          time_limit_s=time_limit_s)
    if path is None:
        from dlopt.core.runs import resolve_run

        path = resolve_run(out, run).path
    with status(f"verifying {path}…"):
        outcome = verify_path(VerifyOptions(path, checkpoint, trust_pickle, config, weights, inputs, reference))
    if as_json:
        print_json({"arch": outcome.arch, "passed": outcome.passed, "report": str(outcome.report_path),
                    "artifacts": {k: r.to_dict() for k, r in outcome.reports.items()}})
    else:
        _render_verify(outcome)
    _raise_on_failure({}, outcome.reports, outcome.report_path)


def _render_verify(outcome: Any) -> None:
    table = Table(title=f"{outcome.arch}: verification", title_justify="left")
    for col in ("artifact", "verdict", "max abs", "err/RMS", "ref RMS", "max rel", "mean abs", "p99 abs", "cosine",
                "needed atol", "top-1", "worst at"):
        table.add_column(col)
    for fmt, r in outcome.reports.items():
        mean_abs = max((o.mean_abs or 0.0 for c in r.cases for o in c.outputs), default=None)
        w = r.worst()
        table.add_row(f"{fmt} ({Path(r.artifact).name})", _verdict(r), _num(w.get("max_abs")), _num(w.get("err_rms")),
                      _num(min((s.rms for s in r.scales), default=None)), _num(w.get("max_rel")), _num(mean_abs),
                      _num(w.get("p99_abs")), _num(w.get("cosine")), _num(w.get("needed_atol")), _num(w.get("top1")),
                      str(w.get("case") or "-"))
    print_table(table, keep=("artifact", "verdict", "max abs", "err/RMS", "ref RMS", "max rel", "cosine", "top-1"))
    _render_outputs(outcome.reports)
    shapes = sorted({_shape(c) for r in outcome.reports.values() for c in r.cases})
    note(f"[dim]criterion: {next(iter(outcome.reports.values())).criterion}; shapes: {'; '.join(shapes)}; "
                  f"report: {outcome.report_path}[/dim]")


def _shape(c: Any) -> str:
    return f"batch {c.batch}" + (f" seq {c.seq}" if c.seq is not None else "")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("verify")(verify_cmd)
