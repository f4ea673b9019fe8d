"""Calibration and probe inputs: real samples from the run's data where they feed the deployed module,
random valid inputs where the module's input is noise (a GAN's generator) or the family has no data (DQN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlopt.errors import UsageError

CALIB_BATCH = 32


@dataclass(frozen=True)
class Inputs:
    batches: list[tuple[Any, ...]]  # each a tuple of tensors, one per spec input
    source: str  # "train split of <data>", "random valid inputs (...)"

    @property
    def samples(self) -> int:
        return sum(int(b[0].shape[0]) for b in self.batches)


def split_inputs(evaluator: Any, spec: Any, split: str, limit: int, seed: int) -> list[tuple[Any, ...]] | None:
    """Up to `limit` samples of a split in batches, in a seeded order; None when they do not feed the module."""
    import torch

    from dlopt.train.family import inputs_tuple

    if evaluator is None or spec.entry is not None:
        return None
    dataset = getattr(evaluator.data, split, None)
    if dataset is None or len(dataset) == 0:
        return None
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]
    out = []
    for start in range(0, len(order), CALIB_BATCH):
        x, _y = evaluator.family.collate(dataset, order[start:start + CALIB_BATCH])
        xs = inputs_tuple(x)
        if len(xs) != len(spec.inputs):
            return None  # samples hold more than the deployed module takes (seq2seq targets)
        out.append(tuple(t.cpu() for t in xs))
    return out


def random_inputs(spec: Any, cfg: Any, samples: int, seed: int) -> list[tuple[Any, ...]]:
    from dlopt.registry import make_inputs

    sizes = [min(CALIB_BATCH, samples - s) for s in range(0, samples, CALIB_BATCH)]
    return [make_inputs(spec, cfg, n, seed=seed + i) for i, n in enumerate(sizes)]


def data_free_reason(spec: Any) -> str | None:
    """Why random inputs are the right calibration data, or None when the spec has no data at all."""
    if spec.entry is not None:
        return f"{spec.name}'s deployed {spec.entry} takes random inputs ({', '.join(spec.input_names)})"
    if spec.trainer:
        from dlopt.train.family import get_family

        if not get_family(spec).uses_data:
            return f"{spec.name} trains in its environment ({spec.dataset}), without a dataset"
    return None


def calibration_inputs(evaluator: Any, spec: Any, cfg: Any, samples: int, seed: int, needed: bool) -> Inputs:
    """The training split when it feeds the module; else random valid inputs where that is the input
    distribution; else (a user model, no data) an error when static calibration needs data."""
    got = split_inputs(evaluator, spec, "train", samples, seed)
    if got:
        return Inputs(got, f"train split ({evaluator.data_options.get('source', 'run')} data)")
    why = data_free_reason(spec) or (None if evaluator is None else "its dataset samples do not match the module's "
                                     "inputs")
    if why is None and needed:
        raise UsageError(f"no calibration data for {spec.name}: it has no dataset dlopt can load; use "
                         "--method dynamic (no calibration), or train it with dlopt first")
    return Inputs(random_inputs(spec, cfg, samples, seed), f"random valid inputs: {why or 'no dataset'}")
