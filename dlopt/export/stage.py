"""The export stage on a run: export the target's model into the run directory, verify, record it all.

The one export stage: `dlopt export` and the pipeline's export steps (fp32 and pruned) both run `run_export`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlopt.contract.stage import Outcome, Section, register_stage
from dlopt.contract.target import Check, Target, TargetOptions, as_target
from dlopt.core.errors import UnsupportedError
from dlopt.core.runs import StageRecord
from dlopt.export import ExportConfig, ExportResult, check_config, export_model, supported_formats
from dlopt.models.spec import ArchSpec
from dlopt.verify import VerifyConfig
from dlopt.verify.realdata import verify_cases
from dlopt.verify.report import REPORT, write_report


def checkpoint_sha256(record: Path) -> str:
    """The weights' sha256 from the checkpoint record dlopt wrote (the record is what names the weights)."""
    try:
        return str(json.loads(Path(record).read_text()).get("sha256", ""))
    except (OSError, json.JSONDecodeError):
        return ""


def export_check(config: ExportConfig) -> Check:
    """Bad options fail now; the returned check refuses an architecture that rules export out, and a format it
    rules out (--format named it).
    Given to `resolve_target`, both fail before a run directory is created."""
    check_config(config)

    def check(spec: ArchSpec) -> None:
        if not spec.supports("export"):
            raise UnsupportedError(f"{spec.name} cannot be exported: {spec.why_not('export')}")
        if config.strict_formats:
            supported_formats(spec, config.formats, strict=True)

    return check


@dataclass(frozen=True)
class ExportOutcome(Outcome):
    target: Target
    result: ExportResult
    outputs: tuple[Path, ...]  # every file the stage wrote (artifacts, their companions, the report), where it landed


def run_export(target: Target | TargetOptions, config: ExportConfig, on_step: Callable[[str], None] | None = None,
               inputs: Path | None = None, *, folder: str = "", stage: str = "export",
               recorded: dict[str, Any] | None = None) -> ExportOutcome:
    """Export the target's model into `<run>/<folder>/`, verify each file, and record the stage `stage`.

    `recorded`: the config the manifest records for the stage (default: the whole ExportConfig)."""
    target = as_target(target, export_check(config))
    run, where = target.run, (folder,) if folder else ()
    recorded = recorded if recorded is not None else {**asdict(config), "formats": [str(f) for f in config.formats]}
    report_path = None
    with run.stage(stage, recorded, inputs=[target.checkpoint, *([inputs] if inputs else [])]) as rec:
        cases, used = verify_cases(run, target.spec, target.config, VerifyConfig(export_batch=config.batch_size),
                                   inputs) if config.verify else (None, None)  # --inputs FILE.npz, else the data
        result = export_model(target.model, target.spec, target.config, rec.dir(*where), config,
                              metadata={"checkpoint_sha256": checkpoint_sha256(target.checkpoint)}, on_step=on_step,
                              cases=cases)
        rec.outputs.extend(result.artifacts.values())
        from dlopt.runtime.formats import format_of

        # companion files (an IR's .bin, ONNX external data over 2 GB) are recorded and hashed with their artifact
        rec.outputs.extend(c for p in result.artifacts.values() for c in format_of(p).companions(p))
        result = to_final(result, rec)
        if result.verification:
            extra = {"arch": target.spec.name, "stage": stage, **({"inputs": used} if used else {})}
            rec.outputs.append(write_report(rec.path(*where, REPORT), result.verification, extra, run.path))
            report_path = run.file(*where, REPORT)
        rec.metrics.update(summary(result))
    return ExportOutcome(target, result, tuple(rec.final(p) for p in rec.outputs), stage=stage, run_dir=run.path,
                         report_path=report_path, summary=dict(rec.metrics))


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


class ExportStage:
    name = "export"
    Config = ExportConfig
    section = Section(keys=("formats", "exporter", "batch_size"),
                      comment="dlopt export options; formats the architecture does not support are skipped and noted")

    def validate(self, config: ExportConfig) -> None:
        check_config(config)  # ExportConfig's constructor does not check its options

    def check(self, spec: ArchSpec, config: ExportConfig | None = None) -> None:
        export_check(config or ExportConfig())(spec)

    def run(self, target: Any, config: ExportConfig, progress: Callable[[str], None] | None = None) -> ExportOutcome:
        return run_export(target, config, progress)


STAGE = register_stage(ExportStage())
