"""Every model and file a study builds, kept once under a key: hash(parent's sha256 + the pass's config).

An entry is a small run of its own, `<run>/optimize/cache/<key>/`: its manifest, the parent model it starts from
(`model.json` + hard-linked weights) and the data options of the run's training, so the stage functions run on it
unchanged (run_prune, run_quantize, run_export) and write through their staging: a killed build leaves only a
`running` stage of a dead process and a staging folder the next build removes, never a file under its final name.
A file is used only when the entry's stage is done and its sha256 still matches (dlopt.core.trust). A lock per key
makes two workers wait for one build instead of making it twice; failures that would repeat (an exporter that
cannot convert this graph, a stage that refuses the candidate) are remembered, so no trial pays for them again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError
from dlopt.core.fileio import sha256_file, write_json_atomic
from dlopt.core.runs import MANIFEST, Run
from dlopt.optimize.config import OptimizeConfig, Precision, Runtime


def shipped_with(path: Path) -> list[Path]:
    """A built file and what ships with it: an artifact's companions (an IR's weights, ONNX external data) from its
    format record, or a checkpoint record's tensors."""
    from dlopt.runtime.formats import find_format

    fmt = find_format(path)
    if fmt is not None:  # the sidecars it cannot load without are listed even when missing: a half-built file fails
        required = fmt.sidecar_paths(path)[:fmt.required_sidecars]
        return [path, *required, *[p for p in fmt.companions(path) if p not in required]]
    return [path, *([path.with_suffix(".safetensors")] if path.suffix == ".json" else [])]

FOLDER = "optimize"  # <run>/optimize/: the study database and the cache
CACHE = "cache"
FAILED = "failed.json"  # in an entry: a build that failed for a reason that would repeat
QUANTIZE_REPORT = "quantize_report.json"  # beside a quantized file: what its quantize stage said of it


class CandidateFailed(DloptError):
    """A candidate could not be built or run here; the trial fails with this reason and the study goes on."""

    exit_code = 1


@dataclass(frozen=True)
class Model:
    """A checkpoint record to build from, and its identity (sha256 of the record, which holds the weights')."""

    record: Path
    sha: str

    @classmethod
    def of(cls, record: Path) -> Model:
        return cls(Path(record), sha256_file(record))


@dataclass(frozen=True)
class Artifact:
    path: Path  # the file to run: model.onnx, model.xml, model.ts, model.pt2, or a record (eager)
    key: str  # the cache key (the parent model's for eager)
    model: Model  # the model it was made from (for verification)
    precision: Precision
    runtime: Runtime

    @property
    def files(self) -> list[Path]:
        """The file and what ships with it (an IR's weights, a record's tensors)."""
        return shipped_with(self.path)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files if p.is_file())

    def sha256(self) -> str:
        return hashlib.sha256("".join(sha256_file(p) for p in self.files).encode()).hexdigest()


def cache_key(parent_sha: str, config: dict[str, Any]) -> str:
    text = json.dumps({"parent": parent_sha, "pass": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@contextlib.contextmanager
def key_lock(root: Path, key: str) -> Iterator[None]:
    """One builder per key across processes (released by the kernel when a holder dies, even by SIGKILL)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _link(src: Path, dest: Path) -> None:
    """dest becomes src's content: a hard link where possible (no copy of the weights), else a copy; atomic."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


class Cache:
    """Builds through the stage functions, once per key; `builds` counts what this process built."""

    def __init__(self, run: Run, cfg: OptimizeConfig, progress: Callable[[str], None] | None = None) -> None:
        self.run, self.cfg = run, cfg
        self.root = run.path / FOLDER / CACHE
        self.say = progress or (lambda _m: None)
        self.builds: Counter[str] = Counter()
        train = run.manifest().get("stages", {}).get("train")
        # the data the run's model was trained on: the stages find it in a done train record of their run
        self.train = ({"status": "done", "config": {k: train["config"][k] for k in ("train", "hparams")
                                                    if k in train.get("config", {})}, "inherited_from": "parent run"}
                      if isinstance(train, dict) and train.get("status") == "done" else None)

    def sweep(self) -> list[Path]:
        """Remove the staging folders that killed builds left in every entry (dead owners only)."""
        from dlopt.core.staging import STAGING, clean_dead

        return [p for entry in sorted(self.root.glob("*")) if entry.is_dir() for p in clean_dead(entry / STAGING)]

    def base(self) -> Model:
        """The run's own model (what `dlopt prune/quantize RUN` would start from)."""
        from dlopt.contract.target import MODEL_RECORD
        from dlopt.core.fileio import within

        checkpoint = self.run.manifest().get("model", {}).get("checkpoint", MODEL_RECORD)
        return Model.of(within(self.run.path, checkpoint, "the run's checkpoint"))

    def _open(self, key: str, parent: Model, what: str) -> Run:
        """The entry for `key` (made if missing or left incomplete by a killed process); caller holds the lock."""
        path = self.root / key
        if path.is_dir() and not ((path / MANIFEST).is_file() and (path / "model.json").is_file()):
            shutil.rmtree(path)  # killed between mkdir and its model: nothing in it was ever used
        if not path.is_dir():
            arch = self.run.manifest().get("arch", "model")
            model = {"arch": arch, "checkpoint": "model.json", "source": f"dlopt optimize: {what}",
                     "parent_sha256": parent.sha}
            entry = Run.create(self.run.path / FOLDER, CACHE, model, run_id=key,
                               stages={"train": self.train} if self.train else None)
            _link(parent.record.with_suffix(".safetensors"), entry.path / "model.safetensors")
            _link(parent.record, entry.path / "model.json")
        return Run.open(path)

    def entry(self, parent: Model, config: dict[str, Any], stage: str, output: str,
              build: Callable[[Any], None]) -> tuple[str, Path]:
        """The file `output` (relative to the entry) that `build(target)` makes with stage `stage`; built once."""
        key = cache_key(parent.sha, config)
        path = self.root / key
        with key_lock(self.root, key):
            failed = path / FAILED
            if failed.is_file():
                raise CandidateFailed(json.loads(failed.read_text())["reason"])
            if (path / MANIFEST).is_file() and (path / output).is_file() and \
                    Run(path).artifact_status(path / output).trusted:
                return key, path / output
            entry = self._open(key, parent, config["pass"])
            from dlopt.contract.target import Target

            self.builds[config["pass"]] += 1
            try:
                build(Target.of_run(entry))
            except CandidateFailed as exc:
                write_json_atomic(failed, {"reason": str(exc), "config": config})
                raise
            except DloptError as exc:  # the stage refused this candidate (unsupported, no int8 layer): remembered
                reason = f"{config['pass']} failed: {' '.join(str(exc).split())[:300]}"
                write_json_atomic(failed, {"reason": reason, "config": config})
                raise CandidateFailed(reason) from exc
            except (KeyboardInterrupt, MemoryError, OSError):
                raise
            except Exception as exc:  # a library's or dlopt's own error: the trial fails, a later one tries again
                reason = f"{config['pass']} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                raise CandidateFailed(reason) from exc
            if not (path / output).is_file() or not entry.artifact_status(path / output).trusted:
                reason = f"{config['pass']} made no {output}"
                write_json_atomic(failed, {"reason": reason, "config": config})
                raise CandidateFailed(reason)
        return key, path / output

    def prune(self, parent: Model, ratio: float, blocks: int = 0) -> Model:
        """The model pruned to `ratio` with `blocks` residual blocks removed (the parent itself for neither)."""
        if not ratio and not blocks:
            return parent
        from dlopt.prune.config import PruneConfig

        runtimes = self.cfg.runtimes or tuple(Runtime)
        cfg = PruneConfig(ratio=ratio, drop_blocks=blocks, finetune_epochs=self.cfg.finetune_epochs, seed=self.cfg.seed,
                          data_limit=self.cfg.data_limit, target_batch=self.cfg.goal.batch_size,
                          target_runtime="onnxruntime" if Runtime.ONNXRUNTIME in runtimes else "eager")

        def build(target: Any) -> None:
            from dlopt.prune import stage

            from dlopt.optimize.space import pruned_label

            self.say(f"{pruned_label(ratio, blocks)} and fine-tuning")
            stage.run_prune(target, cfg)

        _, record = self.entry(parent, {"pass": "prune", "prune": cfg.to_json()}, "pruned", "pruned/model.json",
                               build)
        return Model.of(record)

    def artifact(self, model: Model, precision: Precision, runtime: Runtime) -> Artifact:
        """The file for (precision, runtime) made from `model`; fp32 eager is the model's own record."""
        if (precision, runtime) == (Precision.FP32, Runtime.EAGER):
            return Artifact(model.record, model.sha[:24], model, precision, runtime)
        if precision == Precision.FP32:
            key, path = self._export(model, runtime)
        elif precision == Precision.INT8_BF16:
            key, path = self._bf16_floats(model, runtime)
        else:
            key, path = self._quantize(model, precision, runtime)
        return Artifact(path, key, model, precision, runtime)

    def _export(self, model: Model, runtime: Runtime) -> tuple[str, Path]:
        from dlopt.export import ExportConfig
        from dlopt.models.spec import ExportFormat

        fmt = {Runtime.ONNXRUNTIME: ExportFormat.ONNX, Runtime.OPENVINO: ExportFormat.OPENVINO,
               Runtime.TORCHSCRIPT: ExportFormat.TORCHSCRIPT}[runtime]
        cfg = ExportConfig(formats=(fmt,), strict_formats=True)
        out = {ExportFormat.ONNX: "model.onnx", ExportFormat.OPENVINO: "model.xml",
               ExportFormat.TORCHSCRIPT: "model.ts"}[fmt]

        def build(target: Any) -> None:
            from dlopt.export import stage

            self.say(f"exporting {fmt}")
            outcome = stage.run_export(target, cfg)
            if outcome.result.failures:
                raise CandidateFailed(f"export to {fmt} failed: {outcome.result.failures[str(fmt)][:300]}")
            report = outcome.result.verification.get(str(fmt))
            if report is not None and not report.passed:
                raise CandidateFailed(f"the {fmt} export does not match the model (verification failed)")

        return self.entry(model, {"pass": "export", "format": str(fmt), "exporter": cfg.exporter}, "export", out,
                          build)

    def _quantize(self, model: Model, precision: Precision, runtime: Runtime) -> tuple[str, Path]:
        from dlopt.quantize.config import QuantizeConfig

        method = {Precision.INT8: "static", Precision.FP16: "fp16", Precision.BF16: "bf16"}[precision]
        backend = {Runtime.ONNXRUNTIME: "onnxruntime", Runtime.OPENVINO: "openvino", Runtime.EAGER: "torch"}[runtime]
        name = f"{precision}-{backend}"
        cfg = QuantizeConfig(method=method, backend=backend, max_drop=self.cfg.goal.max_drop, seed=self.cfg.seed,
                             timing_budget_s=0.2, search_budget_s=120.0, name=name)
        from dlopt.quantize.recipe import backend as quant_backend
        from dlopt.runtime.formats import file_name

        written = file_name(quant_backend(backend).writes)  # model.onnx, model.xml, model.pt2
        inputs = Path(self.cfg.inputs) if self.cfg.inputs else None
        config = {"pass": "quantize", "quantize": cfg.to_json(), "inputs": sha256_file(inputs) if inputs else None}

        def build(target: Any) -> None:
            from dlopt.quantize import stage
            from dlopt.quantize.calibrate import calibrate_on

            self.say(f"quantizing to {precision} for {runtime}")
            with calibrate_on(inputs):
                stage.run_quantize(target, cfg)  # a file that fails verification is kept: the trial says so

        return self.entry(model, config, name, f"{name}/{written}", build)


    def _bf16_floats(self, model: Model, runtime: Runtime) -> tuple[str, Path]:
        """The int8 file with its float parts computed in bf16: the IR marked so (dlopt.runtime.openvino.mark_ir),
        its quantize report beside it (the int8 search's verdict; the study judges the marked file itself)."""
        from dlopt.runtime.formats import format_of
        from dlopt.runtime.openvino import mark_ir

        int8 = self.artifact(model, Precision.INT8, runtime)
        name = f"int8-bf16-{runtime}"
        config = {"pass": "mark", "precision": "bf16", "file": int8.sha256()}

        def build(target: Any) -> None:
            self.say(f"marking the int8 file's float parts bf16 for {runtime}")
            with target.run.stage(name, config, inputs=[int8.path], owns=(name,)) as rec:
                out = mark_ir(int8.path, rec.path(name, int8.path.name), "bf16")
                report = rec.path(name, QUANTIZE_REPORT)
                shutil.copyfile(int8.path.parent / QUANTIZE_REPORT, report)
                rec.outputs += [out, *format_of(out).companions(out), report]

        return self.entry(model, config, name, f"{name}/{int8.path.name}", build)


def quantize_verdict(artifact: Artifact) -> dict[str, Any] | None:
    """What the quantize stage said of its file (verified, drop, agreement), or None for an fp32 file."""
    report = artifact.path.parent / QUANTIZE_REPORT
    if artifact.precision == Precision.FP32 or not report.is_file():
        return None
    from dlopt.core.results import QuantizeReport, read_result

    q = read_result(QuantizeReport, report)
    return {"verified": bool(q.verified), "method": q.method, "backend": q.backend, "kept_float": len(q.kept_float),
            "layers_int8": q.layers_int8, "accuracy_basis": q.accuracy_basis}
