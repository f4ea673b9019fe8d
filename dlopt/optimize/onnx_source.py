"""`dlopt optimize model.onnx`: the study of dlopt.optimize.stage over an ONNX file made elsewhere.

There is no PyTorch model, so nothing is pruned and nothing runs eagerly: the space is runtime (ONNX Runtime,
OpenVINO when installed) x precision (fp32, fp16 on ONNX Runtime, static int8 on either, built by the ONNX-file
builders of `dlopt quantize model.onnx`) x threads (dlopt.optimize.space.file_space). A candidate is judged by its
agreement with the fp32 file on ONNX Runtime, on the held-out rows of --inputs (rows calibration never saw) or on
random valid inputs from the graph; it is timed beside the fp32 file on ONNX Runtime (the baseline --target-speedup is
measured against) and on its own runtime. The pick is verified against the fp32 file (`dlopt verify FILE --reference
model.onnx`). The run is a new <root>/onnx-<stem>/<id>/, as `dlopt quantize model.onnx` makes, after the file has
passed the hostile-file checks (dlopt.verify.reference.check_onnx_file): nothing is created before they pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UsageError
from dlopt.optimize.config import OptimizeConfig, Precision, Runtime
from dlopt.optimize.judge import Judge, Verdict
from dlopt.optimize.search import Context, Events
from dlopt.optimize.stage import OptimizeOutcome

NO_EAGER = "an ONNX file: no PyTorch model"
FILE_ARCH = "onnx:"  # a file's spec name: onnx:<path> (dlopt.verify.reference.file_spec)


@dataclass(frozen=True)
class FileTarget:
    """What the study reads of its target: the run it records in, and the file's spec (inputs, task)."""

    run: Any  # dlopt.core.runs.Run
    spec: Any  # dlopt.models.spec.ArchSpec of the file's graph
    source: Path  # the fp32 file


@dataclass(frozen=True)
class Prepared:
    """The file, its inputs and the study's options, all checked before a run directory is made."""

    cfg: OptimizeConfig
    path: Path
    spec: Any
    calib: list[tuple[Any, ...]]  # calibration batches
    held: list[tuple[Any, ...]]  # held-out batches (never calibrated on)
    basis: str  # what the held-out rows are
    calib_id: str  # the inputs file's sha256 (or the seed of random inputs): part of every int8 build's key
    example: tuple[Any, ...]  # timing inputs at the goal's batch


def file_config(cfg: OptimizeConfig) -> OptimizeConfig:
    """The options of a study of an ONNX file: no prune ratio; the PyTorch-only options refused."""
    given = [f for f, v in (("--finetune-epochs", cfg.finetune_epochs), ("--limit", cfg.data_limit)) if v is not None]
    if given:
        raise UsageError(f"{' and '.join(given)}: an ONNX file has no PyTorch model to fine-tune nor data set to "
                         "limit; drop it (give your inputs with --inputs FILE.npz)")
    return dataclasses.replace(cfg, prune_ratios=(0.0,))


def prepare(path: Path, cfg: OptimizeConfig) -> Prepared:
    """Every check that can refuse the file, its inputs or the options, before anything is created."""
    from dlopt.optimize.space import file_space
    from dlopt.quantize.onnx_file import onnx_example_inputs, split_inputs
    from dlopt.verify.reference import check_onnx_file, file_spec, fixed_batch

    cfg, path = file_config(cfg), Path(path).resolve()
    spec, mcfg = file_spec(path, model=check_onnx_file(path))  # size, external data inside its folder, no custom ops
    file_space(cfg)
    fixed = fixed_batch(spec)
    if fixed is not None and fixed != cfg.goal.batch_size:
        raise UsageError(f"{path.name} fixes its batch at {fixed}: give --batch-size {fixed}")
    inputs = Path(cfg.inputs) if cfg.inputs else None
    calib, held, basis, used = split_inputs(spec, mcfg, inputs, 256, cfg.seed)
    calib_id = used["sha256"] if used else f"random inputs, seed {cfg.seed}"
    example = onnx_example_inputs(path, batch=cfg.goal.batch_size, seed=cfg.seed)
    return Prepared(cfg, path, spec, calib, held, basis, calib_id, example)


class FileJudge(Judge):
    """Agreement with the fp32 file on ONNX Runtime, as points; kept by each file's sha256 like every verdict."""

    def __init__(self, run_path: Path, prep: Prepared, seed: int) -> None:
        from dlopt.core.fileio import sha256_file
        from dlopt.optimize.cache import FOLDER
        from dlopt.optimize.judge import JUDGED

        self.spec, self.folder, self.prep, self.before = prep.spec, Path(run_path) / FOLDER / JUDGED, prep, None
        self._reference: list[tuple[Any, ...]] | None = None
        self.identity = {"metric": False, "basis": prep.basis, "seed": seed, "inputs": prep.calib_id,
                         "reference": sha256_file(prep.path), "metric_name": "none"}

    @property
    def uses_metric(self) -> bool:
        return False

    @property
    def basis(self) -> str:
        return f"agreement with the fp32 file on ONNX Runtime, on {self.prep.basis}"

    def _judge(self, artifact: Any) -> Verdict:
        import torch

        from dlopt.optimize.judge import artifact_runner
        from dlopt.quantize.config import QuantizeConfig
        from dlopt.quantize.onnx_file import judge
        from dlopt.quantize.ort_quant import runner_for

        with torch.inference_mode():
            if self._reference is None:  # the fp32 file's outputs, computed once for every candidate
                fp32 = runner_for(self.prep.path, threads=None)
                self._reference = [tuple(fp32(*batch)) for batch in self.prep.held]
            outputs = iter(self._reference)  # in the order judge() walks the held-out batches
            v = judge(lambda *_batch: next(outputs), artifact_runner(artifact), self.prep.held, QuantizeConfig())
        return Verdict(None, float(v["drop"]), v["top1_agreement"], v["relative_error"], self.basis)


def _verifier(source: Path, inputs: Path | None) -> Any:
    """The pick against the fp32 file, as `dlopt verify FILE --reference model.onnx` compares them."""

    def verify(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
        from dlopt.optimize.stage import verification
        from dlopt.verify.core import VerifyConfig
        from dlopt.verify.criteria import task_criterion
        from dlopt.verify.reference import verify_reference

        quantized = row["candidate"]["precision"] != Precision.FP32
        config = VerifyConfig(criterion=task_criterion(str(ctx.target.spec.task))) if quantized else VerifyConfig()
        ctx.events.step(f"verifying {row['label']} against {source.name}")
        reports, _, written = verify_reference(ctx.target.run.path / row["artifact"], source, config, inputs)
        return verification(ctx, reports, all(r.passed for r in reports.values()), written, quantized)

    return verify


def _context(prep: Prepared, run: Any, events: Events) -> Context:
    from dlopt.optimize.onnx_cache import FileCache
    from dlopt.optimize.space import file_space
    from dlopt.optimize.stage import short_fingerprint
    from dlopt.optimize.timing import Timer

    cfg = prep.cfg
    cache, space = FileCache(run.path, prep.path, cfg, prep.calib, prep.calib_id, events.step), file_space(cfg)
    as_is = f"{Precision.FP32}@{Runtime.ONNXRUNTIME}"  # the file itself: the pick is never slower than it
    first = ({"prune": 0.0, "format": as_is, "threads": max(space.threads)},) if as_is in space.formats else ()
    notes = (f"vs fp32 eager: n/a ({NO_EAGER})",
             f"--target-speedup and the speed-ups against the baseline are measured against the fp32 file on "
             f"{Runtime.ONNXRUNTIME} (same batch and threads); each candidate is also timed against the fp32 file "
             "on its own runtime")
    return Context(FileTarget(run, prep.spec, prep.path), cfg, space, cache,
                   FileJudge(run.path, prep, cfg.seed), Timer(None, prep.example), cache.base(), short_fingerprint(),
                   events, baseline=Runtime.ONNXRUNTIME, verify=_verifier(prep.path, Path(cfg.inputs) if cfg.inputs
                                                                          else None),
                   notes=notes, no_eager=NO_EAGER, first=first)


def optimize_onnx_file(prep: Prepared, root: Path, events: Events | None = None,
                       run_dir: Path | None = None) -> OptimizeOutcome:
    """The study of the ONNX file `prepare` checked, in a new run <root>/onnx-<stem>/<id>/ (or in `run_dir`,
    resumed); the caller checks `reached`.

        prep = prepare(Path("model.onnx"), OptimizeConfig(trials=20))   # refuses a bad file before any run exists
        outcome = optimize_onnx_file(prep, Path("artifacts"))
    """
    from dlopt.core.runs import Run
    from dlopt.optimize.stage import optimize_in
    from dlopt.quantize.onnx_stage import file_run

    run = Run.open(run_dir) if run_dir is not None else file_run(prep.path, prep.spec, root)
    return optimize_in(run.path, prep.cfg, lambda ev: _context(prep, run, ev), events)


def resumed_source(run_dir: Path) -> Path | None:
    """The ONNX file a run made by `dlopt optimize model.onnx` studies (unchanged since), or None for other runs."""
    from dlopt.core.fileio import sha256_file
    from dlopt.core.runs import Run

    model = Run.open(run_dir).manifest().get("model") or {}
    if not str(model.get("arch", "")).startswith(FILE_ARCH):
        return None
    source = Path(str(model.get("source")))
    if not source.is_file():
        raise InputFileError(f"{run_dir} studies {source}, which is gone; put the file back to resume")
    if sha256_file(source) != model.get("sha256"):
        raise InputFileError(f"{source} changed since the study in {run_dir} started; start a new one with "
                             f"dlopt optimize {source}")
    return source
