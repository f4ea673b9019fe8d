"""Artifact formats and the runtimes that run them: one record per format, one ONNX Runtime session factory.

Every module that maps a file suffix to a format, a runtime, a bench backend or the files that ship with it asks
here; nothing else holds such a map (tests/test_runtimes.py checks the source). Adding a format is one record in
FORMATS, its writer (`write(job: dlopt.export.WriteJob) -> details`) and loader (`(path, threads[, trust_pickle])
-> Runner`) functions, and its tests.

    rec = format_of(Path("int8/model.onnx"));  rec.runtime, rec.bench_backend  # "onnxruntime", Backend.ONNXRUNTIME
    session = ort_session(path, threads=1);  run = ort_call(session, feed, ort_run_options())

No torch, onnx or onnxruntime import at module level: the CLI and `dlopt report` import this module.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UsageError
from dlopt.models.spec import Backend, ExportFormat

CPU_PROVIDERS = ("CPUExecutionProvider",)
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}
ORT_QUIET = 3  # ORT log severity: errors only; its warnings are not the user's business


@dataclass(frozen=True)
class ArtifactFormat:
    """One file format dlopt writes, loads, verifies and benches."""

    format: ExportFormat  # the name `dlopt export --format` takes and results are keyed by
    suffix: str  # the file's suffix (lower case)
    runtime: str  # the runtime that runs it, as report and evaluation rows name it
    bench_backend: Backend  # the bench backend that runs a file of this format
    bench_choice: Backend  # the `dlopt bench --backend` value that selects the run's files of this format
    bench_kind: str  # bench row name prefix for a file ("torchscript-file:int8/model.ts"); "" = the backend's name
    unpickles: bool  # loading may unpickle or run code: every load passes dlopt.runtime.archive.check_trusted
    writer: str  # "module:function" taking a dlopt.export.WriteJob, returning the export details
    loader: str  # "module:function" (path, threads[, trust_pickle]) -> callable(*tensors) -> tuple of tensors
    sidecars: tuple[str, ...] = ()  # files that ship with it: {name} = its file name, {stem} = without the suffix
    required_sidecars: int = 0  # how many of `sidecars` (the first ones) it cannot load without
    # True: the loader finds the sidecars by the artifact's stem, so a copy under a new name renames them too (an IR's
    # .bin); False: the artifact names them inside (ONNX external data), so a copy keeps their names
    sidecars_follow_stem: bool = False

    def sidecar_paths(self, path: Path) -> list[Path]:
        """Where this artifact's companion files are (or would be), beside it."""
        path = Path(path)
        return [path.parent / s.format(name=path.name, stem=path.stem) for s in self.sidecars]

    def companions(self, path: Path) -> list[Path]:
        """The companion files that exist: they are copied, hashed and sized with the artifact."""
        return [p for p in self.sidecar_paths(path) if p.is_file()]

    def missing_sidecars(self, path: Path) -> list[Path]:
        return [p for p in self.sidecar_paths(path)[:self.required_sidecars] if not p.is_file()]


FORMATS: tuple[ArtifactFormat, ...] = (
    ArtifactFormat(ExportFormat.ONNX, ".onnx", "onnxruntime", Backend.ONNXRUNTIME, Backend.ONNXRUNTIME, "",
                   unpickles=False, writer="dlopt.export:write_onnx", loader="dlopt.runtime.loader:_onnx_runner",
                   sidecars=("{name}.data", "{stem}.onnx_data")),  # external data: torch's name, then onnx's
    ArtifactFormat(ExportFormat.TORCHSCRIPT, ".ts", "torchscript", Backend.TORCHSCRIPT, Backend.TORCHSCRIPT,
                   "torchscript-file", unpickles=True, writer="dlopt.export:write_torchscript",
                   loader="dlopt.runtime.loader:_torchscript_runner"),
    ArtifactFormat(ExportFormat.PT2, ".pt2", "pt2", Backend.EAGER, Backend.PT2, "pt2", unpickles=True,
                   writer="dlopt.export:write_pt2", loader="dlopt.runtime.loader:_pt2_runner"),
    ArtifactFormat(ExportFormat.OPENVINO, ".xml", "openvino", Backend.OPENVINO, Backend.OPENVINO, "openvino",
                   unpickles=False, writer="dlopt.export:write_openvino",
                   loader="dlopt.runtime.loader:_openvino_runner", sidecars=("{stem}.bin",), required_sidecars=1,
                   sidecars_follow_stem=True),
)


@dataclass(frozen=True)
class BenchRuntime:
    """One `dlopt bench` backend: how it turns a variant into a timed callable. `dlopt.bench.backends.prepare`
    dispatches through these records only, so a new runtime is a record here (plus its ArtifactFormat when it runs
    files of a new format) and its tests."""

    backend: Backend
    prepare: str  # "module:function" (Variant, inputs, Device, threads) -> dlopt.bench.backends.Prepared; it raises
    # BackendUnavailable (the row's reason) when this machine, device or variant cannot run it


BENCH_RUNTIMES: tuple[BenchRuntime, ...] = (
    BenchRuntime(Backend.EAGER, "dlopt.bench.backends:prepare_eager"),  # also runs .pt2 files (torch.export)
    BenchRuntime(Backend.TORCHSCRIPT, "dlopt.bench.backends:prepare_torchscript"),
    BenchRuntime(Backend.COMPILE, "dlopt.bench.backends:prepare_compile"),
    BenchRuntime(Backend.ONNXRUNTIME, "dlopt.bench.backends:prepare_onnxruntime"),
    BenchRuntime(Backend.TENSORRT, "dlopt.bench.backends:prepare_onnxruntime"),
    BenchRuntime(Backend.OPENVINO, "dlopt.bench.backends:prepare_openvino"),
    BenchRuntime(Backend.PT2, "dlopt.bench.backends:prepare_eager"),
)
BY_BACKEND: dict[str, BenchRuntime] = {r.backend.value: r for r in BENCH_RUNTIMES}


def bench_runtime(backend: Backend | str) -> BenchRuntime:
    rec = BY_BACKEND.get(str(backend))
    if rec is None:
        raise UsageError(f"no bench runtime {backend!s}; choose from {', '.join(BY_BACKEND)}")
    return rec


BY_FORMAT: dict[str, ArtifactFormat] = {r.format.value: r for r in FORMATS}
BY_SUFFIX: dict[str, ArtifactFormat] = {r.suffix: r for r in FORMATS}
ARTIFACT_SUFFIXES: tuple[str, ...] = tuple(BY_SUFFIX)
SUFFIXES: dict[str, str] = {r.suffix: r.format.value for r in FORMATS}  # suffix -> format name
FORMAT_SUFFIX: dict[ExportFormat, str] = {r.format: r.suffix for r in FORMATS}


def find_format(path: Path | str) -> ArtifactFormat | None:
    """The record for a file by its suffix (any case), or None when it is not an export artifact."""
    return BY_SUFFIX.get(Path(path).suffix.lower())


def format_of(path: Path | str) -> ArtifactFormat:
    rec = find_format(path)
    if rec is None:
        raise UsageError(f"{path} is not an export artifact; expected a {', '.join(ARTIFACT_SUFFIXES)} file "
                         "or a run directory")
    return rec


def get_format(name: str) -> ArtifactFormat:
    rec = BY_FORMAT.get(str(name))
    if rec is None:
        raise UsageError(f"unknown artifact format {name!r}; choose from {', '.join(BY_FORMAT)}")
    return rec


def is_artifact(path: Path | str) -> bool:
    return find_format(path) is not None


def artifact_bytes(path: Path) -> int:
    """An artifact's size on disk with the companion files that ship with it (ONNX external data, IR weights)."""
    path = Path(path)
    rec = find_format(path)
    return path.stat().st_size + sum(p.stat().st_size for p in (rec.companions(path) if rec else []))


def check_trusted(path: Path, trust_pickle: bool = False, remedy: str | None = None) -> None:
    """The one trust rule for loading an artifact: a format whose loader may unpickle or run code is refused
    (UnsafeFileError, exit 6) unless a dlopt manifest records its sha256 or the user trusts it; zip bombs always."""
    rec = format_of(path)
    if rec.unpickles:
        from dlopt.runtime.archive import check_trusted as check

        check(Path(path), rec.format.value, trust_pickle, *([remedy] if remedy else []))


def resolve(ref: str) -> Callable[..., Any]:
    """A record's "module:function" writer or loader, imported now."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def open_runner(path: Path, *, threads: int | None = None, trust_pickle: bool = False) -> Callable[..., Any]:
    """callable(*tensors) -> tuple of tensors for any artifact, through its record's loader (and trust rule)."""
    path = Path(path)
    rec = format_of(path)
    if not path.is_file():
        raise InputFileError(f"artifact {path} not found")
    missing = rec.missing_sidecars(path)
    if missing:
        raise InputFileError(f"{path} has no {missing[0].name} beside it; copy the files of an artifact together")
    loader = resolve(rec.loader)
    return loader(path, threads, trust_pickle) if rec.unpickles else loader(path, threads)


def ort_session(path: Path | bytes, *, threads: int | None = None, inter_threads: int | None = None,
                providers: Sequence[str] = CPU_PROVIDERS, optimization: str = "all") -> Any:
    """An onnxruntime.InferenceSession: `threads` intra-op threads (None: ORT's default, every core), graph
    optimization level disable/basic/extended/all, errors-only logging. A file ORT cannot load is an InputFileError."""
    import onnxruntime as ort

    if optimization not in ORT_LEVELS:
        raise UsageError(f"ONNX Runtime optimization {optimization!r} is not one of {', '.join(ORT_LEVELS)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[optimization])
    opts.log_severity_level = ORT_QUIET
    if threads:
        opts.intra_op_num_threads = threads
    if inter_threads:
        opts.inter_op_num_threads = inter_threads
    try:
        model = path if isinstance(path, bytes) else str(path)  # a file, or a serialized model in memory
        return ort.InferenceSession(model, sess_options=opts, providers=list(providers))
    except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidProtobuf, NoSuchFile...) for bad files
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = "the in-memory model" if isinstance(path, bytes) else path
        raise InputFileError(f"{where} is not a loadable ONNX model ({line}); give an .onnx file written by an "
                             "exporter") from None


def ort_run_options(log_severity: int = ORT_QUIET) -> Any:
    """RunOptions for session.run (log_severity 3: errors only, 4: fatal only, for a run dlopt may terminate); set
    `.terminate = True` from another thread (a Ctrl-C handler) to stop a long run, which then raises in its thread."""
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.log_severity_level = log_severity
    return ro


def ort_call(session: Any, feed: dict[str, Any], run_options: Any = None) -> Callable[[], list[Any]]:
    """A zero-argument call of `session` on fixed inputs (all outputs), with `run_options` if given."""
    return functools.partial(session.run, None, feed, run_options)
