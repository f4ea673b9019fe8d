"""The export stage on a run: resolve the target, export into the run directory, verify, record it all."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dlopt.export import ExportConfig, ExportResult, check_config, export_model, supported_formats
from dlopt.runs import StageRecord
from dlopt.target import Target, TargetOptions, resolve_target
from dlopt.verify import VerifyConfig
from dlopt.verify.realdata import verify_cases
from dlopt.verify.report import REPORT, write_report


def checkpoint_sha256(record: Path) -> str:
    """The weights' sha256 from the checkpoint record dlopt wrote (the record is what names the weights)."""
    try:
        return str(json.loads(Path(record).read_text()).get("sha256", ""))
    except (OSError, json.JSONDecodeError):
        return ""


def _precheck(opts: TargetOptions, config: ExportConfig) -> None:
    """Bad options and formats an architecture rules out fail before a run directory is created."""
    check_config(config)
    name = opts.name
    if config.strict_formats and name and opts.checkpoint is None and not Path(name).exists():
        from dlopt.registry import get_spec

        supported_formats(get_spec(name), config.formats, strict=True)


def run_export(opts: TargetOptions, config: ExportConfig,
               on_step: Callable[[str], None] | None = None,
               inputs: Path | None = None) -> tuple[Target, ExportResult, Path | None]:
    """Export the target into its run directory; returns the target, the result and the report path."""
    _precheck(opts, config)
    target = resolve_target(opts)
    run = target.run
    stage_config = {**asdict(config), "formats": [str(f) for f in config.formats]}
    report_path = None
    with run.stage("export", stage_config, inputs=[target.checkpoint, *([inputs] if inputs else [])]) as rec:
        cases, used = verify_cases(run, target.spec, target.config, VerifyConfig(export_batch=config.batch_size),
                                   inputs) if config.verify else (None, None)  # --inputs FILE.npz, else the data
        result = export_model(target.model, target.spec, target.config, rec.dir(), config,
                              metadata={"checkpoint_sha256": checkpoint_sha256(target.checkpoint)}, on_step=on_step,
                              cases=cases)
        rec.outputs.extend(result.artifacts.values())
        from dlopt.runtimes import format_of

        # companion files (an IR's .bin, ONNX external data over 2 GB) are recorded and hashed with their artifact
        rec.outputs.extend(c for p in result.artifacts.values() for c in format_of(p).companions(p))
        result = to_final(result, rec)
        if result.verification:
            extra = {"arch": target.spec.name, "stage": "export", **({"inputs": used} if used else {})}
            rec.outputs.append(write_report(rec.path(REPORT), result.verification, extra, run.path))
            report_path = run.file(REPORT)
        rec.metrics.update(summary(result))
    return target, result, report_path


def to_final(result: ExportResult, rec: StageRecord) -> ExportResult:
    """The result with its paths (written in the stage's staging directory) where they land when it is done."""
    from dataclasses import replace

    artifacts = {fmt: rec.final(p) for fmt, p in result.artifacts.items()}
    return replace(result, artifacts=artifacts,
                   verification={fmt: replace(r, artifact=str(artifacts.get(fmt, r.artifact)))
                                 for fmt, r in result.verification.items()})


def summary(result: ExportResult) -> dict[str, Any]:
    """Per format: seconds, exporter details, verification verdict and worst error (for the manifest)."""
    out: dict[str, Any] = {}
    for fmt in (*result.artifacts, *result.failures):
        report = result.verification.get(fmt)
        out[fmt] = {"seconds": result.seconds.get(fmt), "details": result.details.get(fmt, {}),
                    "failed": result.failures.get(fmt),
                    "verified": None if report is None else report.passed,
                    "worst": None if report is None else report.worst()}
    out["notes"] = result.notes
    return out
