"""A generated translation-like task: English number words -> the number's digits.

    "forty two thousand and seven" -> 4 2 0 0 7 <eos>
    "three hundred and five"       -> 3 0 5 <eos>     ("and" after "hundred" / before a last group < 100
                                                        appears in half the samples: British style)
Numbers 0 .. 999,999, the digit count drawn uniformly from 1..6, every number at most once, so the test
numbers are never seen in training. Not a word-by-word mapping: "twelve" is two digits, zeros that no word
says must be written ("two thousand five" -> 2005), "thousand" fixes where the first group ends, "and" is
noise to skip, and the output length depends on the whole input.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from dlopt.data.common import DataRequest, DataSplits, InputKind, PairDataset, make_splits, require_kind, split_indices
from dlopt.data.tokens import BOS, EOS, PAD, pad_left, pad_right, seq_vocab

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
SRC_VOCAB = seq_vocab((*ONES, *TENS[2:], "hundred", "thousand", "and"))
TGT_VOCAB = seq_vocab(tuple("0123456789"))
MAX_DIGITS = 6
SRC_LEN = 11  # "nine hundred and ninety nine thousand nine hundred and ninety nine"
TGT_LEN = MAX_DIGITS + 1  # digits + <eos>
SEQ2SEQ_SAMPLES = 10000
AND_P = 0.5  # share of samples written with the British "and"


def _group(n: int, british: bool) -> list[str]:
    """Words for 1 <= n <= 999."""
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    if hundreds and rest and british:
        words.append("and")
    if 0 < rest < 20:
        words.append(ONES[rest])
    elif rest:
        words += [TENS[rest // 10]] + ([ONES[rest % 10]] if rest % 10 else [])
    return words


def number_words(n: int, british: bool) -> list[str]:
    if n == 0:
        return ["zero"]
    thousands, rest = divmod(n, 1000)
    words = [*_group(thousands, british), "thousand"] if thousands else []
    if thousands and 0 < rest < 100 and british:
        words.append("and")
    return words + (_group(rest, british) if rest else [])


def draw_numbers(samples: int, seed: int) -> list[int]:
    """Distinct numbers, each with a digit count drawn uniformly from 1..6 (small pools run out first)."""
    rng = np.random.default_rng(seed)
    chosen: dict[int, None] = {}  # insertion-ordered set
    while len(chosen) < samples:
        digits = int(rng.integers(1, MAX_DIGITS + 1))
        low = 0 if digits == 1 else 10 ** (digits - 1)
        chosen.setdefault(int(rng.integers(low, 10 ** digits)), None)
    return list(chosen)


def generate(samples: int, seed: int) -> tuple[list[list[str]], list[str]]:
    """(source words, target digit string) pairs, deterministic from the seed."""
    rng = np.random.default_rng(seed + 1)
    numbers = draw_numbers(samples, seed)
    british = rng.random(len(numbers)) < AND_P
    return [number_words(n, bool(b)) for n, b in zip(numbers, british)], [str(n) for n in numbers]


def load_seq2seq(req: DataRequest) -> DataSplits:
    require_kind(req, (InputKind.SEQ2SEQ,), "number words -> digit sequences")
    sources, targets = generate(SEQ2SEQ_SAMPLES, req.seed)
    src = pad_left([SRC_VOCAB.encode(s) for s in sources], SRC_LEN)  # (N, S)
    tgt = pad_right([[*TGT_VOCAB.encode(list(t)), EOS] for t in targets], TGT_LEN)  # (N, T), ends in <eos>
    if req.spec.inputs[0].dtype.startswith("int"):
        x = src
        overrides = {"src_vocab": SRC_VOCAB.size, "tgt_vocab": TGT_VOCAB.size, "pad_id": PAD}
        if getattr(req.cfg, "max_len", SRC_LEN) < max(SRC_LEN, TGT_LEN):
            overrides["max_len"] = max(SRC_LEN, TGT_LEN)
    else:  # a float-input encoder (seq2seq_gru) reads one-hot source tokens
        x = F.one_hot(src, SRC_VOCAB.size).float()  # (N, S, V)
        overrides = {"input_size": SRC_VOCAB.size, "output_size": TGT_VOCAB.size, "max_length": TGT_LEN}
    info = {"description": "English number words (0 to 999,999, optional British 'and') -> the number's digits; "
                           "every number appears once, so test numbers are unseen in training",
            "source": "generated", "src_vocab_size": SRC_VOCAB.size, "tgt_vocab_size": TGT_VOCAB.size,
            "src_len": SRC_LEN, "tgt_len": TGT_LEN, "special_ids": {"pad": PAD, "bos": BOS, "eos": EOS},
            "padding": {"source": "left", "target": "right"}, "src_tokens": list(SRC_VOCAB.tokens),
            "tgt_tokens": list(TGT_VOCAB.tokens),
            "examples": [f"{' '.join(s)} -> {t}" for s, t in zip(sources[:3], targets[:3])]}
    data = PairDataset([x], tgt)
    return make_splits(data, split_indices(len(targets), req.seed), req, info, overrides)
