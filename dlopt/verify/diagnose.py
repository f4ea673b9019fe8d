"""`dlopt diagnose` as a library call: the per-layer comparison (dlopt.verify.layers) of one .onnx or OpenVINO
.xml file against the model it was made from, written as JSON and a PNG: a file of a run into <run>/diagnose/ as the
run's stage `diagnose` (what `dlopt report` shows), a loose file beside itself (<stem>.layers.json) and in no run.

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
STAGE = "diagnose"  # the manifest's stage, and the run's folder of results


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
    run_dir: Path | None = None  # the run whose stage `diagnose` recorded it (None: a loose file)


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
        if "FakeQuantize" in types or consts & {"i8", "u8"}:
            return "int8"
        marked = graph.get_rt_info(["dlopt", "inference_precision"]).astype(str) \
            if graph.has_rt_info(["dlopt", "inference_precision"]) else ""
        return "fp16" if "f16" in consts or marked in ("bf16", "f16") else "fp32"  # a half-precision tolerance
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


def _home(file: Path, run: Any) -> Any:
    """The run that holds `file` (the target's run, else the nearest folder above it with a manifest), or None."""
    from dlopt.core.runs import MANIFEST, Run

    file = file.resolve()
    if run is not None and file.is_relative_to(run.path):
        return run
    found = next((d for d in file.parents if (d / MANIFEST).is_file()), None)
    return Run.open(found) if found is not None else None


def plot(rows: list[dict[str, Any]], tolerance: float, title: str, path: Any) -> Any:
    """Per layer in model order: relative error (log scale) over SQNR (dB), each with the tolerance (SQNR =
    -20 log10(relative error)); the first layer past it marked on both."""
    import math

    from dlopt.core.plotting import pyplot, save_png
    from dlopt.verify.layers import first_flagged

    plt = pyplot()
    fig, (top, low) = plt.subplots(2, 1, sharex=True, figsize=(max(6.0, 0.22 * len(rows) + 2), 6.4),
                                   gridspec_kw={"height_ratios": (3, 2)})
    x, errors = range(len(rows)), [max(r["rel_error"], 1e-12) for r in rows]
    top.bar(x, errors, color=["tab:red" if r["flagged"] else "tab:blue" for r in rows])
    top.axhline(tolerance, color="gray", linestyle="--", label=f"tolerance {tolerance:g}")
    sqnr = [(i, r["sqnr_db"]) for i, r in zip(x, rows, strict=True) if r["sqnr_db"] is not None]  # None: exact
    low.plot([i for i, _ in sqnr], [v for _, v in sqnr], marker=".", color="tab:purple")
    low.axhline(-20 * math.log10(tolerance), color="gray", linestyle="--",
                label=f"the tolerance: {-20 * math.log10(tolerance):.0f} dB")
    first = first_flagged(rows)
    if first is not None:
        for ax in (top, low):
            ax.axvline(first, color="tab:red", linewidth=0.8, linestyle=":")
        top.annotate(f"first past: {rows[first]['layer']}", (first, errors[first]), textcoords="offset points",
                     xytext=(0, 8), ha="center", fontsize=8, color="tab:red")
    top.set_yscale("log")
    top.set_ylabel("relative error vs eager")
    top.set_title(title)
    top.legend(loc="upper left")
    low.set_ylabel("SQNR (dB)")
    low.legend(loc="lower left")
    low.set_xticks(list(x), [r["layer"] or "(model)" for r in rows], rotation=90, fontsize=7)
    return save_png(fig, path)


def _write(report: dict[str, Any], json_path: Path, png_path: Path, title: str, plot_ref: str | None = None) -> Any:
    """The plot (when layers were compared) then the JSON naming it, each atomically; returns the plot's path."""
    from dlopt.core.fileio import write_json_atomic

    json_path.parent.mkdir(parents=True, exist_ok=True)
    plotted = plot(report["rows"], report["tolerance"], title, png_path) if report["rows"] else None
    report["plot"] = (plot_ref or str(plotted)) if plotted else None
    write_json_atomic(json_path, report)
    return plotted


def _record(run: Any, file: Path, report: dict[str, Any], title: str, opts: DiagnoseOptions) -> DiagnoseOutcome:
    """The stage `diagnose` of the run holding the file: <run>/diagnose/<its place in the run>.json|.png. No inputs
    are listed, so the results of the run's other files stay recorded beside this one."""
    rel = file.resolve().relative_to(run.path)
    label = "-".join(rel.parts)  # int8/model.onnx -> int8-model.onnx: an IR and an ONNX file of one stem differ
    report["file"] = str(rel)  # run files name run files relative to the run
    config = {"file": str(rel), "samples": opts.samples, "tolerance": report["tolerance"],
              "inputs": str(opts.inputs) if opts.inputs else None}
    with run.stage(STAGE, config) as rec:
        json_path = rec.path(STAGE, f"{label}.json")
        plotted = _write(report, json_path, json_path.with_suffix(".png"), title, f"{STAGE}/{label}.png")
        rec.outputs += [json_path, *([plotted] if plotted else [])]
        first = report["first_flagged"]
        rec.metrics.update(file=str(rel), kind=report["kind"], layers=len(report["rows"]),
                           first_flagged=first["layer"] if first else None, tolerance=report["tolerance"])
    final = run.path / STAGE / f"{label}.json"
    return DiagnoseOutcome(report, final, final.with_suffix(".png") if plotted else None, run.path)


def diagnose_file(opts: DiagnoseOptions) -> DiagnoseOutcome:
    """Compare every mapped layer of `opts.file` with the model; write the JSON report and the plot."""
    from dlopt.core.fileio import sha256_file
    from dlopt.models.registry import entry_module
    from dlopt.runtime.quiet import quiet_deprecations
    from dlopt.verify.layers import compare_file

    if opts.samples < 1 or opts.batch < 1:
        raise UsageError("--samples and --batch must be at least 1")
    if opts.tolerance is not None and not opts.tolerance > 0:
        raise UsageError(f"--tolerance must be a relative error above 0, not {opts.tolerance:g}")
    file = Path(opts.file)
    graph = _check_file(file)
    model, spec, cfg, run = _reference(opts)
    module = entry_module(model, spec).eval()
    with quiet_deprecations(), tempfile.TemporaryDirectory(prefix="dlopt-diagnose-") as work:
        cases, source = _cases(run, spec, cfg, opts)
        layer_map = _map(file, graph, module, spec, cfg, run, Path(work))
        kind = _kind(file, graph)
        report = compare_file(module, file, layer_map, [c.inputs for c in cases], kind, opts.tolerance)
    report.update(arch=spec.name, file=str(file), sha256=sha256_file(file), inputs=source,
                  samples=sum(c.batch for c in cases))
    title = f"{spec.name}: {file.name} ({kind}) vs eager, per layer"
    home = _home(file, run)
    if home is not None:
        return _record(home, file, report, title, opts)
    base = file.with_name(file.stem + ".layers")  # a loose file: its result beside it, in no run
    json_path = base.with_name(base.name + ".json")
    return DiagnoseOutcome(report, json_path, _write(report, json_path, json_path.with_suffix(".png"), title))
