"""The per-user list of model files the user named on the command line, and the runs made or worked on with them.

`dlopt.core.user_code.require_trusted` consults it: a later command on one of those runs may run the file without
`--model-code` while the file's sha256 is still the one listed (and the one the run recorded). The list is JSON:

    {"schema": "dlopt.trusted_code/1",
     "files": {"/abs/path/cnn.py": {"sha256": "...", "runs": ["/abs/run/dir", ...], "updated": "ISO time"}}}

Where: $DLOPT_TRUST_FILE, else $XDG_CONFIG_HOME/dlopt/trusted_code.json, else ~/.config/dlopt/trusted_code.json.
Read bounded and schema-checked (a list that is not what dlopt writes counts as empty), written atomically under a
lock. Failing to write it never fails a command: the user can still name the code again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "dlopt.trusted_code/1"
MAX_BYTES = 4 << 20
MAX_FILES = 500  # the oldest entries go first
MAX_RUNS = 1000  # per file
_SHA = re.compile(r"^[0-9a-f]{64}$")


def trust_file() -> Path:
    explicit = os.environ.get("DLOPT_TRUST_FILE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "dlopt" / "trusted_code.json"


def run_of(source: Path) -> Path | None:
    """The run directory `source` (a run, or a record or manifest inside one) belongs to, or None."""
    here = Path(source).resolve()
    for folder in (here, *list(here.parents)[:4]):
        if (folder / "manifest.json").is_file():
            return folder
    return None


def _valid(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and bool(_SHA.match(entry["sha256"])) \
        and isinstance(entry.get("runs"), list) and len(entry["runs"]) <= MAX_RUNS \
        and all(isinstance(r, str) and len(r) < 4096 for r in entry["runs"])


def read() -> dict[str, dict[str, Any]]:
    """file -> {"sha256", "runs", "updated"}; empty when the list is missing, too large or not what dlopt writes."""
    from dlopt.core.errors import InputFileError
    from dlopt.core.fileio import read_json

    path = trust_file()
    if not path.is_file():
        return {}
    try:
        data = read_json(path, "trust list", MAX_BYTES)
    except InputFileError:
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("schema") == SCHEMA else None
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        return {}
    return {f: e for f, e in files.items() if isinstance(f, str) and _valid(e)}


def _sha(file: Path) -> str | None:
    from dlopt.core.errors import InputFileError
    from dlopt.core.fileio import sha256_file

    try:
        return sha256_file(file)
    except (OSError, InputFileError):
        return None


def listed(file: Path, recorded_sha: str | None, source: Path) -> bool:
    """Whether the list vouches for `file` in the run of `source`: same file, same sha256 now, as listed and as
    the run recorded (when it did)."""
    run, entry = run_of(source), read().get(str(Path(file).resolve()))
    if run is None or entry is None or str(run) not in entry["runs"]:
        return False
    now = _sha(Path(file))
    return now is not None and now == entry["sha256"] and recorded_sha in (None, now)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remember(file: Path, source: Path) -> None:
    """Add the run of `source` to `file`'s entry (a new sha256 starts a new entry: the old runs named other code)."""
    from dlopt.core.errors import DloptError
    from dlopt.core.fileio import write_json_atomic

    run, file = run_of(source), Path(file).resolve()
    sha = _sha(file)
    if run is None or sha is None:
        return
    path = trust_file()
    try:
        with _locked(path):
            files = read()
            entry = files.get(str(file))
            if entry is None or entry["sha256"] != sha:
                entry = {"sha256": sha, "runs": []}
            if str(run) in entry["runs"]:
                return
            entry = {"sha256": sha, "runs": [*entry["runs"], str(run)][-MAX_RUNS:],
                     "updated": datetime.now(UTC).isoformat(timespec="seconds")}
            files.pop(str(file), None)
            files[str(file)] = entry  # the most recent last: the oldest go first past MAX_FILES
            write_json_atomic(path, {"schema": SCHEMA, "files": dict(list(files.items())[-MAX_FILES:])})
    except (OSError, DloptError):  # a read-only home: the user names the code again next time
        return
