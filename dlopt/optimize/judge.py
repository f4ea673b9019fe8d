"""How much a candidate lost: the spec's metric on the run's test split, run through the candidate's own runtime
(the training family's loop, as `dlopt quantize` and the pipeline's evaluate judge), or, where there is no metric
for this model, its agreement with the fp32 model on held-out inputs (rows of --inputs no calibration saw, the test
split's inputs, or random valid inputs), as points: 100 x (1 - top-1 agreement), or 100 x relative error.

Verdicts are kept by the file's sha256 in <run>/optimize/judged/ (written atomically): a file is judged once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlopt.core.fileio import sha256_file, write_json_atomic
from dlopt.optimize.cache import FOLDER, Artifact

HELD_SAMPLES = 512  # held-out inputs for agreement when there is no metric
JUDGED = "judged"


@dataclass(frozen=True)
class Verdict:
    metric: float | None  # the spec's metric on the test split (None without one)
    drop: float  # points lost against fp32 eager (metric points, or disagreement / relative error x 100)
    agreement: float | None  # top-1 agreement with fp32 on the held-out inputs (classifier-shaped outputs)
    relative_error: float | None
    basis: str  # what the drop was judged on

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Judge:
    """Binds the run's model, spec and data once; `verdict(artifact)` scores a candidate file."""

    def __init__(self, target: Any, inputs: Path | None, limit: int | None, seed: int = 0) -> None:
        from dlopt.models.registry import entry_module
        from dlopt.quantize.judge import Judge as Scorer

        self.spec, self.folder = target.spec, target.run.path / FOLDER / JUDGED
        module = entry_module(target.model, target.spec).eval()
        evaluator, held, basis, why = _data(target, module, inputs, limit, seed)
        self.scorer = Scorer(evaluator, target.spec, target.model, module, [], held, basis=basis)
        if why:
            self.scorer.metric_broken = why
        self.before = self.scorer.metric(None, "test")
        self.identity = {"metric": self.scorer.uses_metric, "basis": basis, "limit": limit, "seed": seed,
                         "inputs": sha256_file(inputs) if inputs else None, "metric_name": self.spec.metric}

    @property
    def uses_metric(self) -> bool:
        return self.scorer.uses_metric and self.before is not None

    @property
    def basis(self) -> str:
        if self.uses_metric:
            return f"{self.spec.metric} on the run's test split, through each file's runtime"
        why = f" ({self.scorer.metric_broken})" if self.scorer.metric_broken else ""
        return f"agreement with fp32 on {self.scorer.basis or 'held-out inputs'}{why}"

    def _path(self, artifact: Artifact) -> tuple[Path, str]:
        text = json.dumps({"file": artifact.sha256(), **self.identity}, sort_keys=True)
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json", text

    def verdict(self, artifact: Artifact) -> Verdict:
        path, _ = self._path(artifact)
        if path.is_file():
            try:
                return Verdict(**json.loads(path.read_text())["verdict"])
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: judged again and rewritten
        v = self._judge(artifact)
        write_json_atomic(path, {"verdict": v.to_json(), "artifact": str(artifact.path), **self.identity})
        return v

    def _judge(self, artifact: Artifact) -> Verdict:
        import torch

        runner = artifact_runner(artifact)
        with torch.inference_mode():
            parity = self.scorer.parity(runner, self.scorer.held) if self.scorer.held else {}
            after = self.scorer.metric(runner, "test") if self.uses_metric else None
        agreement, error = parity.get("top1_agreement"), parity.get("relative_error")
        if self.uses_metric and after is not None:
            drop = float(self.scorer.drop(self.before, after))
        else:
            drop = round(100.0 * (1.0 - agreement if agreement is not None else float(error or 0.0)), 4)
        return Verdict(after, drop, agreement, error, self.basis)


def artifact_runner(artifact: Artifact) -> Any:
    """callable(*tensors) -> tuple of tensors for the candidate file (a record runs as the eager module)."""
    if artifact.path.suffix == ".json":
        from dlopt.models.checkpoint import load_checkpoint
        from dlopt.models.outputs import flatten
        from dlopt.models.registry import entry_module

        ck = load_checkpoint(artifact.path)
        module = entry_module(ck.model, ck.spec).eval()
        return lambda *x: flatten(module(*x))
    from dlopt.runtime.loader import load_artifact

    return load_artifact(artifact.path)


def _data(target: Any, module: Any, inputs: Path | None, limit: int | None,
          seed: int) -> tuple[Any, Any, str, str | None]:
    """(evaluator or None, held-out inputs, what they are, why there is no metric) for this run's model."""
    from dlopt.quantize.calibrate import file_split, random_inputs, split_inputs
    from dlopt.quantize.session import HELD_SAMPLES as QUANTIZE_HELD
    from dlopt.quantize.session import PROBE_SAMPLES, _fits, head_mismatch, random_samples
    from dlopt.tasks.evaluator import evaluator_for

    spec, mcfg = target.spec, target.config
    evaluator = evaluator_for(target.run, spec, mcfg, limit=limit)
    few = _fits(module, split_inputs(evaluator, spec, "val", 2, seed))
    why = None
    if evaluator is not None and few is None and spec.entry is None:
        evaluator, why = None, f"the {spec.dataset} data does not fit this model's inputs"
    why = why or head_mismatch(module, spec, evaluator, few)
    if inputs is not None and (why or evaluator is None):
        # the rows dlopt quantize holds out from calibration, so no candidate is judged on what it was fitted to
        split = file_split(inputs, spec, mcfg, 256, (PROBE_SAMPLES, QUANTIZE_HELD), target.run.path)
        return evaluator, split.held, split.basis, why
    held = split_inputs(evaluator, spec, "test", HELD_SAMPLES, seed) if evaluator is not None else None
    if held:
        return evaluator, held, "the test split's inputs", why
    from dlopt.models.registry import make_inputs

    n = random_samples(HELD_SAMPLES, make_inputs(spec, mcfg, 1, seed=seed))
    return evaluator, random_inputs(spec, mcfg, n, seed + 2), "random valid inputs", why
