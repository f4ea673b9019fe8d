"""The metric of every variant in a run, under every runtime it was exported to, on the held-out test split.

Each checkpoint record in the run (fp32 `model.json`, `pruned/model.json`, ...) is evaluated eagerly and every
exported file (.onnx, .ts, .pt2, OpenVINO's .xml) through its own runtime, with the training family's metric
code, so the numbers in the report are what a user of that file would get, not what the eager model promised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError
from dlopt.core.runs import MANIFEST, Run
from dlopt.models.spec import ArchSpec
from dlopt.runtime.formats import ARTIFACT_SUFFIXES, format_of


def variant_of(run: Run, path: Path) -> str:
    """'fp32' for files at the top of the run, else the sub-directory (pruned, int8, pruned-int8, ...)."""
    rel = Path(path).relative_to(run.path)
    return rel.parts[0] if len(rel.parts) > 1 else "fp32"


def checkpoint_records(run: Run) -> list[Path]:
    """The run's model and every checkpoint record (with its weights) that a done stage vouches for."""
    from dlopt.models.checkpoint import RECORD_FORMAT

    trusted, _ = run.scan_artifacts((".json", ".safetensors"))
    out = []
    for record in sorted(p for p in run.path.rglob("*.json") if p.parent == run.path or p in trusted):
        if record.name == MANIFEST or not record.with_suffix(".safetensors").is_file():
            continue
        if record.parent != run.path and record.with_suffix(".safetensors") not in trusted:
            continue
        try:
            meta = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(meta, dict) and meta.get("format") == RECORD_FORMAT:
            out.append(record)
    return out


def artifacts(run: Run) -> list[Path]:
    """Exported files a done stage vouches for (dlopt.core.trust); see skipped_artifacts for the others."""
    return run.scan_artifacts(ARTIFACT_SUFFIXES)[0]


def skipped_artifacts(run: Run) -> list[dict[str, str]]:
    return [{"path": s.rel, "reason": s.reason or ""} for s in run.scan_artifacts(ARTIFACT_SUFFIXES)[1]]


def _row(run: Run, path: Path, runtime: str, metrics: dict[str, float] | None, error: str | None = None) -> dict[str, Any]:
    return {"variant": variant_of(run, path), "runtime": runtime, "path": str(path.relative_to(run.path)),
            "metrics": metrics, "error": error}


def size_of(ck: Any) -> dict[str, int]:
    """Parameters and MACs (batch 1) of the deployed network of a loaded checkpoint."""
    from dlopt.models.registry import entry_module, make_inputs
    from dlopt.models.summary import count_flops

    net = entry_module(ck.model, ck.spec)
    return {"parameters": sum(p.numel() for p in net.parameters()),
            "macs": count_flops(net, make_inputs(ck.spec, ck.config, 1)) // 2}


def _training_metric(run: Run, spec: ArchSpec) -> dict[str, float] | None:
    stage = run.manifest().get("stages", {}).get("train", {})
    value = stage.get("metrics", {}).get(f"test_{spec.metric}")
    return {spec.metric: value} if value is not None else None


def _no_data_note(spec: ArchSpec, trained: bool) -> str:
    """What the evaluation of a model without a held-out dataset rests on."""
    if trained:
        return (f"{spec.name} has no held-out dataset; the fp32 metric is the training stage's own evaluation, and "
                "the other variants are not evaluated")
    return (f"{spec.name} has no dataset and was not trained in this run, so no metric was measured for any variant "
            "(the report judges them by agreement with fp32)")


def evaluate_variants(run: Run, spec: ArchSpec, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    from dlopt.models.checkpoint import load_checkpoint
    from dlopt.tasks.evaluator import evaluate_artifact, evaluator_for

    base = load_checkpoint(run.path / "model.json")
    ev = evaluator_for(run, base.spec, base.config)
    out: dict[str, Any] = {"metric": spec.metric, "split": "test", "rows": [], "sizes": {"fp32": size_of(base)},
                           "skipped": skipped_artifacts(run),
                           "data": ev.data_options if ev else None,
                           "higher_is_better": ev.higher_is_better if ev else True}
    if ev is None:  # no dataset: a training stage's own evaluation (DQN's episodes) where there was one, else none
        trained = _training_metric(run, spec)
        out["note"] = _no_data_note(spec, trained is not None)
        out["rows"].append(_row(run, run.path / "model.json", "eager", trained))
        return out
    for record in checkpoint_records(run):
        progress(f"evaluating {record.relative_to(run.path)}")
        try:
            ck = load_checkpoint(record)
            out["sizes"][variant_of(run, record)] = size_of(ck)
            out["rows"].append(_row(run, record, "eager", ev.evaluate(ck.model)))
        except DloptError as exc:
            out["rows"].append(_row(run, record, "eager", None, str(exc)))
    if spec.entry is not None:  # the files hold only the entry network; the family's metric needs the whole model
        out["note"] = f"exported files hold {spec.name}'s {spec.entry} only: their metric is not measured"
        return out
    for path in artifacts(run):
        progress(f"evaluating {path.relative_to(run.path)}")
        runtime = format_of(path).runtime
        try:
            out["rows"].append(_row(run, path, runtime, evaluate_artifact(path, ev)))
        except (DloptError, RuntimeError, ValueError) as exc:  # a file that cannot run the data is a row that says so
            out["rows"].append(_row(run, path, runtime, None, str(exc).splitlines()[0][:200]))
    return out
