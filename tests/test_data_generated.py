"""The generated text and seq2seq tasks: labels follow the documented grammar, and a bag of words is not enough."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlopt.data import load_data
from dlopt.models.registry import get_spec, make_model_config

# The documented grammar, re-implemented here from docs/data.md rather than imported.
STRENGTH = {"good": 1, "nice": 1, "fine": 1, "decent": 1, "pleasant": 1, "great": 2, "superb": 2, "brilliant": 2,
            "wonderful": 2, "bad": -1, "dull": -1, "weak": -1, "poor": -1, "bland": -1, "awful": -2,
            "terrible": -2, "horrible": -2, "dreadful": -2}
UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}


def score(words: list[str]) -> int:
    total, sign, boost = 0, 1, 0
    for w in words:
        if w == "but":
            total = 0
        elif w == "not":
            sign = -1
        elif w in ("very", "really", "truly"):
            boost = 1
        elif w in STRENGTH:
            s = STRENGTH[w]
            total += sign * (s + boost if s > 0 else s - boost)
            sign, boost = 1, 0
    return total


def expected_label(words: list[str], num_classes: int) -> int:
    s = score(words)
    if num_classes == 2:
        return int(s > 0)
    if num_classes == 3:
        return 0 if s < 0 else 1 if s == 0 else 2
    return 0 if s <= -3 else 1 if s < 0 else 2 if s == 0 else 3 if s <= 2 else 4


def words_to_number(words: list[str]) -> int:
    total, group = 0, 0
    for w in words:
        if w == "thousand":
            total, group = group * 1000, 0
        elif w == "hundred":
            group *= 100
        elif w != "and":
            group += UNITS.get(w, TENS.get(w, 0))
    return total + group


def _splits(name: str, seed: int = 0, **sets):
    spec = get_spec(name)
    cfg = make_model_config(spec, sets, tiny=True)
    return load_data(spec, cfg, seed=seed)


def _decode(ids: torch.Tensor, tokens: list[str]) -> list[str]:
    return [tokens[i] for i in ids.tolist() if i != 0]


@pytest.mark.parametrize(("name", "num_classes"), [("text_lstm", 2), ("lstm_attention", 5)])
def test_text_labels_follow_the_grammar(name: str, num_classes: int) -> None:
    splits = _splits(name)
    from dlopt.data.text import VOCAB  # only to turn ids back into words

    tokens = list(VOCAB.tokens)
    assert splits.info["num_classes"] == num_classes and splits.config_overrides["vocab_size"] == len(tokens) < 200
    sentences = []
    for part in (splits.train, splits.val, splits.test):
        ids, labels = part.xs[0], part.y
        assert ids.dtype == torch.int64 and bool((ids[:, -1] != 0).all())  # padded on the left
        for row, label in zip(ids, labels.tolist()):
            words = _decode(row, tokens)
            assert label == expected_label(words, num_classes), " ".join(words)
            sentences.append(" ".join(words))
    assert len(set(sentences)) == len(sentences)  # no sentence in two splits
    counts = torch.bincount(splits.train.y, minlength=num_classes)
    assert int(counts.max() - counts.min()) <= 0.1 * int(counts.max())  # balanced


def test_text_is_not_solved_by_a_bag_of_words() -> None:
    from sklearn.linear_model import LogisticRegression

    splits = _splits("transformer_classifier")
    vocab = splits.config_overrides["vocab_size"]

    def bags(part):
        return torch.nn.functional.one_hot(part.xs[0], vocab).sum(dim=1)[:, 1:].numpy()

    model = LogisticRegression(max_iter=2000).fit(bags(splits.train), splits.train.y.numpy())
    accuracy = model.score(bags(splits.test), splits.test.y.numpy())
    assert accuracy < 0.75  # measured about 0.57; word order and negation scope decide the label


def test_bert_gets_ids_and_mask_and_the_seed_fixes_the_data() -> None:
    splits = _splits("bert_classifier")
    (ids, mask), label = splits.train[0]
    assert torch.equal(mask, (ids != 0).long()) and label.dtype == torch.int64
    again, other = _splits("bert_classifier"), _splits("bert_classifier", seed=1)
    assert torch.equal(splits.test.xs[0], again.test.xs[0]) and not torch.equal(splits.test.xs[0], other.test.xs[0])


def test_seq2seq_pairs_are_correct_translations() -> None:
    splits = _splits("transformer_seq2seq")
    info = splits.info
    assert info["special_ids"] == {"pad": 0, "bos": 1, "eos": 2}
    assert splits.config_overrides["src_vocab"] == info["src_vocab_size"]
    numbers = {}
    for part_name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        for src, tgt in zip(part.xs[0], part.y):
            words, target = _decode(src, info["src_tokens"]), tgt.tolist()
            end = target.index(2)  # every target ends in <eos>, then padding
            assert all(t == 0 for t in target[end + 1:])
            digits = "".join(info["tgt_tokens"][t] for t in target[:end])
            assert int(digits) == words_to_number(words) and str(int(digits)) == digits, " ".join(words)
            numbers[int(digits)] = numbers.get(int(digits), set()) | {part_name}
    assert all(len(parts) == 1 for parts in numbers.values())  # test numbers never seen in training
    assert sum(" and " in " ".join(_decode(s, info["src_tokens"])) for s in splits.test.xs[0]) > 100


def test_seq2seq_gru_gets_one_hot_sources() -> None:
    spec = get_spec("seq2seq_gru")
    cfg = make_model_config(spec, tiny=True)
    splits = load_data(spec, cfg, limit=50)
    cfg = dataclasses.replace(cfg, **splits.config_overrides)
    x, y = splits.train.xs[0], splits.train.y
    assert x.shape == (50, 11, cfg.input_size) and cfg.max_length == y.shape[1] == 7
    assert cfg.output_size == splits.info["tgt_vocab_size"] and bool((x.sum(dim=-1) == 1).all())
    ints = _splits("transformer_seq2seq").train.xs[0][:50]
    assert torch.equal(x.argmax(dim=-1), ints)
    assert np.isin(y.numpy(), np.arange(cfg.output_size)).all()
