"""Export a model to ONNX, TorchScript and torch.export (.pt2), and verify each artifact against eager.

    result = export_model(model, spec, cfg, out_dir, ExportConfig(formats=(ExportFormat.ONNX,)))
    run = load_artifact(result.artifacts["onnx"]);  outputs = run(*make_inputs(spec, cfg, 3))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt import __version__
from dlopt.core.errors import OutputError, UnsupportedError, UsageError
from dlopt.models.spec import ArchSpec, ExportFormat
from dlopt.runtime.formats import FORMAT_SUFFIX as SUFFIX
from dlopt.runtime.formats import SUFFIXES, get_format, resolve
from dlopt.runtime.loader import artifact_format, load_artifact, read_metadata
from dlopt.runtime.quiet import DEPRECATION_NOTES, quiet_deprecations

# openvino is asked for by name (or "all") until every zoo architecture is verified on it
DEFAULT_FORMATS = (ExportFormat.ONNX, ExportFormat.TORCHSCRIPT, ExportFormat.PT2)

__all__ = ["DEFAULT_FORMATS", "SUFFIX", "SUFFIXES",
           "ExportConfig", "ExportResult", "WriteJob", "artifact_format", "check_config", "export_model",
           "load_artifact",
           "read_metadata", "supported_formats"]


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[ExportFormat, ...] = DEFAULT_FORMATS  # those the spec does not support are skipped, noted
    exporter: str = "dynamo"  # ONNX exporter: "dynamo" (torch.export based) or "legacy" (TorchScript based)
    opset: int | None = None  # None = the exporter's default
    batch_size: int = 2  # example batch used for tracing/export; not 1, which exporters specialise
    verify: bool = True  # compare each artifact with eager at several shapes right after export
    dynamic: bool = True  # export the spec's batch/seq axes as dynamic (False only to test the verifier)
    strict_formats: bool = False  # True: a requested format the spec does not support is an error
    atol: float | None = None  # verification tolerance; None = the spec's (dlopt.verify.VerifyConfig)
    rtol: float | None = None
    verify_time_limit_s: float | None = 300.0  # per artifact (export --time-limit-s); None: no limit


@dataclass(frozen=True)
class ExportResult:
    artifacts: dict[str, Path]  # format value -> file
    seconds: dict[str, float]  # format value -> export wall time
    notes: list[str] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # format -> exporter, opset, method...
    failures: dict[str, str] = field(default_factory=dict)  # format -> why export failed
    verification: dict[str, Any] = field(default_factory=dict)  # format -> dlopt.verify.VerifyReport

    @property
    def passed(self) -> bool:
        return not self.failures and all(r.passed for r in self.verification.values())

    def to_dict(self) -> dict[str, Any]:
        return {"artifacts": {k: str(v) for k, v in self.artifacts.items()}, "seconds": self.seconds,
                "notes": self.notes, "details": self.details, "failures": self.failures,
                "verification": {k: r.to_dict() for k, r in self.verification.items()}}


def supported_formats(spec: ArchSpec, requested: tuple[ExportFormat, ...],
                      strict: bool) -> tuple[list[ExportFormat], list[str]]:
    """The requested formats the spec supports, and a note for each skipped one (an error if strict)."""
    keep, notes = [], []
    for fmt in requested:
        if spec.supports(fmt):
            keep.append(ExportFormat(fmt))
        elif strict:
            raise UnsupportedError(f"{spec.name} cannot be exported to {fmt}: {spec.why_not(fmt)}")
        else:
            notes.append(f"{fmt} skipped: {spec.why_not(fmt)}")
    return keep, notes


def check_config(config: ExportConfig) -> None:
    """Refuse bad options before any work (or any run directory) is made: the one rule set for `dlopt export`
    options and the [export] table of pipeline.toml."""
    from dlopt.export.onnx import check_options
    from dlopt.models.options import check_choice, check_int

    if isinstance(config.formats, str) or not isinstance(config.formats, (tuple, list)) or not config.formats:
        raise UsageError(f"export.formats = {config.formats!r:.60} is not allowed: expected a non-empty list from "
                         f"{', '.join(map(str, ExportFormat))}")
    for fmt in config.formats:
        check_choice("export", "formats", fmt, [f.value for f in ExportFormat], flag="export format")
    check_choice("export", "exporter", config.exporter, ("dynamo", "legacy"))
    check_int("export", "batch_size", config.batch_size, 1, 1_000_000)
    check_int("export", "opset", config.opset, 1, 1000, optional=True)
    if ExportFormat.ONNX in config.formats or ExportFormat.OPENVINO in config.formats:
        check_options(config.exporter, config.opset)
    if config.dynamic and config.batch_size < 2:
        raise UsageError(f"export.batch_size = {config.batch_size} is out of range: the export --batch-size must be "
                         "at least 2: exporters fix an axis of size 1; "
                         "verification still checks batch 1")


def _metadata(spec: ArchSpec, cfg: Any, extra: dict[str, Any] | None, outputs: tuple[str, ...] = ()) -> dict[str, str]:
    import json

    from dlopt.models.options import config_dict

    tol = spec.tolerance
    meta = {"dlopt_version": __version__, "arch": spec.name, "config": json.dumps(config_dict(cfg)),
            "tolerance": json.dumps({"atol": tol.atol, "rtol": tol.rtol}),
            "inputs": ",".join(spec.input_names), "outputs": ",".join(outputs or spec.output_names)}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return meta


@dataclass(frozen=True)
class WriteJob:
    """What a format's writer (dlopt.runtime.formats record `writer`) gets: one module to write to one file."""

    module: Any  # the entry module, in eval mode
    example: tuple[Any, ...]  # example inputs at config.batch_size
    spec: ArchSpec
    cfg: Any
    path: Path  # the file to write (atomically)
    config: ExportConfig
    metadata: dict[str, str]  # stored in the artifact beside dlopt's own keys
    onnx: Path | None = None  # this export's ONNX file, when already written (OpenVINO converts it)


def write_onnx(job: WriteJob) -> dict[str, Any]:
    from dlopt.export.onnx import export_onnx

    return export_onnx(job.module, job.example, job.spec, job.cfg, job.path, exporter=job.config.exporter,
                       opset=job.config.opset, dynamic=job.config.dynamic, metadata=job.metadata)


def write_openvino(job: WriteJob) -> dict[str, Any]:
    from dlopt.export.openvino import export_openvino

    return export_openvino(job.module, job.example, job.spec, job.cfg, job.path, exporter=job.config.exporter,
                           opset=job.config.opset, dynamic=job.config.dynamic, metadata=job.metadata, onnx=job.onnx)


def write_torchscript(job: WriteJob) -> dict[str, Any]:
    from dlopt.export.torchscript import export_torchscript

    return export_torchscript(job.module, job.example, job.spec, job.path, metadata=job.metadata)


def write_pt2(job: WriteJob) -> dict[str, Any]:
    from dlopt.export.pt2 import export_pt2

    return export_pt2(job.module, job.example, job.spec, job.cfg, job.path, dynamic=job.config.dynamic,
                      metadata=job.metadata)


def _export_formats(formats: list[ExportFormat], module: Any, spec: ArchSpec, cfg: Any, out_dir: Path, stem: str,
                    config: ExportConfig, meta: dict[str, str], step: Callable[[str], None]) -> ExportResult:
    """Export each format in turn; an exporter failure is recorded and the other formats still run."""
    from dlopt.models.registry import make_inputs

    example = make_inputs(spec, cfg, config.batch_size)
    result = ExportResult({}, {})
    for fmt in formats:
        path = Path(out_dir) / f"{stem}{SUFFIX[fmt]}"
        step(f"exporting {spec.name} to {fmt}")
        t0 = time.perf_counter()
        try:
            with quiet_deprecations():
                job = WriteJob(module, example, spec, cfg, path, config, meta,
                               result.artifacts.get(ExportFormat.ONNX.value))  # same options: reused
                details = resolve(get_format(fmt).writer)(job)
        except (OutputError, UnsupportedError, KeyboardInterrupt):
            raise
        except Exception as exc:  # exporters raise many internal types; record it, keep the other formats
            result.failures[fmt.value] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            continue
        result.seconds[fmt.value] = round(time.perf_counter() - t0, 3)
        result.artifacts[fmt.value] = path
        result.notes.extend(details.pop("notes", []))
        result.details[fmt.value] = details
        used = "legacy" if details.get("exporter") == "legacy" else fmt.value
        if used in DEPRECATION_NOTES and DEPRECATION_NOTES[used] not in result.notes:
            result.notes.append(DEPRECATION_NOTES[used])
    return result


def export_model(model: Any, spec: ArchSpec, cfg: Any, out_dir: Path, config: ExportConfig = ExportConfig(),
                 stem: str = "model", metadata: dict[str, Any] | None = None,
                 on_step: Callable[[str], None] | None = None, cases: list[Any] | None = None) -> ExportResult:
    """Export the entry module to each format (atomically, into out_dir/{stem}.onnx|.ts|.pt2), then verify.

    `metadata` (e.g. {"checkpoint_sha256": ...}) is stored in every artifact beside dlopt's own keys.
    An exporter failure is recorded in `failures` and the other formats still run. `on_step` hears progress.
    `cases` are verification inputs (dlopt.verify.Case); default: random valid inputs at the planned shapes.
    """
    from dlopt.models.registry import entry_module, make_inputs

    check_config(config)
    formats, notes = supported_formats(spec, config.formats, config.strict_formats)
    step = on_step or (lambda _msg: None)
    module = entry_module(model, spec).eval()
    from dlopt.export.shapes import recorded_output_names  # dict keys and nested paths, before any exporter runs

    names = recorded_output_names(module, make_inputs(spec, cfg, config.batch_size), spec) if formats else ()
    result = _export_formats(formats, module, spec, cfg, out_dir, stem, config, _metadata(spec, cfg, metadata, names),
                             step)
    result.notes[:0] = notes
    if config.verify and result.artifacts:
        from dlopt.verify import VerifyConfig, verify_artifacts

        step(f"verifying {', '.join(result.artifacts)}")
        with quiet_deprecations():  # trust: the files were written just now by this process
            vcfg = VerifyConfig(export_batch=config.batch_size, atol=config.atol, rtol=config.rtol,
                                time_limit_s=config.verify_time_limit_s)
            reports = verify_artifacts(model, spec, cfg, result.artifacts, vcfg, trust_pickle=True, cases=cases)
        result.verification.update(reports)
    return result
