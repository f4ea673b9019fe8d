"""Artifact formats and the runtimes that run them: one record per format, one per bench runtime (and, re-exported
from dlopt.runtime.ort, the one ONNX Runtime session factory).

Every module that maps a file suffix to a format, a runtime, a bench backend or the files that ship with it asks
here; nothing else holds such a map or names a suffix or a runtime by hand (tests/test_runtimes.py checks the
source). Adding a format is one record in FORMATS, its writer (`write(job: dlopt.export.WriteJob) -> details`) and
loader (`(path, threads[, trust_pickle]) -> Runner`) functions, and its tests; adding a bench runtime is one
BenchRuntime record (`register_runtime`) and its prepare function. Records hold callables: a function of a layer
above this one (an export writer, a bench backend) or of dlopt.runtime.loader (which imports this module) is held
as `lazy("module:function")`, imported when called: the runtime may not import those (tests/test_layers.py), and
the CLI starts without them.

    rec = format_of(Path("int8/model.onnx"));  rec.runtime, rec.bench_backend  # "onnxruntime", Backend.ONNXRUNTIME
    session = ort_session(path, threads=1);  run = ort_call(session, feed, ort_run_options())

No torch, onnx or onnxruntime import at module level: the CLI and `dlopt report` import this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UsageError
from dlopt.models.spec import Backend, ExportFormat
from dlopt.runtime.ort import CPU_PROVIDERS, ORT_LEVELS, ORT_QUIET, ort_call, ort_run_options, ort_session  # noqa: F401


def lazy(ref: str) -> Callable[..., Any]:
    """A function imported on each call, by name (`resolve` gives the function itself): an export writer or a bench
    backend, of layers above the runtime, or a loader of dlopt.runtime.loader, which imports this module."""
    module, _, name = ref.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.ref = ref  # type: ignore[attr-defined]
    call.__name__ = name
    return call


def _openvino_loader(path: Path, threads: int | None) -> Any:
    from dlopt.runtime.openvino import torch_runner

    return torch_runner(path, threads)


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
    writer: Callable[..., dict[str, Any]]  # (dlopt.export.WriteJob) -> the export details
    loader: Callable[..., Any]  # (path, threads[, trust_pickle]) -> callable(*tensors) -> tuple of tensors
    sidecars: tuple[str, ...] = ()  # files that ship with it: {name} = its file name, {stem} = without the suffix
    required_sidecars: int = 0  # how many of `sidecars` (the first ones) it cannot load without
    # True: the loader finds the sidecars by the artifact's stem, so a copy under a new name renames them too (an IR's
    # .bin); False: the artifact names them inside (ONNX external data), so a copy keeps their names
    sidecars_follow_stem: bool = False
    label: str = ""  # how messages name such files ("OpenVINO IR"); "" = the format's name
    # True: a run holding such a file has it benched on its runtime even when that backend was not asked for (an
    # IR only the quantize stage writes, whose runtime is not among the pipeline's default backends)
    bench_when_present: bool = False
    metadata: bool = False  # dlopt writes its metadata (arch, config, quantized) inside the file (read_metadata)

    def sidecar_paths(self, path: Path) -> list[Path]:
        """Where this artifact's companion files are (or would be), beside it."""
        path = Path(path)
        return [path.parent / s.format(name=path.name, stem=path.stem) for s in self.sidecars]

    def companions(self, path: Path) -> list[Path]:
        """The companion files that exist: they are copied, hashed and sized with the artifact."""
        return [p for p in self.sidecar_paths(path) if p.is_file()]

    def missing_sidecars(self, path: Path) -> list[Path]:
        return [p for p in self.sidecar_paths(path)[:self.required_sidecars] if not p.is_file()]

    def copy(self, src: Path, dst: Path) -> list[Path]:
        """Copy an artifact with its companions; returns the companions' copies. Those the loader finds by the
        artifact's stem follow its new name; those it names inside keep theirs."""
        import shutil

        shutil.copyfile(src, dst)
        out = []
        for old, new in zip(self.sidecar_paths(src), self.sidecar_paths(dst), strict=True):
            if old.is_file():
                target = new if self.sidecars_follow_stem else Path(dst).parent / old.name
                shutil.copyfile(old, target)
                out.append(target)
        return out


FORMATS: tuple[ArtifactFormat, ...] = (
    ArtifactFormat(ExportFormat.ONNX, ".onnx", "onnxruntime", Backend.ONNXRUNTIME, Backend.ONNXRUNTIME, "",
                   unpickles=False, writer=lazy("dlopt.export:write_onnx"),
                   loader=lazy("dlopt.runtime.loader:onnx_runner"),
                   sidecars=("{name}.data", "{stem}.onnx_data"),  # external data: torch's name, then onnx's
                   metadata=True),
    ArtifactFormat(ExportFormat.TORCHSCRIPT, ".ts", "torchscript", Backend.TORCHSCRIPT, Backend.TORCHSCRIPT,
                   "torchscript-file", unpickles=True, writer=lazy("dlopt.export:write_torchscript"),
                   loader=lazy("dlopt.runtime.loader:torchscript_runner")),
    ArtifactFormat(ExportFormat.PT2, ".pt2", "pt2", Backend.EAGER, Backend.PT2, "pt2", unpickles=True,
                   writer=lazy("dlopt.export:write_pt2"), loader=lazy("dlopt.runtime.loader:pt2_runner")),
    ArtifactFormat(ExportFormat.OPENVINO, ".xml", "openvino", Backend.OPENVINO, Backend.OPENVINO, "openvino",
                   unpickles=False, writer=lazy("dlopt.export:write_openvino"), loader=_openvino_loader,
                   sidecars=("{stem}.bin",), required_sidecars=1, sidecars_follow_stem=True, label="OpenVINO IR",
                   bench_when_present=True, metadata=True),  # its rt_info: quantized, inference precision
)


@dataclass(frozen=True)
class BenchRuntime:
    """One `dlopt bench` backend: how it turns a variant into a timed callable. `dlopt.bench.backends.prepare`
    dispatches through these records only, so a new runtime is a record here (`register_runtime`, plus its
    ArtifactFormat when it runs files of a new format) and its tests."""

    backend: Backend | str  # a Backend member, or the name of a runtime registered at run time
    prepare: Callable[..., Any]  # (Variant, inputs, Device, threads) -> dlopt.bench.backends.Prepared; it raises
    # BackendUnavailable (the row's reason) when this machine, device or variant cannot run it
    requires: str | None = None  # the module it needs installed (its pip name too)
    cpu_only: str = ""  # why dlopt runs it on the CPU only: the reason on any other device
    check: Callable[[Any, Any], None] | None = None  # (backend, device): raises BackendUnavailable, known up front
    files: tuple[str, ...] = ()  # artifact formats whose run files it times (beside the formats' own bench_choice)
    gpu_only: str = ""  # why it runs on an NVIDIA GPU only: the reason where this machine has none

    @property
    def name(self) -> str:
        return str(self.backend)


def _ort_check(backend: Any, device: Any) -> None:
    lazy("dlopt.bench.backends:ort_providers")(backend, device)


BENCH_RUNTIMES: tuple[BenchRuntime, ...] = (
    BenchRuntime(Backend.EAGER, lazy("dlopt.bench.backends:prepare_eager")),  # also runs .pt2 files (torch.export)
    BenchRuntime(Backend.TORCHSCRIPT, lazy("dlopt.bench.backends:prepare_torchscript")),
    BenchRuntime(Backend.COMPILE, lazy("dlopt.bench.backends:prepare_compile")),
    BenchRuntime(Backend.ONNXRUNTIME, lazy("dlopt.bench.backends:prepare_onnxruntime"), "onnxruntime",
                 check=_ort_check),
    BenchRuntime(Backend.TENSORRT, lazy("dlopt.bench.backends:prepare_onnxruntime"), "onnxruntime",
                 check=_ort_check, gpu_only="no CUDA GPU: TensorRT runs on NVIDIA GPUs only"),
    BenchRuntime(Backend.OPENVINO, lazy("dlopt.bench.backends:prepare_openvino"), "openvino",
                 cpu_only="dlopt runs OpenVINO on its CPU plugin only; pass --device cpu"),
    BenchRuntime(Backend.PT2, lazy("dlopt.bench.backends:prepare_eager")),
)
BY_BACKEND: dict[str, BenchRuntime] = {r.name: r for r in BENCH_RUNTIMES}
# Modules that register a bench runtime of their own (`register_runtime`), imported on the first lookup: the
# registration line of a runtime added in its own file, like a zoo family's import.
RUNTIME_MODULES: list[str] = []
_loaded: set[str] = set()


def register_runtime(rec: BenchRuntime) -> BenchRuntime:
    """Add (or replace) a bench runtime: `dlopt bench --backend NAME` and pipeline.toml's backends then take it,
    and bench times it on the run's files of the formats in `rec.files`."""
    BY_BACKEND[rec.name] = rec
    return rec


def runtime_names() -> list[str]:
    """Every bench runtime's name: the Backend members, then those registered."""
    for module in [m for m in RUNTIME_MODULES if m not in _loaded]:
        _loaded.add(module)
        importlib.import_module(module)
    return list(BY_BACKEND)


def bench_runtime(backend: Backend | str) -> BenchRuntime:
    if str(backend) not in BY_BACKEND:
        runtime_names()
    rec = BY_BACKEND.get(str(backend))
    if rec is None:
        raise UsageError(f"no bench runtime {backend!s}; choose from {', '.join(BY_BACKEND)}")
    return rec


def why_not_here(backend: Backend | str, device: Any) -> str | None:
    """Why a bench runtime cannot measure anything on this machine and device, known before any run is made."""
    import importlib.util

    rec = bench_runtime(backend)
    if rec.cpu_only and str(device) != "cpu":
        return rec.cpu_only
    if rec.requires and importlib.util.find_spec(rec.requires) is None:
        return f"{rec.requires} is not installed (pip install {rec.requires})"
    if rec.check is not None:
        try:
            rec.check(backend, device)
        except Exception as exc:  # noqa: BLE001 -- BackendUnavailable, of the bench layer: its message is the reason
            return str(exc)
    return None


def why_unavailable_here(backend: Backend | str) -> str | None:
    """Why a bench runtime cannot run on this machine at all, judged without importing anything (`dlopt bench
    --help` lists it so): a module not installed, or no NVIDIA GPU. `why_not_here` asks more, when a run starts."""
    import glob
    import importlib.util

    rec = bench_runtime(backend)
    if rec.gpu_only and not glob.glob("/dev/nvidia[0-9]*"):  # the driver's device files: no torch import to ask
        return rec.gpu_only
    if rec.requires and importlib.util.find_spec(rec.requires) is None:
        return f"{rec.requires} is not installed (pip install {rec.requires})"
    return None


def benched_when_present(scan: Callable[[tuple[str, ...]], Any], backends: Sequence[Any]) -> list[ArtifactFormat]:
    """Formats a run holds files of (`scan`: Run.scan_artifacts) that bench times on their runtime even when
    `backends` leaves it out (ArtifactFormat.bench_when_present)."""
    chosen = {str(b) for b in backends}
    return [r for r in FORMATS if r.bench_when_present and str(r.bench_choice) not in chosen and scan((r.suffix,))[0]]


BY_FORMAT: dict[str, ArtifactFormat] = {r.format.value: r for r in FORMATS}
BY_SUFFIX: dict[str, ArtifactFormat] = {r.suffix: r for r in FORMATS}
ARTIFACT_SUFFIXES: tuple[str, ...] = tuple(BY_SUFFIX)
SUFFIXES: dict[str, str] = {r.suffix: r.format.value for r in FORMATS}  # suffix -> format name
FORMAT_SUFFIX: dict[ExportFormat, str] = {r.format: r.suffix for r in FORMATS}


def file_name(fmt: ExportFormat | str, stem: str = "model") -> str:
    """`model.onnx`: the file name of an artifact of format `fmt` (the name every stage writes it under)."""
    return f"{stem}{get_format(str(fmt)).suffix}"


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


def resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """The function a record holds, imported now: a `lazy` callable's target, a "module:function" string, or the
    callable itself."""
    ref = getattr(ref, "ref", ref)
    if callable(ref):
        return ref
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
    return rec.loader(path, threads, trust_pickle) if rec.unpickles else rec.loader(path, threads)
