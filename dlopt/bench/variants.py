"""What a bench target holds: the model and every artifact or variant in its run, as Variants.

TARGET forms: an architecture name (a new run), a run directory, nothing (the latest run), or an
artifact file (.onnx, .ts, .pt2) — inside a run, or a stray .onnx whose inputs are read from the graph.
A run made from an ONNX file (dlopt.bench.onnx_files) is benched as its fp32 file beside the run's own files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlopt.bench.backends import Variant
from dlopt.bench.config import Backend, BenchConfig
from dlopt.bench.onnx_files import onnx_inputs, run_fp32
from dlopt.contract.target import MODEL_RECORD, Kind, Target, TargetOptions, locate, open_located, resolve_target
from dlopt.core.errors import DloptError, InputFileError
from dlopt.core.runs import MANIFEST, Run
from dlopt.models.spec import ArchSpec, ExportFormat
from dlopt.runtime.formats import ARTIFACT_SUFFIXES, check_trusted, file_name, format_of

EXPORT_DIR = "bench-export"


@dataclass(frozen=True)
class Source:
    label: str
    run: Run
    spec: ArchSpec | None  # None for a stray .onnx
    config: Any
    model: Any  # the whole model (None for a stray .onnx)
    module: Any  # the entry module deployment stages run
    artifacts: tuple[Path, ...]
    make_inputs: Callable[[int, int | None], tuple[Any, ...]]
    single: bool = False  # TARGET was one artifact file: bench it (and eager, for the speed-up) only
    skipped: tuple[Any, ...] = ()  # dlopt.core.trust.ArtifactStatus of files no done stage vouches for
    fp32_file: Path | None = None  # a run made from an ONNX file: that file, benched beside the run's files

    @property
    def no_eager(self) -> str | None:
        """Why there is no eager row to read speed-ups against (None: there is one)."""
        return None if self.module is not None else "n/a: an ONNX file, no PyTorch model"

    def baselines(self, variants: list[Any]) -> dict[str, str] | None:
        """Without a PyTorch model: backend -> the row of the run's fp32 file on it, what that backend's speed-ups
        are over (None when there is an eager row, or no fp32 file to compare with)."""
        if self.module is not None or self.fp32_file is None:
            return None
        return {str(v.backend): v.name for v in variants if v.path == self.fp32_file and not v.unavailable}


def _enclosing_run(path: Path) -> Path | None:
    return next((p for p in path.resolve().parents if (p / MANIFEST).is_file()), None)


def _found_artifacts(run: Run) -> tuple[tuple[Path, ...], tuple[Any, ...]]:
    """The run's exported files a done stage vouches for (dlopt.core.trust), and the others with the reason.
    bench's own export (bench-export/) is a cache it remakes, not one of the run's variants."""
    trusted, skipped = run.scan_artifacts(ARTIFACT_SUFFIXES)
    own = run.path / EXPORT_DIR
    return (tuple(p for p in trusted if not p.is_relative_to(own)),
            tuple(s for s in skipped if not s.path.is_relative_to(own)))


def source_of(t: Target, seed: int = 0) -> Source:
    """A resolved target as a bench source: its model, and every artifact its run holds."""
    from dlopt.models.registry import entry_module, make_inputs

    module = entry_module(t.model, t.spec)
    found, skipped = _found_artifacts(t.run)
    return Source(t.spec.name, t.run, t.spec, t.config, t.model, module, found,
                  lambda b, s: make_inputs(t.spec, t.config, b, s, seed=seed), skipped=skipped)


def _file_run_source(run: Run, fp32: Path, seed: int, named: Path | None = None) -> Source:
    """A run made from an ONNX file: that fp32 file beside the file named in the run (or every file the run holds),
    on inputs drawn from the fp32 file's graph."""
    found, skipped = _found_artifacts(run)
    return Source(str(named or run.path), run, None, None, None, None, (named,) if named else found,
                  lambda b, s: onnx_inputs(fp32, b, s, seed=seed), single=named is not None,
                  skipped=() if named else skipped, fp32_file=fp32.resolve())


def _from_artifact(path: Path, opts: TargetOptions) -> Source:
    check_trusted(path, opts.trust_pickle,  # a file that would unpickle: the rule of dlopt verify
                  "bench the run that wrote it, or check it first with `dlopt verify FILE --trust-pickle "
                  "--checkpoint MODEL.json` if you trust its source")
    run_dir = _enclosing_run(path)
    if run_dir is not None:
        full = path.resolve()  # Run.artifact_status reads a relative path as relative to the run
        status = Run(run_dir).artifact_status(full)
        if not status.trusted:
            raise InputFileError(f"{path} is not a finished result of its run ({status.reason}); rerun the stage "
                                 "that writes it, or copy the file out of the run to bench it as a stray file")
        if (fp32 := run_fp32(Run(run_dir))) is not None:
            return _file_run_source(Run(run_dir), fp32, opts.seed, named=full)
        src = source_of(resolve_target(replace(opts, name=str(run_dir))), opts.seed)
        return replace(src, label=str(path), artifacts=(full,), single=True, skipped=())
    if format_of(path).format != ExportFormat.ONNX:
        raise InputFileError(f"{path} is not inside a dlopt run, so its input shapes are unknown; "
                             "bench its run directory, or an .onnx file (which declares its inputs)")
    onnx_inputs(path, 1, None)  # a corrupt or foreign file fails here, before a run directory is made
    run = Run.create(opts.root, f"onnx-{path.stem}", {"source": str(path.resolve())})
    return Source(str(path), run, None, None, None, None, (path.resolve(),),
                  lambda b, s: onnx_inputs(path, b, s, seed=opts.seed), single=True)


def open_source(opts: TargetOptions) -> Source:
    """What bench times: the target dlopt.contract.target locates, or (bench only) an exported file named directly."""
    found = locate(opts)
    if found.run is not None and (fp32 := run_fp32(found.run)) is not None:  # no model of its own: its fp32 file
        return _file_run_source(found.run, fp32, opts.seed)
    if found.kind != Kind.ARTIFACT:
        return source_of(open_located(found, opts), opts.seed)
    assert found.path is not None
    if not found.path.is_file():
        raise InputFileError(f"artifact {found.path} not found; give an existing {', '.join(ARTIFACT_SUFFIXES)} file")
    return _from_artifact(found.path, opts)


def _export_onnx(source: Source, cfg: BenchConfig) -> Path | str:
    """The run's ONNX file made with dlopt.export, or the reason there is none."""
    spec = source.spec
    if not spec.supports(ExportFormat.ONNX):
        return f"{spec.name} has no ONNX export: {spec.why_not(ExportFormat.ONNX)}"
    try:
        from dlopt.export import ExportConfig, export_model
    except ImportError as exc:
        return f"dlopt.export is not available ({exc})"
    out_dir = source.run.path / EXPORT_DIR
    try:
        res = export_model(source.model, spec, source.config, out_dir,
                           ExportConfig(formats=(ExportFormat.ONNX,), exporter=cfg.onnx_exporter, verify=False))
    except DloptError as exc:
        return f"ONNX export failed: {exc}"
    if ExportFormat.ONNX.value not in res.artifacts:
        return f"ONNX export failed: {res.failures.get(ExportFormat.ONNX.value, 'no file written')}"
    return Path(res.artifacts[ExportFormat.ONNX.value])


def _artifact_variant(path: Path, run: Run, cfg: BenchConfig, named: bool = False) -> Variant | None:
    """A row for an artifact file; None when its backend was not asked for (unless TARGET named the file)."""
    rec = format_of(path)
    backend, choice = rec.bench_backend, rec.bench_choice
    if backend == Backend.ONNXRUNTIME and Backend.TENSORRT in cfg.backends and Backend.ONNXRUNTIME not in cfg.backends:
        backend = choice = Backend.TENSORRT
    if not named and choice not in cfg.backends:  # only the backends asked for
        return None
    rel = path.relative_to(run.path) if path.is_relative_to(run.path) else path.name
    if str(rel) == f"{EXPORT_DIR}/{file_name(ExportFormat.ONNX)}":  # bench's own export: the row name it was made with
        return Variant(backend.value, backend, path=path)
    return Variant(f"{rec.bench_kind or backend.value}:{rel}", backend, path=path, precision=quantized_precision(path))


def _beside(path: Path, name: str) -> dict[str, Any]:
    try:
        report = json.loads((path.parent / name).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return report if isinstance(report, dict) else {}


def quantized_precision(path: Path) -> str:
    """int8 / fp16 / bf16 for a file dlopt.quantize wrote (its quantize_report.json sits beside it) or dlopt optimize
    shipped (its optimize_report.json names the pick's precision), else fp32."""
    report = _beside(path, "quantize_report.json")
    if report.get("artifact") == path.name:
        method = str(report.get("method", ""))
        return "int8" if method in ("static", "dynamic") else (method if method in ("fp16", "bf16") else "fp32")
    report = _beside(path, "optimize_report.json")
    pick = report.get("pick") if f"{path.parent.name}/{path.name}" in (report.get("shipped") or ()) else None
    precision = str(((pick or {}).get("candidate") or {}).get("precision", "fp32"))
    return precision if precision in ("int8", "fp16", "bf16") else "fp32"


def _checkpoint_variants(source: Source) -> list[Variant]:
    """Other dlopt checkpoints in the run (pruned or quantized copies) as eager rows."""
    from dlopt.models.checkpoint import RECORD_FORMAT, load_checkpoint
    from dlopt.models.registry import entry_module

    out = []
    trusted, _ = source.run.scan_artifacts((".json", ".safetensors"))
    for record in (p for p in trusted if p.suffix == ".json"):
        if record in (source.run.path / MODEL_RECORD, source.run.path / MANIFEST) \
                or record.with_suffix(".safetensors") not in trusted:
            continue
        try:
            meta = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue  # not a checkpoint record: not a variant
        if not isinstance(meta, dict) or meta.get("format") != RECORD_FORMAT:
            continue
        name = f"eager:{record.relative_to(source.run.path).with_suffix('')}"
        try:
            ck = load_checkpoint(record)
        except DloptError as exc:  # a variant we cannot load is a row that says so, not a silent gap
            out.append(Variant(name, Backend.EAGER, unavailable=f"cannot load {record.name}: {exc}"))
            continue
        out.append(Variant(name, Backend.EAGER, module=entry_module(ck.model, ck.spec),
                           precision=str(meta.get("precision", "fp32"))))
    return out


def build_variants(source: Source, cfg: BenchConfig) -> list[Variant]:
    """Rows to bench: the module under each chosen backend, then each artifact found in the run."""
    out: list[Variant] = []
    script = bool(source.spec and source.spec.torchscript == "script")
    onnx_found = [p for p in source.artifacts if format_of(p).format == ExportFormat.ONNX]
    single_artifact = source.single
    for backend in cfg.backends:
        if not isinstance(backend, Backend):  # a runtime registered at run time: it times the run's files only
            continue
        if source.module is None or (single_artifact and backend != Backend.EAGER) or backend == Backend.PT2:
            continue
        if backend in (Backend.ONNXRUNTIME, Backend.TENSORRT):
            if any(p.parent == source.run.path for p in onnx_found):
                continue  # the run's own fp32 .onnx gets its row below
            got = _export_onnx(source, cfg)
            out.append(Variant(backend.value, backend, path=got) if isinstance(got, Path)
                       else Variant(backend.value, backend, unavailable=got))
            continue
        own_ts = source.run.path / file_name(ExportFormat.TORCHSCRIPT)
        if backend == Backend.TORCHSCRIPT and cfg.variants and own_ts in source.artifacts:
            continue  # the run's own exported .ts gets its row below: the live trace would duplicate it
        out.append(Variant(backend.value, backend, module=source.module, script=script))
    out += _fp32_file_variants(source, cfg)
    if cfg.variants or single_artifact:
        out += [v for p in source.artifacts if (v := _artifact_variant(p, source.run, cfg, single_artifact))]
        out += _registered_runtime_variants(source, cfg)
        out += _skipped_variants(source, cfg)
    if cfg.variants and source.module is not None and Backend.EAGER in cfg.backends and not single_artifact:
        out += _checkpoint_variants(source)
    return out


def _fp32_file_variants(source: Source, cfg: BenchConfig) -> list[Variant]:
    """The fp32 file a run was made from (an ONNX file), as the rows its int8 copies are read against: on ONNX
    Runtime, and on OpenVINO too when the run holds an OpenVINO IR (quantize compared them on each runtime)."""
    fp32 = source.fp32_file
    if fp32 is None:
        return []
    rows = [v] if (v := _artifact_variant(fp32, source.run, cfg, source.single)) else []
    if (source.single or Backend.OPENVINO in cfg.backends) and \
            any(format_of(p).bench_backend == Backend.OPENVINO for p in source.artifacts):
        rows.append(Variant(f"{Backend.OPENVINO.value}:{fp32.name}", Backend.OPENVINO, path=fp32))
    return rows


def _registered_runtime_variants(source: Source, cfg: BenchConfig) -> list[Variant]:
    """Rows of the runtimes registered at run time (dlopt.runtime.formats.register_runtime) that were asked for:
    each on every file of the formats it runs (BenchRuntime.files)."""
    from dlopt.runtime.formats import bench_runtime

    out = []
    for name in (b for b in cfg.backends if not isinstance(b, Backend)):
        rec = bench_runtime(name)
        for p in (p for p in source.artifacts if format_of(p).format.value in rec.files):
            rel = p.relative_to(source.run.path) if p.is_relative_to(source.run.path) else p.name
            row = Variant(f"{rec.name}:{rel}", name, path=p, precision=quantized_precision(p))  # type: ignore[arg-type]
            out.append(row)
    return out


def _skipped_variants(source: Source, cfg: BenchConfig) -> list[Variant]:
    """A row for each file in the run that no done stage vouches for: not measured, and the table says why."""
    out = []
    for st in source.skipped:
        v = _artifact_variant(st.path, source.run, cfg)
        if v is not None:
            out.append(Variant(v.name, v.backend, unavailable=st.skipped()))
    return out


def measured_files(source: Source) -> list[Path]:
    """The run's files this bench measures (recorded as the stage's inputs with their sha256), so `report` and
    `runs` can tell a timing of the current file from one of a file replaced since."""
    if source.single or source.spec is None:
        return [*([source.fp32_file] if source.fp32_file else []), *source.artifacts]
    weights, _ = source.run.scan_artifacts((".safetensors",))
    return [*source.artifacts, *(w for w in weights if w.parent != source.run.path)]
