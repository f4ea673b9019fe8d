"""Every file a study of an ONNX file made elsewhere builds from it, kept once under the key dlopt.optimize.cache
uses: hash(the file's sha256 + the pass's config), in <run>/optimize/cache/<key>/.

fp32 on ONNX Runtime is the file itself (copied into the run, so the pick ships from it); fp32 on OpenVINO is its
IR; int8 and fp16 come from the ONNX-file builders of `dlopt quantize model.onnx` (dlopt.quantize.onnx_file). An
entry is a small run of its own, as the model cache's are: its manifest records the pass as a done stage with the
sha256 of each file, and a file is used only while that still matches (dlopt.core.trust). A build runs in a scratch
folder `.building-<pid>-*` beside the entries and is moved under its key whole (`os.replace`), so a killed build
never leaves a file under its final name; what it left is removed by `sweep` once its process is gone. A failure
that would repeat (a quantizer that cannot convert this graph) is remembered beside the entry, as the model cache
does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError
from dlopt.core.fileio import write_json_atomic
from dlopt.optimize.cache import (
    CACHE,
    FAILED,
    FOLDER,
    Artifact,
    CandidateFailed,
    Model,
    cache_key,
    key_lock,
    shipped_with,
)
from dlopt.optimize.config import OptimizeConfig, Precision, Runtime

SCRATCH = ".building-"
MAX_INLINE_BYTES = 1 << 30  # a copy larger than this keeps its weights in external data beside it


def _format(runtime: Runtime) -> Any:
    """The artifact format a runtime runs (asked of the format records)."""
    from dlopt.runtime.formats import FORMATS

    return next(f for f in FORMATS if f.runtime == str(runtime))


class FileCache:
    """Builds from the fp32 file `source`, once per key; `builds` counts what this process built."""

    def __init__(self, run_path: Path, source: Path, cfg: OptimizeConfig, calib: list[tuple[Any, ...]],
                 calib_id: str, progress: Callable[[str], None] | None = None) -> None:
        self.root = Path(run_path) / FOLDER / CACHE
        self.source, self.cfg, self.calib, self.calib_id = Path(source), cfg, calib, calib_id
        self.say = progress or (lambda _m: None)
        self.builds: Counter[str] = Counter()
        self._base = Model.of(self.source)  # Model.record: the fp32 file; its sha256 keys every entry

    def base(self) -> Model:
        return self._base

    def sweep(self) -> list[Path]:
        """Remove the scratch folders that killed builds left (dead owners only)."""
        from dlopt.core.staging import clean_dead

        return clean_dead(self.root, SCRATCH)

    def prune(self, parent: Model, ratio: float, blocks: int = 0) -> Model:
        if ratio or blocks:
            raise CandidateFailed("pruning needs the PyTorch model; an ONNX file is searched unpruned")
        return parent

    def artifact(self, model: Model, precision: Precision, runtime: Runtime) -> Artifact:
        """The file for (precision, runtime) made from the fp32 file."""
        from dlopt.runtime.formats import file_name

        config = self._config(precision, runtime)
        key = cache_key(model.sha, config)
        path = self._entry(key, config, file_name(_format(runtime).format),
                           lambda dest, work: self._build(precision, runtime, dest, work))
        return Artifact(path, key, model, precision, runtime)

    def _config(self, precision: Precision, runtime: Runtime) -> dict[str, Any]:
        if precision == Precision.FP32:
            return {"pass": "copy" if runtime == Runtime.ONNXRUNTIME else "convert", "runtime": str(runtime)}
        return {"pass": "quantize", "quantize": self._quantize_config(precision, runtime).to_json(),
                "calibration": self.calib_id}

    def _quantize_config(self, precision: Precision, runtime: Runtime) -> Any:
        from dlopt.quantize.config import Method, QBackend, QuantizeConfig

        backend = QBackend(str(runtime))
        method = Method.FP16 if precision == Precision.FP16 else Method.STATIC
        return QuantizeConfig(method=method, backend=backend, auto_backends=(backend,), seed=self.cfg.seed,
                              max_drop=self.cfg.goal.max_drop, name=f"{precision}-{backend}")

    @staticmethod
    def _found(entry: Path, name: str) -> Path | None:
        """The entry's file while it and its companions still hash as its manifest recorded them, else None."""
        from dlopt.core.runs import MANIFEST, Run

        path = entry / name
        if not (entry / MANIFEST).is_file() or not path.is_file():
            return None
        run = Run(entry)
        return path if all(run.artifact_status(p).trusted for p in shipped_with(path)) else None

    def _entry(self, key: str, config: dict[str, Any], name: str, build: Callable[[Path, Path], Path]) -> Path:
        """The file `name` of the entry `key`, built by `build(its_path, scratch_folder)` unless it is there."""
        from dlopt.core.runs import Run, file_entry

        entry, failed = self.root / key, self.root / f"{key}.{FAILED}"
        with key_lock(self.root, key):
            if failed.is_file():
                raise CandidateFailed(json.loads(failed.read_text())["reason"])
            if (found := self._found(entry, name)) is not None:
                return found
            shutil.rmtree(entry, ignore_errors=True)  # changed since it was built: built again
            work = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-", dir=self.root))
            try:
                self.builds[config["pass"]] += 1
                run = Run.create(work, CACHE, {"source": str(self.source), "parent_sha256": self._base.sha,
                                               "pass": config}, run_id=key)
                path = self._run(lambda: build(run.path / name, work), config, failed)
                run.record_stage(config["pass"], status="done", config=config,
                                 outputs=[file_entry(p, run.path) for p in shipped_with(path)])
                os.replace(run.path, entry)  # whole, or not at all
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return entry / name

    @staticmethod
    def _run(build: Callable[[], Path], config: dict[str, Any], failed: Path) -> Path:
        try:
            return build()
        except CandidateFailed as exc:
            write_json_atomic(failed, {"reason": str(exc), "config": config})
            raise
        except DloptError as exc:  # the builder refused this file (unsupported, not convertible): remembered
            reason = f"{config['pass']} failed: {' '.join(str(exc).split())[:300]}"
            write_json_atomic(failed, {"reason": reason, "config": config})
            raise CandidateFailed(reason) from exc
        except (KeyboardInterrupt, MemoryError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - a library's error: the trial fails, a later one tries again
            raise CandidateFailed(f"{config['pass']} failed: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:300]}") from exc

    def _build(self, precision: Precision, runtime: Runtime, dest: Path, work: Path) -> Path:
        if precision == Precision.FP32 and runtime == Runtime.ONNXRUNTIME:
            return _copy(self.source, dest)
        if precision == Precision.FP32:
            from dlopt.runtime.openvino import convert_onnx

            self.say(f"converting to {runtime}")
            return convert_onnx(self.source, dest)
        from dlopt.quantize.onnx_file import build_onnx_int8
        from dlopt.runtime.formats import format_of

        self.say(f"building {precision} for {runtime}")
        built = build_onnx_int8(self.source, work, self._quantize_config(precision, runtime), self.calib)
        (label, b), = built.items()
        if isinstance(b, str):
            raise CandidateFailed(b if b.startswith(label) else f"{label}: {b}")
        format_of(b.path).copy(b.path, dest)  # an IR's weights travel with it
        return dest


def _copy(source: Path, dest: Path) -> Path:
    """The fp32 file re-saved inside the run with its weights (external data beside it only when large)."""
    import onnx

    model = onnx.load(str(source))  # external data read from inside its folder (checked before the run was made)
    big = sum(len(t.raw_data) for t in model.graph.initializer) > MAX_INLINE_BYTES
    onnx.save_model(model, str(dest), save_as_external_data=big, location=f"{dest.name}.data" if big else None)
    return dest
