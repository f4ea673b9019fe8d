"""Which pipeline steps can be skipped on `--resume`: the manifest's "pipeline" ledger.

After a step finishes, the ledger stores its config and the sha256 of every input and output file. A resumed
pipeline skips a step only when its config is unchanged and every one of those files is still there with the
same hash; otherwise the step runs again (and, since its outputs then change hash, so does what follows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dlopt.fileio import sha256_file
from dlopt.runs import Run

KEY = "pipeline"


def _rel(run: Run, path: Path) -> str:
    path = Path(path)
    return str(path.relative_to(run.path)) if path.is_relative_to(run.path) else str(path)


def hashes(run: Run, paths: Iterable[Path]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in paths:
        full = run.path / p if not Path(p).is_absolute() else Path(p)
        out[_rel(run, full)] = sha256_file(full) if full.is_file() else None
    return out


def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def why_rerun(run: Run, step: str, config: Any, inputs: list[Path]) -> str | None:
    """None when the step can be skipped; otherwise the reason it must run."""
    entry = run.manifest().get(KEY, {}).get("steps", {}).get(step)
    if not entry or entry.get("status") != "done":
        return "not done yet"
    if _canonical(entry.get("config")) != _canonical(config):
        return "its configuration changed"
    current = hashes(run, inputs)
    if current != entry.get("inputs"):
        changed = sorted(k for k in set(current) | set(entry.get("inputs", {}))
                         if current.get(k) != entry.get("inputs", {}).get(k))
        return f"input changed: {', '.join(changed[:3])}"
    recorded = entry.get("outputs", {})
    now = hashes(run, [Path(k) for k in recorded])
    missing = sorted(k for k, v in recorded.items() if now.get(k) != v)
    if missing:
        return f"output missing or changed: {', '.join(missing[:3])}"
    return None


def record(run: Run, step: str, config: Any, inputs: list[Path], outputs: list[Path], seconds: float,
           status: str = "done", note: str | None = None) -> None:
    entry = {"status": status, "config": json.loads(_canonical(config)), "inputs": hashes(run, inputs),
             "outputs": {k: v for k, v in hashes(run, outputs).items() if v is not None},
             "seconds": round(seconds, 2), "note": note}

    def change(m: dict[str, Any]) -> None:
        m.setdefault(KEY, {}).setdefault("steps", {})[step] = entry

    run.update(change)


def store_config(run: Run, config: dict[str, Any]) -> None:
    def change(m: dict[str, Any]) -> None:
        m.setdefault(KEY, {})["config"] = config

    run.update(change)


def stored_config(run: Run) -> dict[str, Any] | None:
    return run.manifest().get(KEY, {}).get("config")
