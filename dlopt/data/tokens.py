"""Token vocabularies and padding shared by the text, seq2seq and CSV datasets.

Ids: 0 = padding, 1 = unknown word (text) or start of sequence (seq2seq targets), 2 = end of sequence.
Model inputs are padded on the LEFT so the last position is always a real token: text_lstm and
seq2seq_gru read the recurrent state after the last step and take no mask. Targets are padded on the right.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

PAD, UNK, BOS, EOS = 0, 1, 1, 2  # UNK (text) and BOS (seq2seq targets) never share a vocabulary


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]  # id -> token; the first entries are the special tokens

    @property
    def size(self) -> int:
        return len(self.tokens)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, words: Sequence[str]) -> list[int]:
        ids = self.index
        return [ids.get(w, UNK) for w in words]


def text_vocab(words: Iterable[str], min_count: int = 1) -> Vocab:
    """<pad>, <unk>, then words by falling frequency (ties alphabetical): deterministic for a corpus."""
    counts = Counter(words)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocab(("<pad>", "<unk>", *ranked))


def seq_vocab(symbols: Iterable[str]) -> Vocab:
    """<pad>, <bos>, <eos>, then the symbols in the order given."""
    return Vocab(("<pad>", "<bos>", "<eos>", *symbols))


def _pad(seqs: Sequence[Sequence[int]], length: int, left: bool) -> torch.Tensor:
    out = np.full((len(seqs), length), PAD, dtype=np.int64)
    for row, seq in enumerate(seqs):
        seq = list(seq)[-length:] if left else list(seq)[:length]
        if seq:
            if left:
                out[row, length - len(seq):] = seq
            else:
                out[row, :len(seq)] = seq
    return torch.from_numpy(out)


def pad_left(seqs: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """(N, length) int64, each row ending with its tokens; longer rows keep their last `length` tokens."""
    return _pad(seqs, length, left=True)


def pad_right(seqs: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """(N, length) int64, each row starting with its tokens; longer rows keep their first `length` tokens."""
    return _pad(seqs, length, left=False)


def model_inputs(ids: torch.Tensor, input_names: Sequence[str]) -> list[torch.Tensor]:
    """Token ids, plus an attention mask (1 = token, 0 = padding) for models that take one (BERT)."""
    xs = [ids]
    if "attention_mask" in input_names:
        xs.append((ids != PAD).long())
    return xs
