"""Sequence-to-sequence training: teacher forcing (cross-entropy over target tokens, padding ignored).

Evaluation (greedy decoding: exact match up to end-of-sequence, token accuracy) and the adapters that drive the two
kinds of zoo model are the task's, in dlopt.tasks.seq2seq.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.inputs import as_inputs
from dlopt.tasks.seq2seq import Seq2SeqTask, adapter_for
from dlopt.train.config import HParams
from dlopt.train.family import Family, register_family


@register_family
class Seq2Seq(Seq2SeqTask, Family):
    defaults = HParams(epochs=40, batch_size=64, lr=1e-3, patience=8)

    def loss(self, model: torch.nn.Module, x: Any, y: torch.Tensor) -> torch.Tensor:
        logits = adapter_for(model, self.bos).logits(model, as_inputs(x)[0], y).float()
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=self.pad)
