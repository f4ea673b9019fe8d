"""`dlopt diagnose` as a library call: the per-layer comparison (dlopt.verify.layers) of one .onnx or OpenVINO
.xml file against the model it was made from, written as JSON and a PNG beside the run's other reports.

    outcome = diagnose_file(DiagnoseOptions(Path("artifacts/resnet18/RUN"), Path("artifacts/resnet18/RUN/int8/model.onnx")))
    outcome.report["first_flagged"]   # the first layer past the tolerance, or None
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UsageError

SUFFIXES = (".onnx", ".xml")


@dataclass(frozen=True)
class DiagnoseOptions:
    target: Path  # a run directory or a checkpoint record (.json): the model the file was made from
    file: Path  # the .onnx or OpenVINO .xml file to compare with it
    samples: int = 16  # inputs compared (the run's test split where it feeds the model, else random valid ones)
    batch: int = 8
    tolerance: float | None = None  # relative error per layer; None: 0.1 for int8 files, 1e-2 fp16, 1e-3 fp32
    inputs: Path | None = None  # the user's inputs (.npz), as `dlopt verify --inputs`
    seed: int = 0


@dataclass(frozen=True)
class DiagnoseOutcome:
    report: dict[str, Any]
    json_path: Path
    plot_path: Path | None


def _check_file(path: Path) -> Any:
    """Fail fast, one line, before any model is built: a missing, foreign or unreadable file."""
    if not path.is_file():
        raise InputFileError(f"{path} not found")
    if path.suffix not in SUFFIXES:
        raise UsageError(f"diagnose compares .onnx (ONNX Runtime) and .xml (OpenVINO IR) files, not {path.name}; "
                         "export one with dlopt export --format onnx")
    if path.suffix == ".onnx":
        import onnx

        try:
            return onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 -- DecodeError and friends: a file that is not an ONNX model
            raise InputFileError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    from dlopt.runtime.openvino import require_openvino

    if not path.with_suffix(".bin").is_file():
        raise InputFileError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
    try:
        return require_openvino().Core().read_model(str(path))
    except RuntimeError as exc:
        raise InputFileError(f"{path} is not a readable OpenVINO IR ({str(exc).splitlines()[0][:120]})") from None


def _reference(opts: DiagnoseOptions) -> tuple[Any, Any, Any, Any]:
    """(model, spec, config, run or None) the file was made from: a run's (its variant's, for a file a stage
    wrote from one) or a checkpoint's."""
    from dlopt.core.runs import MANIFEST, Run
    from dlopt.models.checkpoint import load_checkpoint

    target = Path(opts.target)
    if target.is_dir() and (target / MANIFEST).is_file():
        from dlopt.contract.target import Target
        from dlopt.verify.stage import _source_checkpoint

        run = Run.open(target)
        source = _source_checkpoint(run, {"file": opts.file})
        found = Target.of_run(run, str(source.relative_to(run.path)) if source else None)
        return found.model, found.spec, found.config, run
    if target.suffix == ".json" and target.is_file():
        ck = load_checkpoint(target)
        return ck.model, ck.spec, ck.config, None
    raise UsageError(f"{target} is not a run directory or a checkpoint (.json); diagnose needs the model the file "
                     "was made from, with its weights")


def _cases(run: Any, spec: Any, cfg: Any, opts: DiagnoseOptions) -> tuple[list[Any], str]:
    from dlopt.verify.core import VerifyConfig, make_cases
    from dlopt.verify.realdata import verify_cases

    sizes = tuple(min(opts.batch, opts.samples - s) for s in range(0, opts.samples, opts.batch))
    config = VerifyConfig(batch_sizes=sizes, seed=opts.seed)
    cases, used = verify_cases(run, spec, cfg, config, opts.inputs)
    source = "your inputs file" if used else "the run's test split"
    if not cases:
        cases, source = make_cases(spec, cfg, config), "random valid inputs"
    first = cases[0].seq
    return [c for c in cases if c.seq == first], source


def _kind(path: Path, graph: Any) -> str:
    """int8 (quantize/dequantize or integer layers), fp16, or fp32."""
    if path.suffix == ".xml":
        types = {op.get_type_name() for op in graph.get_ops()}
        consts = {op.get_element_type().get_type_name() for op in graph.get_ops() if op.get_type_name() == "Constant"}
        return "int8" if "FakeQuantize" in types or consts & {"i8", "u8"} else "fp16" if "f16" in consts else "fp32"
    ops = {n.op_type for n in graph.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "MatMulInteger"}:
        return "int8"
    return "fp16" if any(t.data_type == 10 for t in graph.graph.initializer) else "fp32"


def _map(path: Path, graph: Any, module: Any, spec: Any, cfg: Any, run: Any, work: Path) -> Any:
    from dlopt.models.registry import make_inputs
    from dlopt.verify.layermap import map_onnx, map_openvino, reference_sites

    reference_cache: dict[str, Any] = {}
    own = [p for p in ([run.path / "model.onnx"] if run is not None else []) if p.is_file()]

    def reference(exporter: str) -> Any:
        if exporter not in reference_cache:
            reference_cache[exporter] = reference_sites(module, make_inputs(spec, cfg, 2), spec.input_names, exporter,
                                                        work, own)
        return reference_cache[exporter]

    return map_openvino(graph, reference) if path.suffix == ".xml" else map_onnx(graph, module, reference)


def _where(opts: DiagnoseOptions, run: Any) -> tuple[Path, Path]:
    """<run>/diagnose/<file's place in the run>.json|.png, or beside the file outside a run."""
    file = Path(opts.file).resolve()
    if run is not None and file.is_relative_to(run.path.resolve()):
        label = "-".join(file.relative_to(run.path.resolve()).with_suffix("").parts)
        base = run.path / "diagnose" / label
    else:
        base = file.with_name(file.stem + ".layers")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".png")


def plot(rows: list[dict[str, Any]], tolerance: float, title: str, path: Any) -> Any:
    """Relative error per layer in model order (log scale), the tolerance, and the first layer past it."""
    from dlopt.core.plotting import pyplot, save_png
    from dlopt.verify.layers import first_flagged

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(rows) + 2), 4.2))
    errors = [max(r["rel_error"], 1e-12) for r in rows]
    colors = ["tab:red" if r["flagged"] else "tab:blue" for r in rows]
    ax.bar(range(len(rows)), errors, color=colors)
    ax.axhline(tolerance, color="gray", linestyle="--", label=f"tolerance {tolerance:g}")
    first = first_flagged(rows)
    if first is not None:
        ax.annotate(f"first past: {rows[first]['layer']}", (first, errors[first]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8, color="tab:red")
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["layer"] or "(model)" for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("relative error vs eager")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return save_png(fig, path)


def diagnose_file(opts: DiagnoseOptions) -> DiagnoseOutcome:
    """Compare every mapped layer of `opts.file` with the model; write the JSON report and the plot."""
    from dlopt.core.fileio import write_json_atomic
    from dlopt.models.registry import entry_module
    from dlopt.runtime.quiet import quiet_deprecations
    from dlopt.verify.layers import compare_file

    if opts.samples < 1 or opts.batch < 1:
        raise UsageError("--samples and --batch must be at least 1")
    if opts.tolerance is not None and not opts.tolerance > 0:
        raise UsageError(f"--tolerance must be a relative error above 0, not {opts.tolerance:g}")
    graph = _check_file(Path(opts.file))
    model, spec, cfg, run = _reference(opts)
    module = entry_module(model, spec).eval()
    with quiet_deprecations(), tempfile.TemporaryDirectory(prefix="dlopt-diagnose-") as work:
        cases, source = _cases(run, spec, cfg, opts)
        layer_map = _map(Path(opts.file), graph, module, spec, cfg, run, Path(work))
        kind = _kind(Path(opts.file), graph)
        report = compare_file(module, Path(opts.file), layer_map, [c.inputs for c in cases], kind, opts.tolerance)
    report.update(arch=spec.name, file=str(opts.file), inputs=source, samples=sum(c.batch for c in cases))
    json_path, png_path = _where(opts, run)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    plotted = None
    if report["rows"]:
        title = f"{spec.name}: {Path(opts.file).name} ({kind}) vs eager, per layer"
        plotted = plot(report["rows"], report["tolerance"], title, png_path)
    report["plot"] = str(plotted) if plotted else None
    write_json_atomic(json_path, report)
    return DiagnoseOutcome(report, json_path, plotted)
