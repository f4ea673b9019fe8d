"""Calibration and probe inputs: the user's --inputs FILE.npz when given (`calibrate_on`), else real samples from
the run's data where they feed the deployed module, else random valid inputs where the module's input is noise (a
GAN's generator) or the family has no data (DQN).

Inputs are `Batches`: a sequence that makes each batch when it is read (from the dataset's rows, or from a
seed), so calibrating on 256 images at 3x224x224 never holds more than one batch of them at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from dlopt.core.errors import UsageError

CALIB_BATCH = 32

Batch = tuple[Any, ...]  # one tensor per spec input, (B, ...) each


class Batches(Sequence[Batch]):
    """`len(sizes)` batches, batch k made by `make(k)` each time it is read; slicing stays lazy."""

    def __init__(self, sizes: Sequence[int], make: Callable[[int], Batch], picks: Sequence[int] | None = None) -> None:
        self.sizes, self._make = list(sizes), make
        self._picks = list(range(len(self.sizes))) if picks is None else list(picks)

    @property
    def samples(self) -> int:
        return sum(self.sizes[k] for k in self._picks)

    @property
    def batch_sizes(self) -> list[int]:
        """Samples in each batch of this (possibly sliced) sequence, without making any batch."""
        return [self.sizes[k] for k in self._picks]

    def __len__(self) -> int:
        return len(self._picks)

    @overload
    def __getitem__(self, k: int) -> Batch: ...

    @overload
    def __getitem__(self, k: slice) -> Batches: ...

    def __getitem__(self, k: int | slice) -> Batch | Batches:
        if isinstance(k, slice):
            return Batches(self.sizes, self._make, self._picks[k])
        return self._make(self._picks[k])

    def __iter__(self) -> Iterator[Batch]:
        return (self._make(k) for k in self._picks)


@dataclass(frozen=True)
class Inputs:
    batches: Batches
    source: str  # "train split of <data>", "random valid inputs (...)"

    @property
    def samples(self) -> int:
        return self.batches.samples


def _chunks(samples: int) -> list[int]:
    return [min(CALIB_BATCH, samples - s) for s in range(0, samples, CALIB_BATCH)]


def split_inputs(evaluator: Any, spec: Any, split: str, limit: int, seed: int) -> Batches | None:
    """Up to `limit` samples of a split in batches, in a seeded order; None when they do not feed the module."""
    import torch

    from dlopt.tasks import as_inputs

    if evaluator is None or spec.entry is not None:
        return None
    dataset = getattr(evaluator.data, split, None)
    if dataset is None or len(dataset) == 0:
        return None
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]

    def make(k: int) -> Batch:
        x, _y = evaluator.task.collate(dataset, order[k * CALIB_BATCH:(k + 1) * CALIB_BATCH])
        return tuple(t.cpu() for t in as_inputs(x))

    batches = Batches(_chunks(len(order)), make)
    if len(batches[0]) != len(spec.inputs):
        return None  # samples hold more than the deployed module takes (seq2seq targets)
    return batches


def random_inputs(spec: Any, cfg: Any, samples: int, seed: int) -> Batches:
    from dlopt.models.registry import make_inputs

    sizes = _chunks(samples)
    return Batches(sizes, lambda k: make_inputs(spec, cfg, sizes[k], seed=seed + k))


def data_free_reason(spec: Any) -> str | None:
    """Why random inputs are the right calibration data, or None when the spec has no data at all."""
    if spec.entry is not None:
        return f"{spec.name}'s deployed {spec.entry} takes random inputs ({', '.join(spec.input_names)})"
    if spec.trainer:
        from dlopt.tasks import get_task

        if not get_task(spec).uses_data:
            return f"{spec.name} trains in its environment ({spec.dataset}), without a dataset"
    return None


# --inputs FILE.npz of `dlopt quantize`: set around run_quantize by `calibrate_on`, read by calibration_inputs
_INPUTS_FILE: ContextVar[Path | None] = ContextVar("dlopt_calibration_inputs", default=None)


@contextlib.contextmanager
def calibrate_on(path: Path | None) -> Iterator[None]:
    """Within this block, static int8 calibrates on the samples of `path` (an .npz, dlopt.data.inputs_file)."""
    token = _INPUTS_FILE.set(Path(path) if path is not None else None)
    try:
        yield
    finally:
        _INPUTS_FILE.reset(token)


def inputs_file() -> Path | None:
    """The --inputs file of this `dlopt quantize` (None without one)."""
    return _INPUTS_FILE.get()


def _rows(data: Any, start: int, count: int) -> Batches:
    """Rows [start, start + count) of an InputsFile in CALIB_BATCH batches, made when read."""
    sizes = _chunks(count)
    return Batches(sizes, lambda k: data.batch(start + k * CALIB_BATCH, sizes[k]))


def _named(data: Any, run_dir: Path | None) -> str:
    """The file as the report names it: run-relative inside the run, else its name (the sha256 pins it)."""
    return f"inputs file {data.record(run_dir)['file']} (sha256 {data.sha256}, {data.samples} samples)"


def file_inputs(path: Path, spec: Any, cfg: Any, samples: int, run_dir: Path | None = None) -> Inputs:
    """Up to `samples` samples of the user's file (checked against the model), in calibration batches."""
    from dlopt.data.inputs_file import load_inputs

    data = load_inputs(path, spec, cfg)
    return Inputs(_rows(data, 0, min(samples, data.samples)), _named(data, run_dir))


MIN_SPLIT = 8  # a file with fewer samples is used whole for calibration and judging alike (said in a note)


@dataclass(frozen=True)
class FileSplit:
    """The user's file split three ways when the run has no data of its own: calibration, the search's probe and
    the held-out inputs the agreement verdict is judged on (disjoint rows, unless the file is too small)."""

    calib: Inputs
    probe: Batches
    held: Batches
    basis: str  # what the verdict is judged on, for the report
    note: str


def file_split(path: Path, spec: Any, cfg: Any, samples: int, limits: tuple[int, int],
               run_dir: Path | None = None) -> FileSplit:
    """Rows [0, c) calibrate, the next p rows probe, the last h rows are held out (p, h: a quarter of the file
    each, at most `limits` = (probe, held) samples); a file under MIN_SPLIT samples is reused whole."""
    from dlopt.data.inputs_file import load_inputs

    data = load_inputs(path, spec, cfg)
    n, name = data.samples, _named(data, run_dir)
    if n < MIN_SPLIT:
        every = _rows(data, 0, n)
        basis = f"{name}, all {n} samples (the same ones calibration used)"
        return FileSplit(Inputs(every, name), every, every, basis,
                         f"agreement judged on {basis}: under {MIN_SPLIT} samples, none could be held out (save "
                         f"{MIN_SPLIT} or more to judge on samples calibration did not see)")
    held, probe = min(n // 4, limits[1]), min(n // 4, limits[0])
    calib = min(samples, n - held - probe)
    basis = f"{name}, rows {n - held}-{n - 1} ({held} samples held out from calibration)"
    note = (f"agreement judged on {basis}; calibrated on rows 0-{calib - 1}, the search probed rows "
            f"{n - held - probe}-{n - held - 1}")
    return FileSplit(Inputs(_rows(data, 0, calib), f"{name}, rows 0-{calib - 1}"), _rows(data, n - held - probe, probe),
                     _rows(data, n - held, held), basis, note)


def calibration_inputs(evaluator: Any, spec: Any, cfg: Any, samples: int, seed: int, needed: bool,
                       run_dir: Path | None = None) -> Inputs:
    """The user's --inputs file; else the training split when it feeds the module; else random valid inputs where
    that is the input distribution; else (a user model, no data) an error when static calibration needs data."""
    path = _INPUTS_FILE.get()
    if path is not None:
        return file_inputs(path, spec, cfg, samples, run_dir)
    got = split_inputs(evaluator, spec, "train", samples, seed)
    if got:
        return Inputs(got, f"train split ({evaluator.data_options.get('source', 'run')} data)")
    why = data_free_reason(spec) or (None if evaluator is None else "its dataset samples do not match the module's "
                                     "inputs")
    if why is None and needed:
        raise UsageError(f"no calibration data for {spec.name}: it has no dataset dlopt can load; give --inputs "
                         "FILE.npz with your own samples, use --method dynamic (no calibration), or train it with "
                         "dlopt first")
    hint = "" if why else " (give --inputs FILE.npz to calibrate on your own samples)"
    return Inputs(random_inputs(spec, cfg, samples, seed), f"random valid inputs: {why or 'no dataset'}{hint}")
