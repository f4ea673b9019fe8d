"""The run report: `write_report(run)` -> report.md, report.html (self-contained) and report.json.

Built from the files in the run only, so `dlopt report RUN_DIR` regenerates it at any time.
"""

from __future__ import annotations

from pathlib import Path

from dlopt.core.errors import InputFileError
from dlopt.core.fileio import atomic_path, write_json_atomic
from dlopt.core.runs import Run

__all__ = ["write_report"]


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def write_report(run: Run) -> tuple[Path, Path, Path]:
    from dlopt.report.collect import collect
    from dlopt.report.decide import decide
    from dlopt.report.plots import pareto_plot, training_plot
    from dlopt.report.render import html_page, markdown

    from dlopt.report.optimize import pareto_plot as optimize_plot, section  # the `dlopt optimize` study, if any

    data = collect(run)
    data["optimize"] = section(run)
    # a study, a quantize stage's candidates or a per-layer comparison alone is something to report (an ONNX file's)
    if not any(data[k] for k in ("rows", "optimize", "candidates", "layers")):
        unusable = "; ".join(f"{s['path']}: {s['reason']}" for s in data["skipped"]
                             if s["path"] in ("bench.json", "evaluation.json"))
        raise InputFileError(f"{run.path} has nothing to report yet ({unusable or 'no evaluation.json or bench.json'}); "
                             f"run `dlopt pipeline` or `dlopt bench {run.path}` first")
    data["ship"] = decide(data)
    data["run"] = run.path.name  # the run's own name: report files never record where the run lives
    images = {}
    if (p := pareto_plot(data, run.path / "report_pareto.png")) is not None:
        images["pareto"] = p
    if (p := training_plot(data, run.path, run.path / "report_training.png")) is not None:
        images["training"] = p
    if data["optimize"] and (p := optimize_plot(data["optimize"], run.path / "report_optimize.png")) is not None:
        images["optimize"] = p
    from dlopt.report.layer_errors import images as layer_images  # `dlopt diagnose`'s plots, as the run has them

    images.update(layer_images(data["layers"], run.path))
    md = _write_text(run.path / "report.md", markdown(data, images))
    page = _write_text(run.path / "report.html", html_page(data, images))
    js = run.path / "report.json"
    write_json_atomic(js, data)
    return md, page, js
