"""The one rule for using a file of a run: a stage whose status is `done` lists it, and its sha256 still matches.

`bench`, `report`, `runs` and the pipeline's evaluate all ask `Run.artifact_status` / `Run.scan_artifacts`
(which call this module); anything else is skipped with the reason ("stage int8 is interrupted").
A stage being rerun keeps its last done record as `previous`, so the variant it replaces stays usable until
the new one is in place, and after a failed or interrupted rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.staging import owner_alive

LIVE = ("running", "starting")


@dataclass(frozen=True)
class ArtifactStatus:
    path: Path  # absolute
    rel: str  # relative to the run
    stage: str | None  # the stage that vouches for it, or the one that explains why not
    reason: str | None  # None when the file may be used

    @property
    def trusted(self) -> bool:
        return self.reason is None

    def skipped(self) -> str:
        return f"{self.rel} skipped: {self.reason}"


def effective_status(record: Any) -> str:
    """The recorded status, except that a `running` stage whose process is gone on this host is `interrupted`."""
    if not isinstance(record, dict):
        return "unknown"
    status = str(record.get("status", "unknown"))
    if status in LIVE and owner_alive(record) is False:
        return "interrupted"
    return status


def _listings(stages: dict[str, Any], rel: str) -> list[tuple[str, str, Any]]:
    """(stage, status, sha256) for every record -- current or the previous done one -- that lists `rel`."""
    out = []
    for name, rec in stages.items():
        if not isinstance(rec, dict):
            continue
        for r, status in ((rec, effective_status(rec)), (rec.get("previous"), "done")):
            if not isinstance(r, dict) or not isinstance(r.get("outputs"), list):
                continue
            for o in r["outputs"]:
                if isinstance(o, dict) and o.get("path") == rel:
                    out.append((name, status, o.get("sha256")))
    return out


def classify(path: Path, rel: str, stages: dict[str, Any], digest: Callable[[], str | None]) -> ArtifactStatus:
    listed = _listings(stages, rel)
    done = [(n, sha) for n, status, sha in listed if status == "done"]
    if done:
        current = digest()
        match = next((n for n, sha in done if sha is not None and sha == current), None)
        if match is not None:
            return ArtifactStatus(path, rel, match, None)
    unfinished = next(((n, s) for n, s, _ in listed if s != "done"), None)
    if unfinished:
        return ArtifactStatus(path, rel, unfinished[0], f"stage {unfinished[0]} is {unfinished[1]}")
    if done:
        return ArtifactStatus(path, rel, done[0][0], f"it changed after stage {done[0][0]} recorded it "
                                                     "(sha256 differs)")
    return ArtifactStatus(path, rel, None, "no finished stage recorded it")


def candidates(root: Path, suffixes: Iterable[str]) -> list[Path]:
    """Files under the run with one of the suffixes, skipping hidden names and folders (.staging, temp files) and
    nested runs: a folder with its own manifest.json is a run of its own (dlopt optimize's build cache entries,
    <run>/optimize/cache/<key>/), whose files its own manifest vouches for."""
    wanted = set(suffixes)
    nested = {m.parent for m in root.rglob("manifest.json") if m.parent != root}
    return sorted(p for p in root.rglob("*") if p.suffix in wanted and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts)
                  and not (nested and nested.intersection(p.parents)))
