"""A generated review-sentiment task whose label needs word order, negation scope and counting.

Grammar (docs/data.md has the full description):
    sentence := [prefix] clause (conj clause){0,2}
    clause   := "the" subject verb ["not"] [intensifier] adjective
    conj     := "and" | "but"
A clause scores sign * (strength + 1 if intensified), the sign flipped by "not"; "but" discards every clause
before it, so the score is the sum of the clauses after the last "but". 2 classes: the score's sign (0 never
drawn); 3: negative / mixed (0) / positive; 5: <= -3, -2..-1, 0, 1..2, >= 3. Classes are balanced.
"""

from __future__ import annotations

import numpy as np
import torch

from dlopt.core.errors import ConfigError
from dlopt.data.common import DataRequest, DataSplits, InputKind, PairDataset, make_splits, require_kind, split_indices
from dlopt.data.tokens import Vocab, model_inputs, pad_left
from dlopt.models.spec import Task

PREFIXES = ((), ("honestly",), ("overall",), ("i", "think"), ("in", "short"))  # no sentiment
SUBJECTS = ("movie", "plot", "acting", "music", "ending", "cast", "script", "story")
VERBS = ("was", "is", "felt", "seemed")
ADJECTIVES = {  # word -> signed strength
    "good": 1, "nice": 1, "fine": 1, "decent": 1, "pleasant": 1,
    "great": 2, "superb": 2, "brilliant": 2, "wonderful": 2,
    "bad": -1, "dull": -1, "weak": -1, "poor": -1, "bland": -1,
    "awful": -2, "terrible": -2, "horrible": -2, "dreadful": -2,
}
INTENSIFIERS = ("very", "really", "truly")  # add 1 to the strength
NEGATION_P, INTENSIFIER_P, BUT_P = 0.4, 0.35, 0.5
MAX_CLAUSES = 3
MAX_TOKENS = 2 + MAX_CLAUSES * 6 + (MAX_CLAUSES - 1)  # prefix, clauses of up to 6 words, conjunctions
TEXT_SAMPLES = 4000
CLASS_NAMES = {
    2: ("negative", "positive"),
    3: ("negative", "mixed", "positive"),
    5: ("very negative", "negative", "mixed", "positive", "very positive"),
}
VOCAB = Vocab(("<pad>", "<unk>", *sorted({"the", "not", "and", "but", *SUBJECTS, *VERBS, *ADJECTIVES,
                                          *INTENSIFIERS, *(w for p in PREFIXES for w in p)})))


ADJECTIVE_WORDS = tuple(ADJECTIVES)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _clause(rng: np.random.Generator) -> tuple[list[str], int]:
    adjective = _pick(rng, ADJECTIVE_WORDS)
    words = ["the", _pick(rng, SUBJECTS), _pick(rng, VERBS)]
    strength, sign = abs(ADJECTIVES[adjective]), 1 if ADJECTIVES[adjective] > 0 else -1
    if rng.random() < NEGATION_P:
        words.append("not")
        sign = -sign
    if rng.random() < INTENSIFIER_P:
        words.append(_pick(rng, INTENSIFIERS))
        strength += 1
    return [*words, adjective], sign * strength


def sentence(rng: np.random.Generator) -> tuple[list[str], int]:
    """One sentence and its score (the sum of the clause scores after the last "but")."""
    words = list(PREFIXES[rng.integers(len(PREFIXES))])
    score = 0
    for i in range(int(rng.integers(1, MAX_CLAUSES + 1))):
        if i:
            but = rng.random() < BUT_P
            words.append("but" if but else "and")
            score = 0 if but else score
        clause, value = _clause(rng)
        words += clause
        score += value
    return words, score


def label_of(score: int, num_classes: int) -> int | None:
    """The class of a score; None for a score the task leaves out (0 in the two-class task)."""
    sign = (score > 0) - (score < 0)
    if num_classes == 2:
        return None if score == 0 else int(score > 0)
    if num_classes == 3:
        return sign + 1
    return 2 + sign * (1 if abs(score) <= 2 else 2) if score else 2


def generate(num_classes: int, samples: int, seed: int) -> tuple[list[list[str]], list[int]]:
    """Distinct sentences, the same number per class, deterministic from the seed."""
    if num_classes not in CLASS_NAMES:
        raise ConfigError(f"the generated text task has 2, 3 or 5 classes, not {num_classes}; "
                          "set num_classes=2, 3 or 5 (or train on your own CSV)")
    rng = np.random.default_rng(seed)
    quota, seen = samples // num_classes, set()
    counts = [0] * num_classes
    texts, labels = [], []
    while min(counts) < quota:
        words, score = sentence(rng)
        label, key = label_of(score, num_classes), " ".join(words)
        if label is None or counts[label] >= quota or key in seen:
            continue
        seen.add(key)
        counts[label] += 1
        texts.append(words)
        labels.append(label)
    return texts, labels


def encode_splits(req: DataRequest, ids: torch.Tensor, labels: torch.Tensor, idx: tuple[np.ndarray, ...],
                  info: dict, vocab: Vocab) -> DataSplits:
    """Token-id datasets for a text classifier (ids padded on the left, plus a mask where the model takes one)."""
    data = PairDataset(model_inputs(ids, req.spec.input_names), labels)
    length = ids.shape[1]
    overrides = {"vocab_size": vocab.size, "num_classes": int(info["num_classes"]), "pad_id": 0}
    if getattr(req.cfg, "max_len", length) < length:
        overrides["max_len"] = length
    info = {**info, "vocab_size": vocab.size, "seq_len": length, "special_ids": {"pad": 0, "unk": 1},
            "padding": "left"}
    return make_splits(data, idx, req, info, overrides)


def load_text(req: DataRequest) -> DataSplits:
    require_kind(req, (InputKind.TOKENS,), "token-id sentences", (Task.CLASSIFICATION,))
    num_classes = int(getattr(req.cfg, "num_classes", 2))
    texts, labels = generate(num_classes, TEXT_SAMPLES, req.seed)
    ids = pad_left([VOCAB.encode(t) for t in texts], MAX_TOKENS)
    idx = split_indices(len(labels), req.seed, np.asarray(labels))
    info = {"description": "generated review sentences; the label is the sign (2 classes) or the bucket (3, 5) "
                           "of the summed adjective strengths after the last 'but', each flipped by 'not' and "
                           "raised by an intensifier (docs/data.md)", "source": "generated",
            "num_classes": num_classes, "classes": list(CLASS_NAMES[num_classes]),
            "examples": [" ".join(t) for t in texts[:3]]}
    return encode_splits(req, ids, torch.tensor(labels), idx, info, VOCAB)
