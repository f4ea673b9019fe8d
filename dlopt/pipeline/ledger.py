"""Which pipeline steps can be skipped on `--resume`: the manifest's "pipeline" ledger.

After a step finishes, the ledger stores its config, the sha256 of every input and output file (keyed by the
path relative to the run directory, so a run opened by any path reads the same keys) and a sequence number.
A resumed pipeline skips a step only when all of these hold:
- its config is unchanged;
- no step it depends on (`after`) finished after it did (so everything downstream of a rerun step reruns,
  even when an earlier resume was killed between the two);
- every recorded input and output is there with the same hash. A file that is absent or was never hashed is
  never "unchanged" (None is not a hash), and an entry that recorded no outputs is not trusted. The pipeline's
  `--inputs FILE.npz` is an input of the steps that read it (INPUTS_READERS), so a changed file reruns them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dlopt.core.fileio import sha256_file
from dlopt.core.runs import Run

KEY = "pipeline"
SHOWN = 3  # file names quoted in a reason
# the steps that read the pipeline's --inputs FILE.npz (dlopt.pipeline.steps): int8 calibration and its judge,
# the exports' verification, the bench's timing; the others (train, prune, evaluate) never see it
INPUTS_READERS = ("quantize", "quantize-pruned", "export", "export-pruned", "bench")


def key(run: Run, path: Path | str) -> str:
    """The ledger key of a file: its path relative to the run (posix), or the resolved absolute path of a file
    outside the run. A relative path is taken relative to the run directory, never to the working directory."""
    p = Path(path)
    full = (p if p.is_absolute() else run.path / p).resolve()
    return full.relative_to(run.path).as_posix() if full.is_relative_to(run.path) else str(full)


def _expand(run: Run, paths: Iterable[Path | str]) -> list[str]:
    """Keys of the given files; a directory stands for every (non-hidden) file under it."""
    out: list[str] = []
    for p in paths:
        k = key(run, p)
        full = run.path / k
        if full.is_dir():
            out += [key(run, f) for f in sorted(full.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        else:
            out.append(k)
    return list(dict.fromkeys(out))


def hashes(run: Run, paths: Iterable[Path | str]) -> dict[str, str | None]:
    """sha256 of each file by ledger key; None for a file that is not there."""
    return {k: sha256_file(run.path / k) if (run.path / k).is_file() else None for k in _expand(run, paths)}


def _with_inputs_file(run: Run, step: str, inputs: list[Path]) -> list[Path]:
    """A step's inputs, with the pipeline's --inputs file (as stored for this run of the pipeline) when it reads it."""
    file = (stored_config(run) or {}).get("inputs") if step in INPUTS_READERS else None
    return [*inputs, Path(file)] if isinstance(file, str) and file else list(inputs)


def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _names(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN]) + (f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def _files_reason(what: str, recorded: dict[str, Any], current: dict[str, str | None]) -> str | None:
    missing = [k for k, v in current.items() if v is None]
    if missing:
        return f"{what} missing: {_names(missing)}"
    unhashed = [k for k, v in recorded.items() if not isinstance(v, str)]
    if unhashed:
        return f"{what} never hashed: {_names(unhashed)}"
    changed = [k for k in set(current) | set(recorded) if current.get(k) != recorded.get(k)]
    return f"{what} changed: {_names(changed)}" if changed else None


def why_rerun(run: Run, step: str, config: Any, inputs: list[Path], after: Sequence[str] = ()) -> str | None:
    """None when the step can be skipped; otherwise the reason it must run."""
    steps = run.manifest().get(KEY, {}).get("steps", {})
    entry = steps.get(step)
    if not isinstance(entry, dict) or entry.get("status") != "done":
        return "not done yet"
    if _canonical(entry.get("config")) != _canonical(config):
        return "its configuration changed"
    for name in after:
        up = steps.get(name)
        if isinstance(up, dict) and up.get("status") == "done" and up.get("seq", 0) > entry.get("seq", 0):
            return f"upstream step {name} reran"
    recorded_in = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
    reason = _files_reason("input", recorded_in, hashes(run, _with_inputs_file(run, step, inputs)))
    if reason:
        return reason
    recorded_out = entry.get("outputs")
    if not isinstance(recorded_out, dict) or not recorded_out:
        return "no outputs recorded"
    return _files_reason("output", recorded_out, hashes(run, list(recorded_out)))


def record(run: Run, step: str, config: Any, inputs: list[Path], outputs: list[Path], seconds: float,
           status: str = "done", note: str | None = None) -> None:
    """Store a finished step. Outputs that are not there are kept as None, so a resume reruns the step."""
    entry = {"status": status, "config": json.loads(_canonical(config)),
             "inputs": hashes(run, _with_inputs_file(run, step, inputs)),
             "outputs": hashes(run, outputs), "seconds": round(seconds, 2), "note": note}

    def change(m: dict[str, Any]) -> None:
        steps = m.setdefault(KEY, {}).setdefault("steps", {})
        seqs = [e.get("seq", 0) for e in steps.values() if isinstance(e, dict)]
        steps[step] = {**entry, "seq": max(seqs, default=0) + 1}

    run.update(change)


def store_config(run: Run, config: dict[str, Any]) -> None:
    def change(m: dict[str, Any]) -> None:
        m.setdefault(KEY, {})["config"] = config

    run.update(change)


def stored_config(run: Run) -> dict[str, Any] | None:
    return run.manifest().get(KEY, {}).get("config")
