"""Regressions found by benchmarks/kill_stages.py (SIGKILL / SIGINT of every stage at random moments).

A Ctrl-C that arrived while a finished stage's files were being moved into place (the variant directory
already renamed in) left the stage `interrupted` with its directory present: the files were untrusted, and
`dlopt prune --name X` refused to rerun ("already has a pruned model in X/"). A SIGINT during the move now
lands after it: the stage is done (the command still exits 130).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import dlopt.core.runs as runs
from dlopt.core.runs import Run


pytestmark = pytest.mark.self_signal

@pytest.fixture()
def run(tmp_path: Path) -> Run:
    return Run.create(tmp_path / "artifacts", "mlp", {"arch": "mlp"})


def _ctrl_c_right_after_the_move(monkeypatch) -> None:
    """A real SIGINT to this process the moment the files are in place, before the stage records the end."""
    real = runs.commit

    def commit_then_sigint(*args, **kwargs):
        real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # this thread: os.kill may hand it to a runtime's worker thread

    monkeypatch.setattr(runs, "commit", commit_then_sigint)


@pytest.mark.parametrize("kind", ["fresh", "owns", "top"])
def test_sigint_while_files_move_into_place_leaves_the_stage_done(run: Run, monkeypatch, kind: str) -> None:
    rel = "top.onnx" if kind == "top" else "v/model.json"
    extra = {"fresh": {"fresh": ("v",)}, "owns": {"owns": ("v",)}, "top": {}}[kind]
    _ctrl_c_right_after_the_move(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        with run.stage("v", {}, **extra) as rec:
            out = rec.path(*rel.split("/"))
            out.write_text('{"new": 1}')
            rec.outputs.append(out)
    assert (run.path / rel).read_text() == '{"new": 1}'
    assert run.stage_status("v") == "done"
    assert run.artifact_status(run.path / rel).trusted


def test_a_prune_name_is_free_again_after_sigint_during_its_move(run: Run, monkeypatch) -> None:
    """What the benchmark hit: after that Ctrl-C, the next `prune --name v` must not find an untrusted v/."""
    _ctrl_c_right_after_the_move(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        with run.stage("v", {}, fresh=("v",)) as rec:
            rec.path("v", "model.json").write_text("{}")
            rec.outputs.append(rec.path("v", "model.json"))
    present = (run.path / "v" / "model.json").exists()
    assert not present or run.artifact_status(run.path / "v" / "model.json").trusted


def test_ctrl_c_during_a_c_extension_import_is_an_interrupt_not_a_failure(run: Run) -> None:
    """pybind11 modules (onnxruntime, matplotlib) turn a KeyboardInterrupt during their import into
    `ImportError: initialization failed` raised from it; a SIGINT of `dlopt quantize` gave exit 70, stage failed."""
    with pytest.raises(KeyboardInterrupt):
        with run.stage("v", {}, fresh=("v",)):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as ctrl_c:
                raise ImportError("initialization failed") from ctrl_c
    assert run.stage_status("v") == "interrupted"


def test_a_real_import_error_still_fails_the_stage(run: Run) -> None:
    with pytest.raises(ImportError):
        with run.stage("v", {}, fresh=("v",)):
            raise ImportError("no module named onnxruntime")
    assert run.stage_status("v") == "failed"


@pytest.mark.parametrize(("from_ctrl_c", "code"), [(True, 130), (False, 70)])
def test_ctrl_c_inside_an_import_outside_any_stage(monkeypatch, from_ctrl_c, code):
    """The same pybind11 ImportError raised before any stage started (a command importing onnxruntime while it
    reads its options) is an interrupt at the CLI too (130), while a genuine ImportError stays an internal error."""
    from typer.testing import CliRunner

    import dlopt.models.registry
    from dlopt.cli.app import app

    def failing(name):
        if not from_ctrl_c:
            raise ImportError("libfoo.so: cannot open shared object file")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")  # noqa: B904 - as pybind11 does: context, no cause

    monkeypatch.setattr(dlopt.models.registry, "get_spec", failing)
    result = CliRunner().invoke(app, ["info", "mlp"])
    assert result.exit_code == code, result.output
    assert ("interrupted" if from_ctrl_c else "internal error") in result.output
