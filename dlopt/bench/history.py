"""bench.json keeps every variant measured: a later, narrower bench adds its rows instead of replacing the file.

Rows are keyed by (variant, backend, batch, sequence length, threads) and carry when they were measured
(`measured`), with how many threads, and the sha256 of the file they timed. A new measurement of the same key
replaces the old row; rows the new bench did not measure are kept, unless the file they timed changed or is gone
since (then they are dropped and a note says so). The dated copy (`bench-<time>.json`) holds only what that
bench measured; its name is unique to the microsecond (`dated_path`), so two benches never share one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MAX_BYTES = 64 << 20  # a bench.json of a few thousand rows is well under this


def dated_path(run_dir: Path, when: datetime) -> Path:
    """`<run>/bench-<UTC time to the microsecond>Z.json`, a name no file in the run has: two benches in the same
    second each keep their dated copy, and the names sort in the order the benches ran."""
    t = when.astimezone(UTC)
    while (path := run_dir / f"bench-{t:%Y-%m-%dT%H%M%S.%f}Z.json").exists():
        t += timedelta(microseconds=1)
    return path


def _key(row: dict[str, Any], threads: int | None) -> tuple[Any, ...]:
    return (row.get("variant"), row.get("backend"), row.get("batch_size"), row.get("seq_len"),
            row.get("threads", threads))


def _file(run_dir: Path, artifact: Any) -> Path | None:
    if not isinstance(artifact, str) or not artifact:
        return None
    path = Path(artifact)
    return path if path.is_absolute() else run_dir / path


def _sha(path: Path | None) -> str | None:
    from dlopt.core.errors import InputFileError
    from dlopt.core.fileio import sha256_file

    if path is None or not path.is_file():
        return None
    try:
        return sha256_file(path)
    except (OSError, InputFileError):
        return None


def stamp(result: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Each row of a bench just measured, with when, its threads and the sha256 of the file it timed."""
    rows = []
    for row in result["rows"]:
        extra = {"measured": row.get("measured") or result["created"], "threads": row.get("threads",
                                                                                         result.get("threads"))}
        sha = _sha(_file(run_dir, row.get("artifact")))
        rows.append({**row, **extra, **({"artifact_sha256": sha} if sha else {})})
    return {**result, "rows": rows}


def previous(path: Path) -> dict[str, Any] | None:
    """The bench.json already in the run, or None when there is none or it is not one dlopt can read."""
    from dlopt.bench.report import schema_errors
    from dlopt.core.errors import InputFileError
    from dlopt.core.fileio import read_json

    if not path.is_file():
        return None
    try:
        data = read_json(path, "bench result", MAX_BYTES)
    except InputFileError:
        return None
    return data if not schema_errors(data) else None


def merge(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """`result` (just measured, for the run of `path`) with the rows of the bench.json at `path` it did not
    measure again. The top-level fields (config, threads, load) are the new bench's."""
    run_dir = path.parent
    new = stamp(result, run_dir)
    old = previous(path)
    if old is None:
        return new
    taken = {_key(r, new.get("threads")) for r in new["rows"]}
    kept, dropped = [], []
    for row in old["rows"]:
        row = {**row, "measured": row.get("measured") or old.get("created"),
               "threads": row.get("threads", old.get("threads"))}
        if _key(row, None) in taken:
            continue
        file = _file(run_dir, row.get("artifact"))
        recorded = row.get("artifact_sha256")
        if file is not None and (not file.is_file() or (recorded and _sha(file) != recorded)):
            dropped.append(f"{row['variant']} b{row['batch_size']}")
            continue
        kept.append(row)
    notes = list(new.get("notes") or [])
    if kept:
        when = sorted({str(r["measured"]) for r in kept})
        notes.append(f"kept {len(kept)} row(s) of earlier benches not measured this time (measured "
                     f"{', '.join(when)}); each row says when it was measured")
    if dropped:
        notes.append(f"dropped {len(dropped)} earlier row(s) whose file changed or is gone since: "
                     f"{', '.join(dropped[:6])}{' ...' if len(dropped) > 6 else ''}")
    return {**new, "rows": [*kept, *new["rows"]], "notes": notes}  # oldest first: a reader's last row is the latest
