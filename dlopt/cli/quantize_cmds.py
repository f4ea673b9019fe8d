"""`dlopt quantize`: int8 or half precision, chosen by measurement, held to an accuracy budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dlopt.cli.common import (
    ExporterOpt,
    NameArg,
    OutputArgs,
    StageNameOpt,
    TargetArgs,
    choices,
    console,
    fmt_bytes,
    fmt_ms,
    fmt_speedup,
    note,
    old_spelling,
    print_json,
    print_table,
    renamed,
    status,
)
from dlopt.cli.groups import ADVANCED, TARGET, grouped, stage_panel
from dlopt.core.errors import CheckFailedError
from dlopt.models.spec import Exporter, QuantFormat, QuantMethod

QUANT = stage_panel("quantize")
METHODS = ", ".join(QuantMethod)  # the one enum: spec.quant_methods, QuantizeConfig.method and this option
# dlopt.quantize.config's QBackend and CalibrationMethod, written out: that package imports torch, and `dlopt
# --help` must not (tests/test_cli_panels.py checks they match). Each backend with the modules it needs.
BACKENDS = {"onnxruntime": ("onnxruntime",), "torch": ("torchao",), "openvino": ("openvino", "nncf")}
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _backend_option() -> Any:
    """--backend offers the backends whose modules are installed here, and its help names the others and why."""
    import importlib.util

    missing = {b: [m for m in needs if importlib.util.find_spec(m) is None] for b, needs in BACKENDS.items()}
    away = "; ".join(f"{b} ({', '.join(m)} not installed)" for b, m in missing.items() if m)
    return typer.Option("--backend", metavar=choices(b for b, m in missing.items() if not m), rich_help_panel=QUANT,
                        show_default=False, help="onnxruntime, torch (torchao) or openvino (NNCF, static int8). "
                        "Without it, auto measures onnxruntime and openvino (when installed) together; other methods "
                        "use onnxruntime." + (f" Unavailable here: {away}." if away else ""))


BackendOpt = Annotated[str | None, _backend_option()]


@dataclass(frozen=True)
class QuantizeArgs:
    """`dlopt quantize`'s own options, and the QuantizeConfig they make."""

    method: Annotated[str, typer.Option("--method", metavar=choices(QuantMethod), rich_help_panel=QUANT,
                                        help=f"{METHODS}: auto builds every int8 path, measures latency and "
                                        "accuracy, and keeps the fastest within budget.")] = "auto"
    backend: BackendOpt = None
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", rich_help_panel=QUANT,
                                                     help="Training samples used to calibrate static int8.")] = 256
    calibration_method: Annotated[str, typer.Option("--calibration-method", metavar=choices(CALIBRATION_METHODS),
                                                    rich_help_panel=QUANT,
                                                    help="How static int8 picks activation ranges.")] = "minmax"
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", rich_help_panel=ADVANCED,
                                              help="One weight scale per output channel.")] = True
    quant_format: Annotated[QuantFormat | None, typer.Option(
        "--quant-format", show_default=False, rich_help_panel=QUANT,
        help="ONNX Runtime static int8 graph: qdq (default) or qoperator.")] = None
    max_drop: Annotated[float, typer.Option("--max-drop", rich_help_panel=QUANT, help="Accuracy budget in points "
                                            "(percentage points for accuracy, % relative for other metrics).")] = 1.0
    search_budget: Annotated[float, typer.Option(
        "--search-budget-s", min=1.0, rich_help_panel=ADVANCED,
        help="Seconds the layer search may take when int8 breaks the budget, and again the repair after it "
             "(ranking layers, keeping the fewest in float).")] = 300.0
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", metavar="FILE.npz", show_default=False, rich_help_panel=QUANT,
        help="Calibrate static int8 on your own inputs: an .npz with one array per model input (named, or arr_0, "
             "arr_1...), samples first. Without it a model with no dataset calibrates on nothing real.")] = None
    variant: Annotated[str | None, typer.Option("--variant", rich_help_panel=TARGET,
                                                help="Checkpoint record inside the run to start from, e.g. "
                                                     "pruned/model.json.")] = None
    exporter: ExporterOpt = Exporter.DYNAMO
    stage_name: StageNameOpt = "int8"
    old_format: Annotated[str | None, old_spelling("--format")] = None  # --quant-format's old spelling

    def config(self) -> Any:
        from dlopt.quantize import QuantizeConfig

        qformat = renamed(self.quant_format, self.old_format, "--quant-format", "--format", " for qdq/qoperator")
        if self.old_format is not None:  # checked here so that the message names the spelling used
            from dlopt.models.options import check_choice

            check_choice("quantize", "quant_format", self.old_format, QuantFormat, flag="--format")
        extra: dict[str, Any] = {}
        if self.backend is not None:
            extra.update(backend=self.backend, auto_backends=(self.backend,))
        return QuantizeConfig(method=self.method, calibration_samples=self.calibration_samples,
                              calibration_method=self.calibration_method, per_channel=self.per_channel,
                              quant_format=qformat or QuantFormat.QDQ, max_drop=self.max_drop, name=self.stage_name,
                              exporter=self.exporter, search_budget_s=self.search_budget, **extra)


@grouped
def quantize_cmd(name: NameArg = None, *, args: QuantizeArgs, model: TargetArgs, outputs: OutputArgs) -> None:
    """Quantize into RUN/int8/ (an int8 .onnx or a .pt2), verify it, and report size, accuracy and speed."""
    from dlopt.contract.deliver import deliver
    from dlopt.contract.target import resolve_target
    from dlopt.data.inputs_file import precheck
    from dlopt.models.spec import ExportFormat
    from dlopt.quantize import run_quantize
    from dlopt.quantize.calibrate import calibrate_on
    from dlopt.quantize.stage import quantize_check
    from dlopt.runtime.formats import FORMAT_SUFFIX

    dest = outputs.plan(tuple(FORMAT_SUFFIX[f] for f in (ExportFormat.ONNX, ExportFormat.PT2, ExportFormat.OPENVINO)))
    cfg = args.config()
    opts = model.options(name, variant=args.variant)
    precheck(args.inputs)  # a missing file fails before a run is made
    from dlopt.quantize.onnx_file import onnx_target
    from dlopt.quantize.onnx_stage import quantize_onnx_file

    with status("quantizing…") as spinner, calibrate_on(args.inputs):
        if (onnx_file := onnx_target(opts)) is not None:  # an ONNX file made elsewhere: judged against itself
            outcome = quantize_onnx_file(onnx_file, cfg, opts.root, args.inputs,
                                         progress=lambda msg: spinner.update(msg + "…"))
        else:
            target = resolve_target(opts, quantize_check(cfg))  # a method the spec rules out: no run is made
            outcome = run_quantize(target, cfg, lambda msg: spinner.update(msg + "…"))
    copies = deliver(dest, [outcome.artifact], outcome.run_dir, args.stage_name) if outcome.passed else []
    if outputs.as_json:
        print_json({**outcome.to_json(), **({"output": [str(p) for p in copies]} if dest else {})})
    else:
        _render(outcome.result, outcome.artifact)
        from dlopt.core.assumptions import assumptions  # what the numbers rest on: weights, input size, classes

        if said := assumptions(outcome.run_dir):
            note(f"[dim]assumed: {said}[/dim]", highlight=False)
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
        drop_col = r["auto"].get("drop_column", "val drop")  # without a metric the column says what it holds
        cols = ("recipe", drop_col, "ms", "vs fp32 same runtime", "vs eager", "size", "chosen")
        for col in cols:
            table.add_column(col)
        for c in r["auto"]["candidates"]:
            if "failed" in c:
                table.add_row(c["recipe"], "-", "-", "-", "-", "-", f"[red]failed[/red]: {c['failed'][:60]}")
                continue
            same = c.get("speedup_vs_fp32")
            table.add_row(c["recipe"], _fmt(c["val_drop"]), fmt_ms(c["latency_ms_b1"]),
                          "-" if same is None else fmt_speedup(same), fmt_speedup(c["speedup_vs_eager"]),
                          fmt_bytes(c["bytes"]), "yes" if c["chosen"] else "")
        print_table(table, keep=cols, wrap=("recipe",))
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
            *_speed_rows(r),
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
    _render_repair(r.get("search") or {})
    for line in r.get("notes", []):
        note(f"[dim]note: {line}[/dim]")


def _attempt(a: dict[str, Any], chosen: str | None) -> str:
    if "skipped" in a:
        return "skipped: " + escape(a["skipped"])
    if "failed" in a:
        return "[red]failed[/red]: " + escape(a["failed"][:60])
    said = "[green]within budget[/green]" if a.get("within_budget") else "over"
    if a.get("within_budget") and a.get("within_margin") is False:  # reports before the margin have no such key
        said = "[yellow]within budget, not its sampling margin[/yellow]"
    return said + (" (chosen)" if a.get("recipe") and a["recipe"] == chosen else "")


def _render_repair(search: dict[str, Any]) -> None:
    """What the repair tried (each attempt and its drop), the layers it kept out of int8 and why, the sampling
    margin it chose with, the cost; and, repaired or not, which operators make int8 not faster than fp32."""
    rep, initial = search.get("repair"), search.get("initial_drop")
    if not rep:
        if (search.get("slow_ops") or {}).get("line"):
            note(f"int8 not faster than fp32: {escape(search['slow_ops']['line'])}", highlight=False)
        return
    title = "repair: plain int8 was over budget" + (f" (drop {_fmt(initial)})" if initial is not None else "")
    tried = Table(title=title, title_justify="left")
    for col in ("tried", "drop", ""):
        tried.add_column(col)
    for a in rep.get("attempts", []):
        tried.add_row(escape(a["repair"]), _fmt(a.get("val_drop")), _attempt(a, rep.get("chosen")))
    print_table(tried, keep=("tried", "drop", ""), wrap=("tried", ""))
    if rep.get("kept"):
        kept = Table(title="kept out of int8", title_justify="left")
        for col in ("layer", "module", "precision", "why"):
            kept.add_column(col)
        for k in rep["kept"]:
            kept.add_row(*(escape(str(k.get(f) or "-")) for f in ("layer", "module", "precision", "why")))
        print_table(kept, keep=("layer", "precision", "why"), wrap=("layer", "why"))
    if (rep.get("margin") or {}).get("points"):
        note(f"repair sampling margin: {escape(rep['margin']['why'])}", highlight=False)
    if rep.get("speed"):
        note(f"repair speed cost: {escape(rep['speed'])}", highlight=False)
    if (rep.get("slow_ops") or {}).get("line"):
        note(f"repair int8 not faster than fp32: {escape(rep['slow_ops']['line'])}", highlight=False)
    verdict = "[green]within budget[/green]" if rep.get("within_budget") else "[red]over budget[/red]"
    note(f"repair {verdict}: {escape(rep.get('stopped', ''))} ({_fmt(rep.get('seconds'), '.3g')} s)",
         highlight=False)


def _speed_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """int8 against fp32 on the same runtime (what quantizing bought), and the runtime against eager, apart."""
    ref = r.get("fp32_reference")
    if r.get("speedup_vs_fp32_b1") is None or not ref:
        return [("speed-up vs eager fp32 (batch 1)", fmt_speedup(r["speedup_vs_eager_b1"]))]
    runtime = ref.removesuffix(" fp32")
    rows = [(f"int8 speed-up vs fp32 on {runtime} (batch 1)", fmt_speedup(r["speedup_vs_fp32_b1"]))]
    if runtime != "eager":
        own = fmt_speedup(r.get("runtime_speedup_vs_eager_b1"))
        rows.append((f"{runtime} int8 vs eager PyTorch fp32",
                     f"{fmt_speedup(r['speedup_vs_eager_b1'])} (of which {runtime} fp32 itself: {own})"))
    if r.get("int8_verdict") and not r.get("int8_worthwhile"):
        rows.append(("verdict", f"[yellow]{r['int8_verdict']}[/yellow]"))
    return rows


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize_cmd)
