"""`dlopt prune` at its default options: every architecture whose spec declares structured pruning prunes
through the stage (run, report, notes) without an error -- the list comes from the registry."""

from __future__ import annotations

import json

import pytest

from dlopt.prune import PruneConfig
from dlopt.prune.stage import REPORT, run_prune
from dlopt.registry import list_specs
from dlopt.target import TargetOptions

STRUCTURED = list_specs(stage="prune:structured")


def test_the_registry_declares_structured_pruning_somewhere():
    assert len(STRUCTURED) >= 2  # the parametrized test below is not vacuous


@pytest.mark.parametrize("spec", STRUCTURED, ids=lambda s: s.name)
def test_default_structured_prune_runs_on_every_declaring_architecture(spec, tmp_path):
    out = run_prune(TargetOptions(name=spec.name, tiny=True, root=tmp_path), PruneConfig(data_limit=32))
    report = json.loads((out.record.parent / REPORT).read_text())
    assert report["params"]["after"] < report["params"]["before"]
    assert report["config"]["round_to"] is None and report["config"]["method"] == "structured"
