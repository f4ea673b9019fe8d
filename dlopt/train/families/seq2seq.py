"""Sequence-to-sequence: teacher forcing in training (cross-entropy over target tokens, padding ignored),
greedy decoding to evaluate (exact match of the whole sequence up to end-of-sequence, token accuracy).

Targets y are (B, T) token ids ending in eos and padded with pad. The two zoo models take their
decoder input differently, so each is driven through a small adapter chosen by the interface the
model offers, not by its name:
- token models: forward(src, tgt_in) -> logits and generate(src, bos_id, max_len) -> ids;
- one-hot models: teacher_forcing(src, tgt_in_onehot) -> logits and forward(src) -> greedy logits,
  whose decoder starts from a zero vector and reads the one-hot of the previous token.
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
