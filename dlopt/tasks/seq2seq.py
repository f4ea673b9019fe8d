"""Sequence-to-sequence: greedy decoding to evaluate (exact match of the whole sequence up to end-of-sequence,
token accuracy), and the teacher-forced cross-entropy as the loss.

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

from dlopt.core.errors import UnsupportedError
from dlopt.tasks.base import Task, register_task
from dlopt.tasks.inputs import as_inputs


class TokenAdapter:
    def __init__(self, bos: int) -> None:
        self.bos = bos

    def logits(self, model: torch.nn.Module, src: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tgt_in = torch.cat([torch.full_like(y[:, :1], self.bos), y[:, :-1]], dim=1)  # shift right
        return model(src, tgt_in)

    def decode(self, model: torch.nn.Module, src: torch.Tensor, length: int) -> torch.Tensor:
        return model.generate(src, self.bos, length)


class OneHotAdapter:
    def logits(self, model: torch.nn.Module, src: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        vocab = model.projection.out_features
        prev = F.one_hot(y[:, :-1], vocab).to(src.dtype)
        start = torch.zeros(len(y), 1, vocab, dtype=src.dtype, device=src.device)
        return model.teacher_forcing(src, torch.cat([start, prev], dim=1))

    def decode(self, model: torch.nn.Module, src: torch.Tensor, length: int) -> torch.Tensor:
        return model(src).argmax(-1)  # decodes its own max_length steps


def adapter_for(model: torch.nn.Module, bos: int) -> TokenAdapter | OneHotAdapter:
    if hasattr(model, "teacher_forcing"):
        return OneHotAdapter()
    if hasattr(model, "generate"):
        return TokenAdapter(bos)
    raise UnsupportedError(f"{type(model).__name__} offers neither generate() nor teacher_forcing(); "
                           "the seq2seq loop needs one of them")


def exact_and_tokens(pred: torch.Tensor, y: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sequences exactly right, tokens right, target tokens), counting target positions up to eos."""
    if pred.shape[1] < y.shape[1]:
        pred = F.pad(pred, (0, y.shape[1] - pred.shape[1]), value=-1)
    pred = pred[:, : y.shape[1]]
    mask = y != pad  # (B, T): eos included, padding after it excluded
    right = (pred == y) & mask
    exact = (right | ~mask).all(dim=1)
    return exact.sum(), right.sum(), mask.sum()


@register_task
class Seq2SeqTask(Task):
    name = "seq2seq"
    mode = "max"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ids = self.info.get("special_ids", {})  # the data layer's; the seq2seq task uses pad 0, bos 1, eos 2
        self.pad, self.bos = int(ids.get("pad", 0)), int(ids.get("bos", 1))

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        adapter = adapter_for(model, self.bos)

        def fn(m: torch.nn.Module, x: Any, y: torch.Tensor) -> dict[str, tuple]:
            src = as_inputs(x)[0]
            logits = adapter.logits(m, src, y).float()
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=self.pad, reduction="sum")
            exact, right, total = exact_and_tokens(adapter.decode(m, src, y.shape[1]), y, self.pad)
            return {"loss": (loss, total), "exact_match": (exact, len(y)), "token_accuracy": (right, total)}

        return self.mean_over(model, split, fn)
