"""The spec's metric for any model or artifact, on the data a run was trained on.

The Evaluator (the spec's task bound to the run's data) is dlopt.tasks.evaluator's, named here too. An artifact
(an ONNX file, say) is wrapped as a module (`RunnerModule`) so the task's evaluation runs it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.tasks.evaluator import Evaluator, evaluator_for

__all__ = ["Evaluator", "evaluate_artifact", "evaluator_for", "runner_module"]


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
    from dlopt.export.runtime import load_artifact

    return evaluator.evaluate(runner_module(load_artifact(Path(path), threads=threads)), split)
