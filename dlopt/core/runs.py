"""Run directories: `<root>/<arch>/<run-id>/manifest.json`, rewritten atomically after each stage.

A stage given no target works on the latest run under the output root (`latest_run`).
Concurrent writers of one manifest are serialised with a lock file; two runs never share a directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dlopt import __version__
from dlopt.core.errors import InputFileError, OutputError
from dlopt.core.fileio import DISK_ERRNOS, inside, safe_name, sha256_file, write_error, write_json_atomic
from dlopt.core.layout import DEFAULT_ROOT
from dlopt.core.staging import (
    STAGING,
    clean_dead,
    commit,
    new_staging,
    owner_alive,
    pause_point,
    sigint_deferred,
    this_process,
)
from dlopt.core.trust import LIVE, ArtifactStatus, candidates, classify, effective_status

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def arch_folder(arch: str) -> str:
    """The folder runs of `arch` go in: the name itself, or `<file stem>-<fn>` for user code (`models/cnn.py:build`
    -> `cnn-build`; `pkg.nets:build` -> `pkg.nets-build`), not the file's whole path."""
    target, sep, attr = arch.rpartition(":")
    if sep and not arch.startswith("torchvision:"):
        stem = Path(target).stem if target.endswith(".py") else target
        return safe_name(f"{stem}-{attr}")
    return safe_name(arch.replace(":", "-").replace("/", "-"))


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _make_exclusive(root: Path, parent: Path, run_id: str | None, attempts: int = 20) -> Path:
    """mkdir without exist_ok: two processes can never get the same directory. A generated id that is
    taken (two runs started in the same second) is drawn again; a user-given one is an error."""
    for _ in range(attempts if run_id is None else 1):
        path = parent / safe_name(run_id or new_run_id())
        inside(root, path)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(exist_ok=False)
            return path
        except FileExistsError:
            if run_id is not None:
                raise OutputError(f"run directory {path} already exists; choose another run id") from None
        except OSError as exc:
            raise OutputError(f"cannot create {path}: {exc.strerror}; choose a writable --out") from None
    raise OutputError(f"could not find a free run id under {parent}; retry")


def file_entry(path: Path, base: Path) -> dict[str, Any]:
    path = Path(path)
    rel = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
    return {"path": rel, "sha256": sha256_file(path) if path.is_file() else None,
            "bytes": path.stat().st_size if path.is_file() else None}


@dataclass
class StageRecord:
    """What a running stage adds before it finishes: outputs (files) and metrics.

    A stage writes its files at `rec.path(...)` (inside its staging directory); they move into the run only when
    the stage is done. Outputs under the staging directory are recorded under their final names."""

    outputs: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    staging: Path | None = None
    run_path: Path | None = None

    def dir(self, *parts: str) -> Path:
        """The staged location of the run's directory `<run>/<parts>` (made; no parts: the run's top)."""
        if self.staging is None:
            raise RuntimeError("this stage has no staging directory")
        path = inside(self.staging, self.staging.joinpath(*(safe_name(p) for p in parts)))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def final(self, staged: Path) -> Path:
        """Where a staged file will live once the stage is done."""
        staged = Path(staged)
        if self.staging is None or self.run_path is None or not staged.is_relative_to(self.staging):
            return staged
        return self.run_path / staged.relative_to(self.staging)

    def path(self, *parts: str) -> Path:
        """The staged location of the run's file `<run>/<parts>` (parent directories made)."""
        if self.staging is None:
            raise RuntimeError("this stage has no staging directory")
        path = inside(self.staging, self.staging.joinpath(*(safe_name(p) for p in parts)))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Run:
    """A run directory. Its path is always absolute and resolved (symlinks, '..', the working directory), so a
    run opened by any path -- relative, absolute, through a symlink, from another directory -- is the same run
    and every path derived from it (ledger keys, manifest entries) comes out the same."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).resolve())

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, root: Path, arch: str, model: dict[str, Any], run_id: str | None = None,
               stages: dict[str, Any] | None = None) -> Run:
        """A new run directory, made exclusively; `stages` seeds the manifest (e.g. the config a resume needs),
        so a process killed right after this call still leaves a run that says what it was doing."""
        from dlopt.core.environment import fingerprint  # lazily: `dlopt --help` imports this module
        from dlopt.core.user_code import remember_named

        root = Path(root)
        parent = root / arch_folder(arch)
        path = _make_exclusive(root, parent, run_id)
        manifest = {"schema_version": SCHEMA_VERSION, "dlopt_version": __version__, "run_id": path.name,
                    "arch": arch, "created": _now(), "model": model, "environment": fingerprint(),
                    "stages": dict(stages or {})}
        write_json_atomic(path / MANIFEST, manifest)
        remember_named(arch, path)  # code named on the command line: later commands on this run may run it
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> Run:
        path = Path(path)
        if path.is_file() and path.name == MANIFEST:
            path = path.parent
        if not (path / MANIFEST).exists():
            raise InputFileError(f"{path} is not a dlopt run (no {MANIFEST}); give a run directory "
                                 "(`dlopt runs` lists them)")
        run = cls(path)
        run.manifest()  # a FIFO, a device, a hostile or damaged manifest is refused here, as one line
        return run

    def manifest(self) -> dict[str, Any]:
        """The manifest, read bounded (regular file, 16 MB) and checked against dlopt.core.schema.Manifest."""
        from dlopt.core.schema import read_manifest

        return read_manifest(self.manifest_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            lock = open(self.path / ".manifest.lock", "a")  # noqa: SIM115 - closed by the with below
        except OSError as exc:  # a read-only or full file system under an existing run: exit 5, not a crash
            raise write_error(self.manifest_path, exc) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write the manifest under the lock, written atomically."""
        with self._locked():
            manifest = self.manifest()
            change(manifest)
            write_json_atomic(self.manifest_path, manifest)
        return manifest

    def file(self, *parts: str) -> Path:
        """A path inside this run made from (possibly user-given) names; cannot escape the run."""
        return inside(self.path, self.path.joinpath(*(safe_name(p) for p in parts)))

    def record_stage(self, name: str, **record: Any) -> None:
        """Merge keys into a stage's record; a key set to None is removed."""
        def change(m: dict[str, Any]) -> None:
            merged = {**m["stages"].get(name, {}), **record}
            m["stages"][name] = {k: v for k, v in merged.items() if v is not None}
            m["updated"] = _now()

        self.update(change)

    def _start_stage(self, name: str, config: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Record the stage as running (pid, host, start time); its last done record is kept as `previous`."""
        kept: dict[str, Any] = {}

        def change(m: dict[str, Any]) -> None:
            old = m["stages"].get(name)
            old = old if isinstance(old, dict) else {}
            if old.get("status") in LIVE and old.get("pid") != os.getpid() and owner_alive(old):
                raise OutputError(f"stage {name} of {self.path} is running in process {old.get('pid')}; wait for it "
                                  "to finish, or give this one another --name")
            kept_keys = ("outputs", "inputs", "finished", "config", "metrics", "duration_s")  # the whole record
            prev = ({k: old[k] for k in kept_keys if k in old} if old.get("status") == "done"
                    else old.get("previous"))
            kept["previous"] = prev
            m["stages"][name] = {"status": "running", **this_process(), "config": config, "started": _now(),
                                 "inputs": inputs, "outputs": [], "metrics": {},
                                 **({"previous": prev} if prev else {})}
            m["updated"] = _now()

        self.update(change)
        return kept["previous"]

    def _entries(self, rec: StageRecord) -> list[dict[str, Any]]:
        """Output entries under their final names (a staged file is hashed where it lies now)."""
        out = []
        for p in dict.fromkeys(Path(x) for x in rec.outputs):
            if rec.staging is not None and p.is_relative_to(rec.staging):
                if p.is_file():
                    out.append({**file_entry(p, rec.staging), "path": str(p.relative_to(rec.staging))})
            elif p.exists():
                out.append(file_entry(p, self.path))
        return out

    def _carried(self, prev: dict[str, Any] | None, new: list[dict[str, Any]], inputs: list[dict[str, Any]],
                 owns: tuple[str, ...]) -> list[dict[str, Any]]:
        """Earlier outputs this run of the stage neither replaced nor swapped away, made from the same inputs
        (`dlopt export --format onnx` then `--format torchscript` keeps both files)."""
        if not prev or prev.get("inputs") != inputs:
            return []
        taken = {e["path"] for e in new}
        return [o for o in prev.get("outputs") or [] if isinstance(o, dict) and o.get("path") not in taken
                and Path(str(o.get("path"))).parts[:1] not in [(d,) for d in owns]
                and (self.path / str(o.get("path"))).is_file()
                and sha256_file(self.path / str(o.get("path"))) == o.get("sha256")]

    @contextlib.contextmanager
    def stage(self, name: str, config: dict[str, Any], inputs: list[Path] = (),
              owns: tuple[str, ...] = (), fresh: tuple[str, ...] = ()) -> Iterator[StageRecord]:
        """Record a stage as running, then done / failed / interrupted with outputs and metrics.

        Files written at `rec.path(...)` appear in the run only once the stage is done; a directory named in
        `owns` (the stage's variant, e.g. "int8") is replaced as a whole; one in `fresh` must not exist when the
        stage is done (two processes making the same new variant: the second fails). A failed or killed stage
        leaves nothing under the final names, and its last done outputs stay usable (see dlopt.core.trust)."""
        clean_dead(self.path / STAGING)
        t0 = time.perf_counter()
        ins = [file_entry(p, self.path) for p in inputs]
        prev = self._start_stage(name, config, ins)
        try:
            rec = StageRecord(staging=new_staging(self.path, name), run_path=self.path)
        except OSError as exc:
            self.record_stage(name, status="failed")
            raise write_error(self.path / STAGING, exc) from None
        status = "failed"
        try:
            yield rec
            pause_point(name, "staged")
            outputs = self._entries(rec)
            outputs += self._carried(prev, outputs, ins, owns)
            self.record_stage(name, status="done", outputs=outputs, metrics=rec.metrics, finished=_now(),
                              duration_s=round(time.perf_counter() - t0, 3))
            pause_point(name, "commit")  # done is recorded, files not yet moved: `previous` still vouches for them
            with sigint_deferred():  # Ctrl-C during the move lands after it, on a done stage (never half-recorded)
                try:
                    commit(rec.staging, self.path, owns, fresh)
                except FileExistsError as exc:
                    raise OutputError(f"{exc.filename} was created by another process while this stage ran; its "
                                      "result is kept: rerun with another --name") from None
                self.record_stage(name, previous=None)
                status = "done"
        except KeyboardInterrupt:
            status = "done" if status == "done" else "interrupted"
            raise
        except ImportError as exc:  # pybind11 modules turn Ctrl-C during their import into "initialization failed"
            if not isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                raise
            status = "interrupted"
            raise KeyboardInterrupt from exc
        except OSError as exc:  # a writer that is not dlopt's own (a library's save) met a full or read-only disk
            if exc.errno in DISK_ERRNOS:
                raise write_error(Path(exc.filename or self.path), exc) from None
            raise
        finally:
            if status != "done":
                shutil.rmtree(rec.staging, ignore_errors=True)  # first: a full disk needs that space for the record
                self.record_stage(name, status=status, duration_s=round(time.perf_counter() - t0, 3),
                                  outputs=self._entries(StageRecord([p for p in rec.outputs if rec.staging is None
                                                                     or not Path(p).is_relative_to(rec.staging)])),
                                  metrics=rec.metrics)
            shutil.rmtree(rec.staging, ignore_errors=True)

    def stage_status(self, name: str) -> str:
        """A stage's status as readers should show it (`interrupted` for a running stage whose process is gone)."""
        return effective_status(self.manifest().get("stages", {}).get(name))

    def artifact_status(self, path: Path, stages: dict[str, Any] | None = None) -> ArtifactStatus:
        """Whether a file of this run may be used (the rule in dlopt.core.trust), with the reason when not."""
        path = Path(path) if Path(path).is_absolute() else self.path / path
        full = path.resolve() if path.exists() else path
        if not full.is_relative_to(self.path):
            return ArtifactStatus(full, str(path), None, "it is outside the run")
        rel = str(full.relative_to(self.path))
        stages = self.manifest().get("stages", {}) if stages is None else stages
        return classify(full, rel, stages if isinstance(stages, dict) else {},
                        lambda: sha256_file(full) if full.is_file() else None)

    def scan_artifacts(self, suffixes: tuple[str, ...]) -> tuple[list[Path], list[ArtifactStatus]]:
        """Files of the run with these suffixes: those a done stage vouches for, and the others with reasons."""
        stages = self.manifest().get("stages", {})
        trusted, skipped = [], []
        for p in candidates(self.path, suffixes):
            st = self.artifact_status(p, stages)
            (trusted if st.trusted else skipped).append(p if st.trusted else st)
        return trusted, skipped


def scan_runs(root: Path = DEFAULT_ROOT) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Runs under root, oldest first (by creation time in the manifest), and the directories whose manifest
    cannot be read, with the reason (they are not runs any stage can use, but the user should hear of them)."""
    found, damaged = [], []
    from dlopt.core.schema import read_manifest

    for manifest in Path(root).glob(f"*/*/{MANIFEST}"):
        try:
            created = read_manifest(manifest).get("created", "")
            mtime = manifest.stat().st_mtime
        except InputFileError as exc:  # one bad run (hostile, damaged, a FIFO) is named, not fatal to the listing
            damaged.append((manifest.parent, f"{MANIFEST} cannot be read: {exc}"))
            continue
        except OSError as exc:
            damaged.append((manifest.parent, f"{MANIFEST} cannot be read ({exc.strerror})"))
            continue
        found.append((str(created), mtime, Run(manifest.parent)))
    return [run for *_, run in sorted(found, key=lambda t: (t[0], t[1]))], damaged


def list_runs(root: Path = DEFAULT_ROOT) -> list[Run]:
    """Runs under root, oldest first; directories with a damaged manifest are left out (see scan_runs)."""
    return scan_runs(root)[0]


def latest_run(root: Path = DEFAULT_ROOT) -> Run | None:
    runs = list_runs(root)
    return runs[-1] if runs else None


def resolve_run(root: Path = DEFAULT_ROOT, run: Path | None = None) -> Run:
    if run is not None:
        return Run.open(run)
    latest = latest_run(root)
    if latest is None:
        raise InputFileError(f"no runs under {root}; start one with `dlopt train NAME` or name a model")
    return latest
