"""How every stage finds its model: a name starts a run holding the weights; no name means the latest run."""

from __future__ import annotations

import pytest
import torch

from dlopt.contract.target import TargetOptions, resolve_target
from dlopt.core.errors import InputFileError
from dlopt.models.checkpoint import save_checkpoint
from dlopt.models.registry import build_model, make_inputs


def _same(a, b, spec, cfg) -> bool:
    x = make_inputs(spec, cfg, 2)
    with torch.inference_mode():
        return torch.equal(a(*x), b(*x))


def test_name_starts_a_run_and_latest_run_sees_the_same_weights(out_root) -> None:
    first = resolve_target(TargetOptions(name="mlp", root=out_root, tiny=True))
    assert first.checkpoint == first.run.path / "model.json" and first.checkpoint.is_file()
    again = resolve_target(TargetOptions(root=out_root))
    assert again.run == first.run and _same(first.model, again.model, first.spec, first.config)
    by_dir = resolve_target(TargetOptions(name=str(first.run.path), root=out_root))
    assert by_dir.run == first.run


def test_seed_makes_fresh_builds_reproducible(out_root) -> None:
    a = resolve_target(TargetOptions(name="lenet5", root=out_root, seed=3))
    b = resolve_target(TargetOptions(name="lenet5", root=out_root, seed=3))
    c = resolve_target(TargetOptions(name="lenet5", root=out_root, seed=4))
    assert a.run != b.run
    assert _same(a.model, b.model, a.spec, a.config) and not _same(a.model, c.model, a.spec, a.config)


def test_checkpoint_target_starts_a_run_from_it(tmp_path, out_root) -> None:
    model, spec, cfg = build_model("cnn", tiny=True)
    record = save_checkpoint(model, spec, cfg, tmp_path / "trained")
    t = resolve_target(TargetOptions(name="cnn", checkpoint=record, root=out_root))
    assert _same(model, t.model, spec, cfg)
    assert t.run.manifest()["model"]["source"].startswith("checkpoint")
    by_path = resolve_target(TargetOptions(name=str(record), root=out_root))
    assert _same(model, by_path.model, spec, cfg)
    with pytest.raises(InputFileError, match="is for cnn, not lenet5"):
        resolve_target(TargetOptions(name="lenet5", checkpoint=record, root=out_root))


def test_no_runs_yet_is_a_clear_error(out_root) -> None:
    with pytest.raises(InputFileError, match="dlopt train NAME"):
        resolve_target(TargetOptions(root=out_root))


def test_build_options_need_a_name(out_root) -> None:
    resolve_target(TargetOptions(name="mlp", root=out_root, tiny=True))
    with pytest.raises(InputFileError, match="need an architecture name"):
        resolve_target(TargetOptions(root=out_root, sets={"num_classes": "3"}))
