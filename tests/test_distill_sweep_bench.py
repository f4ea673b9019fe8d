"""How benchmarks/distill_sweep.py chooses distillation's temperature and weight: on validation accuracy only (the
mean over ratios of the median over seeds), and whether the chosen pair beats plain fine-tuning there."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from distill_sweep import summarize  # noqa: E402

PAIRS = [None, (4.0, 0.5), (1.0, 1.0)]


def _rows(vals: dict, tests: dict | None = None) -> list[dict]:
    """vals: pair (None: plain) -> {ratio: [val per seed]}; test accuracy the opposite of validation by default."""
    out = []
    for pair, by_ratio in vals.items():
        for ratio, seeds in by_ratio.items():
            for seed, v in enumerate(seeds):
                t = (tests or {}).get(pair, {}).get(ratio, [1 - v] * len(seeds))[seed]
                out.append({"ratio": ratio, "seed": seed, "pair": None if pair is None else list(pair), "val": v,
                            "test": t})
    return out


def test_the_pair_is_chosen_on_validation_not_test():
    data = {"rows": _rows({None: {0.5: [0.8, 0.8, 0.8], 0.7: [0.4, 0.4, 0.4]},
                           (4.0, 0.5): {0.5: [0.9, 0.9, 0.1], 0.7: [0.5, 0.5, 0.5]},  # median 0.9: one bad seed
                           (1.0, 1.0): {0.5: [0.85, 0.85, 0.85], 0.7: [0.45, 0.45, 0.45]}})}
    summarize(data, PAIRS, [0.5, 0.7])
    assert data["chosen"] == "T=4 w=0.5"  # best validation; its test accuracy is the worst
    assert data["summary"]["T=4 w=0.5"]["val_score"] == 0.7
    assert data["chosen_beats_plain_on_val"] is True


def test_a_pair_below_plain_is_reported_as_not_beating_it():
    data = {"rows": _rows({None: {0.5: [0.85, 0.85, 0.85], 0.7: [0.48, 0.48, 0.48]},
                           (4.0, 0.5): {0.5: [0.86, 0.86, 0.86], 0.7: [0.46, 0.46, 0.46]},
                           (1.0, 1.0): {0.5: [0.84, 0.84, 0.84], 0.7: [0.47, 0.47, 0.47]}})}
    summarize(data, PAIRS, [0.5, 0.7])
    assert data["chosen"] == "T=4 w=0.5" and data["chosen_beats_plain_on_val"] is False
    assert data["summary"]["plain"]["0.7"] == {"val_median": 0.48, "test_median": 0.52}
