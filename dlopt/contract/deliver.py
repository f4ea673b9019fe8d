"""`-o/--output`: a copy of a stage's deliverable where the user names it, beside the run's own copy.

A path that ends with a separator, has no suffix, or is an existing directory is a directory: the files go in
under their run names. Otherwise it is one file: its suffix must be the artifact's, and companion files go beside
it (`.bin` of OpenVINO IR and `.safetensors` of a checkpoint record follow the new stem; ONNX external data keeps
its name, which the graph records). Nothing that exists is replaced without `force`; every file is written
atomically, all conflicts are checked before the first write, and the run's manifest records each copy.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlopt.core.errors import ConfigError, OutputError
from dlopt.core.fileio import atomic_path, sha256_file
from dlopt.runtime.formats import find_format

SAME_STEM = {".json": (".safetensors",), ".safetensors": (".json",)}  # a checkpoint record and its tensors


@dataclass(frozen=True)
class OutputTarget:
    path: Path
    is_dir: bool
    force: bool = False


def plan_output(path: Path | None, force: bool = False, suffixes: tuple[str, ...] = ()) -> OutputTarget | None:
    """Check -o before any work: an existing file needs --force; a file's suffix must be one the stage writes."""
    if path is None:
        return None
    text = str(path)
    is_dir = text.endswith((os.sep, "/")) or path.is_dir() or (path.suffix == "" and not path.is_file())
    if not is_dir:
        if suffixes and path.suffix not in suffixes:
            raise ConfigError(f"-o {path}: this command writes {' or '.join(suffixes)} files; name a file with one "
                              "of those suffixes, or a directory (ending with /)")
        if path.exists() and not force:
            raise OutputError(f"-o {path} exists; pass --force to replace it, or choose another path")
        if path.exists() and not path.is_file():
            raise OutputError(f"-o {path} exists and is not a regular file; choose another path")
    elif path.exists() and not path.is_dir():
        raise OutputError(f"-o {path} is not a directory; choose another path")
    return OutputTarget(path, is_dir, force)


def _companions(src: Path) -> list[Path]:
    rec = find_format(src)  # an artifact's sidecars (dlopt.runtime.formats), else a checkpoint's other half
    return rec.companions(src) if rec else [p for p in (src.with_suffix(s) for s in SAME_STEM.get(src.suffix, ()))
                                            if p.is_file()]


def _follows_stem(artifact: Path, companion: Path) -> bool:
    rec = find_format(artifact)
    return rec.sidecars_follow_stem if rec else companion.suffix in SAME_STEM.get(artifact.suffix, ())


def destinations(target: OutputTarget, artifact: Path) -> list[tuple[Path, Path]]:
    """(source in the run, destination) for the artifact and its companions."""
    if target.is_dir:
        return [(p, target.path / p.name) for p in (artifact, *_companions(artifact))]
    if target.path.suffix != artifact.suffix and artifact.suffix not in SAME_STEM.get(target.path.suffix, ()):
        raise ConfigError(f"-o {target.path}: the result is a {artifact.suffix} file ({artifact}, kept in the run); "
                          f"name a {artifact.suffix} file or a directory")
    pairs = [(artifact, target.path.with_suffix(artifact.suffix))]
    for c in _companions(artifact):
        renamed = target.path.with_suffix(c.suffix) if _follows_stem(artifact, c) else target.path.parent / c.name
        pairs.append((c, renamed))
    return pairs


def deliver(target: OutputTarget | None, artifacts: list[Path], run_dir: Path, stage: str) -> list[Path]:
    """Copy the artifacts (already final in the run) to -o and record the copies in the run's manifest."""
    from dlopt.core.runs import Run

    if target is None:
        return []
    run = Run(Path(run_dir))
    if not target.is_dir and len(artifacts) != 1:
        raise ConfigError(f"-o {target.path} names one file but {len(artifacts)} files were made "
                          f"({', '.join(p.name for p in artifacts)}, kept in the run); give a directory")
    pairs = [pair for a in artifacts for pair in destinations(target, Path(a))]
    clash = [d for _, d in pairs if d.exists() and not target.force]
    if clash:
        raise OutputError(f"{clash[0]} exists; pass --force to replace it, or choose another -o "
                          f"(the result is kept in the run: {run.path})")
    for src, dest in pairs:
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    copies = [{"path": str(d.resolve()), "from": str(s.relative_to(run.path)) if s.is_relative_to(run.path) else str(s),
               "sha256": sha256_file(d)} for s, d in pairs]
    run.record_stage(stage, copied_to=copies)
    return [d for _, d in pairs]
