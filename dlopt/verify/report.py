"""verify-report.json: one verdict per artifact, written by `dlopt verify` and by the export stage's own check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPORT = "verify-report.json"


def write_report(path: Path, reports: dict[str, Any], extra: dict[str, Any] | None = None,
                 run_dir: Path | None = None) -> Path:
    """verify-report.json: one verdict per format (dlopt.verify reports); `extra` are VerifyReport fields
    (arch, stage, weights_source). Written as a dlopt.core.results.VerifyReport, which refuses an undeclared key."""
    from dlopt.core.results import VerifyReport, write_result

    verdicts = {fmt: {**r.to_dict(), "artifact": _beside(r.to_dict()["artifact"], run_dir or path.parent)}
                for fmt, r in reports.items()}
    record = VerifyReport.of({**(extra or {}), "passed": all(r.passed for r in reports.values()),
                              "artifacts": verdicts})
    return write_result(record, path)


def _beside(artifact: str, folder: Path) -> str:
    """An artifact's path relative to its run (or, outside a run, to the report's folder) when inside it: files
    in a run never record where the run lives; a file elsewhere keeps its path."""
    p = Path(artifact).resolve()
    return str(p.relative_to(folder.resolve())) if p.is_relative_to(folder.resolve()) else str(artifact)
