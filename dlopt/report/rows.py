"""The report's row and the run's files as the report may use them: what collect builds and stagewise fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlopt.core.errors import InputFileError
from dlopt.core.fileio import sha256_file
from dlopt.core.results import read_result
from dlopt.core.runs import Run
from dlopt.core.trust import effective_status
from dlopt.runtime.formats import ARTIFACT_SUFFIXES

R = TypeVar("R")


@dataclass
class Row:
    variant: str
    runtime: str
    path: str  # relative to the run ("" for live runtimes such as torch.compile)
    metric: float | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    macs: int | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)  # batch -> {p50, p90}
    speedup: dict[int, float] = field(default_factory=dict)  # batch -> fp32 eager p50 / this p50
    parity: str = ""  # "pass (max err 2e-6)", "fail ...", "top-1 99.4%", ""
    pareto: bool = False
    metric_source: str = ""  # the file the metric was read from ("evaluation.json", "train_result.json", ...)
    iqr: dict[int, float] = field(default_factory=dict)  # batch -> interquartile range / median
    noisy: str = ""  # why this row's timing is too spread to compare ("" when it is not)
    flagged: dict[int, str] = field(default_factory=dict)  # batch -> bench.json's own noise verdict
    measured: dict[int, str] = field(default_factory=dict)  # batch -> when bench timed it (ISO time)
    threads: dict[int, int] = field(default_factory=dict)  # batch -> the threads it was timed with

    @property
    def label(self) -> str:
        return f"{self.variant} / {self.runtime}"


class Trust:
    """The run's files as the report may use them (dlopt.core.trust's rule), and what it skipped, with reasons."""

    def __init__(self, run: Run, stages: dict[str, Any]) -> None:
        self.run, self.stages, self.skipped, self._seen, self._measured = run, stages, [], {}, {}
        self._results: dict[tuple[type, str], Any] = {}

    def ok(self, rel: str) -> bool:
        """The run's own model (model.json) and live rows ("") are always usable; anything else needs a done stage."""
        if rel in ("", "model.json"):
            return True
        if rel not in self._seen:
            st = self.run.artifact_status(self.run.path / rel, self.stages)
            self._seen[rel] = st.trusted
            if not st.trusted and (self.run.path / rel).exists():
                self.skipped.append({"path": rel, "reason": st.reason})
        return self._seen[rel]

    def measured_now(self, rel: str) -> bool:
        """False when bench.json timed an earlier version of this file (the bench stage's inputs say which)."""
        if rel in ("", "model.json") or rel.startswith("bench-export/"):
            return True
        if rel not in self._measured:
            self._measured[rel] = self._same_as_measured(rel)
        return self._measured[rel]

    def _same_as_measured(self, rel: str) -> bool:
        rec = self.stages.get("bench") if isinstance(self.stages.get("bench"), dict) else {}
        rec = rec if effective_status(rec) == "done" else (rec.get("previous") or {})
        weights = str(Path(rel).with_suffix(".safetensors")) if rel.endswith(".json") else rel
        sha = next((i.get("sha256") for i in rec.get("inputs") or [] if isinstance(i, dict)
                    and i.get("path") == weights), None)
        if sha is None or not (self.run.path / weights).is_file() or sha256_file(self.run.path / weights) == sha:
            return True
        self.skipped.append({"path": rel, "reason": "bench.json timed an earlier version of it; rerun dlopt bench"})
        return False

    def scan(self) -> None:
        """Name every exported file in the run that no done stage vouches for (bench's own export aside)."""
        seen = {s["path"] for s in self.skipped}
        for st in self.run.scan_artifacts(ARTIFACT_SUFFIXES)[1]:
            if st.rel not in seen and not st.rel.startswith("bench-export/"):
                self.skipped.append({"path": st.rel, "reason": st.reason})

    def result(self, kind: type[R], rel: str) -> R | None:
        """A result file of the run as its typed record; a file that is not usable or not valid is named in
        `skipped` with the reason and read as absent."""
        if not (self.run.path / rel).is_file() or not self.ok(rel):
            return None
        if (kind, rel) not in self._results:
            try:
                self._results[kind, rel] = read_result(kind, self.run.path / rel)
            except InputFileError as exc:
                self.skipped.append({"path": rel, "reason": str(exc)})
                self._results[kind, rel] = None
        return self._results[kind, rel]


def source_variant(variant: str) -> str:
    """The checkpoint an int8 copy was made from: int8 <- fp32, pruned-int8 <- pruned."""
    if variant == "int8":
        return "fp32"
    return variant.removesuffix("-int8") if variant.endswith("-int8") else variant
