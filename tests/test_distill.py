"""Knowledge distillation in prune's fine-tuning: with `distill` on, a classifier's loss carries the KL term
against the unpruned teacher (a teacher that disagrees changes the gradient); with it off the loss is the
family's own; the CLI's --no-distill reaches the config and the report says which ran."""

from __future__ import annotations

import json

import pytest
import torch

from dlopt.contract.target import TargetOptions, resolve_target
from dlopt.prune import PruneConfig
from dlopt.prune.finetune import distill_loss, tuning_family
from dlopt.prune.stage import REPORT, run_prune


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory):
    from dlopt.tasks.evaluator import evaluator_for

    target = resolve_target(TargetOptions(name="cnn", tiny=True, root=tmp_path_factory.mktemp("runs")))
    evaluator = evaluator_for(target.run, target.spec, target.config, limit=32)
    return target, evaluator


def _grad(family, model, batch):
    model.zero_grad()
    family.loss(model, *batch).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_distill_loss_is_task_loss_plus_weighted_kl():
    student, teacher, task = torch.randn(4, 10), torch.randn(4, 10), torch.tensor(1.5)
    same = distill_loss(task, student, student.clone(), temperature=4.0, weight=0.5)
    assert same == pytest.approx(0.75)  # KL(p || p) = 0: half the task loss remains
    assert distill_loss(task, student, teacher, temperature=4.0, weight=0.5) > same


def test_a_disagreeing_teacher_changes_the_gradient_and_no_teacher_is_the_task_loss(tiny_cnn):
    target, evaluator = tiny_cnn
    student = target.model
    agreeing = student
    disagreeing = torch.nn.Sequential(student, torch.nn.Flatten(), _Negate())  # the reversed class ranking
    plain = tuning_family(evaluator, 1, None, 0, teacher=None)
    batch = next(iter(plain.epoch_batches(0)))[0]
    base = _grad(plain, student, batch)
    with_same = _grad(tuning_family(evaluator, 1, None, 0, teacher=agreeing), student, batch)
    with_other = _grad(tuning_family(evaluator, 1, None, 0, teacher=disagreeing), student, batch)
    # a teacher equal to the student adds KL(p || p) = 0 (no gradient): only the task loss, scaled by 1 - w
    assert torch.allclose(with_same, 0.5 * base, atol=1e-6)
    assert not torch.allclose(with_other, 0.5 * base, atol=1e-4)
    plain_loss = plain.loss(student, *batch)
    with torch.no_grad():
        reference = torch.nn.functional.cross_entropy(student(batch[0]), batch[1])
    assert plain_loss.item() == pytest.approx(reference.item(), rel=1e-5)  # no teacher: the task loss alone


class _Negate(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


@pytest.mark.parametrize("distill", [True, False])
def test_prune_records_whether_it_distilled(tmp_path, distill):
    out = run_prune(TargetOptions(name="cnn", tiny=True, root=tmp_path),
                    PruneConfig(ratio=0.5, data_limit=32, finetune_epochs=1, distill=distill))
    report = json.loads((out.record.parent / REPORT).read_text())
    tuned = report["finetune"][0]
    assert (tuned["distill"] is not None) is distill
    assert ("distilled from the unpruned model" in report["notes"][0]) is distill
    assert report["config"]["distill"] is distill


def test_cli_no_distill_reaches_the_config():
    from dlopt.cli.prune_cmds import PruneArgs

    assert PruneArgs().config().distill is False  # off by default: benchmarks/distill.py measured no gain
    assert PruneArgs(distill=True).config().distill is True
