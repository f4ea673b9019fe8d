"""The spec's metric for any model or artifact, on the data a run was trained on.

Pruning, quantization and the pipeline all need "what is the test accuracy now?" for a modified model or
an exported file. The answer must use the same data split and the same metric code as training, so this
module binds the training family (`dlopt.train.family`) to the run's data and evaluates through it. An
artifact (an ONNX file, say) is wrapped as a module (`RunnerModule`) so the family's loop runs it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.runs import Run
from dlopt.spec import ArchSpec


@dataclass
class Evaluator:
    """A training family bound to a dataset: `evaluate(model, split)` gives the spec's metrics."""

    family: Any  # dlopt.train.family.Family
    spec: ArchSpec
    data_options: dict[str, Any]  # how the data was loaded (name, path, seed), for reports

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def higher_is_better(self) -> bool:
        return self.family.mode != "min"

    @property
    def data(self) -> Any:
        return self.family.data

    def evaluate(self, model: Any, split: str = "test") -> dict[str, float]:
        """All of the family's metrics for `model` (a module, or a RunnerModule) on `split`."""
        return self.family.evaluate(model, split)

    def score(self, model: Any, split: str = "test") -> float:
        return float(self.evaluate(model, split)[self.metric])


def _train_options(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    train = run.manifest().get("stages", {}).get("train", {})
    if train.get("status") != "done":
        return None
    return dict(train.get("config", {}).get("train", {}))


def evaluator_for(run: Run | None, spec: ArchSpec, cfg: Any, *, default_data: bool = True,
                  limit: int | None = None) -> Evaluator | None:
    """An evaluator on the run's training data; with no finished train stage, the spec's own dataset when
    `default_data` (else None). None too when the family trains without a dataset (DQN) or spec has no trainer."""
    from dlopt.train.config import resolve_hparams
    from dlopt.train.family import get_family
    from dlopt.train.runtime import Runtime

    if not spec.trainer:
        return None
    family_cls = get_family(spec)
    if not family_cls.uses_data:
        return None
    options = _train_options(run)
    if options is None and not default_data:
        return None
    options = options or {}
    from dlopt.data import load_data

    data = load_data(spec, cfg, options.get("data"), path=options.get("data_path"), seed=options.get("seed", 0),
                     limit=limit if limit is not None else options.get("limit"), value_range=family_cls.value_range)
    hp = resolve_hparams(family_cls.defaults, spec.train_defaults, {})
    family = family_cls(spec, cfg, data, hp, Runtime.create(hp.clip_norm, False), int(options.get("seed", 0)))
    used = {k: options.get(k) for k in ("data", "data_path", "seed") if options.get(k) is not None}
    return Evaluator(family, spec, {**used, "source": "run" if options else "spec default"})


def runner_module(runner: Any) -> Any:
    """Wrap a callable(*tensors) -> tuple (e.g. `dlopt.export.load_artifact`) as an nn.Module returning
    a tensor when there is one output, as the eager model does."""
    import torch

    class RunnerModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.runner = runner

        def forward(self, *inputs: Any) -> Any:
            out = self.runner(*inputs)
            return out[0] if len(out) == 1 else out

    return RunnerModule()


def evaluate_artifact(path: Path, evaluator: Evaluator, split: str = "test", threads: int | None = None) -> dict[str, float]:
    """The metrics of an exported file (ONNX, TorchScript, .pt2) through the same loop as the eager model."""
    from dlopt.export import load_artifact

    return evaluator.evaluate(runner_module(load_artifact(Path(path), threads=threads)), split)
