"""Verification inputs from the model's real data: the user's --inputs file (dlopt.data.inputs_file), else the test
split of the data a run was trained on.

Used when the run holds a finished training stage on a dataset whose samples feed the deployed entry point
directly (a GAN's generator takes noise, and transformer_seq2seq's decoder input is not in the data: those,
and untrained models, keep random valid inputs). Sequence models also get random inputs at a second length,
since a dataset has one sequence length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.core.runs import Run
from dlopt.models.spec import ArchSpec
from dlopt.verify.core import Case, VerifyConfig, make_cases, plan_batches


def _test_split(run: Run, spec: ArchSpec, cfg: Any) -> Any | None:
    train = run.manifest().get("stages", {}).get("train", {})
    if train.get("status") != "done" or spec.entry is not None:
        return None
    from dlopt.tasks import get_task

    family = get_task(spec)
    if not family.uses_data:
        return None
    options = train.get("config", {}).get("train", {})
    from dlopt.data import load_data

    data = load_data(spec, cfg, options.get("data"), path=options.get("data_path"), seed=options.get("seed", 0),
                     value_range=family.value_range)
    return data.test


def _batch(dataset: Any, start: int, size: int) -> tuple[Any, ...] | None:
    import torch

    if start + size > len(dataset):
        return None
    rows = list(range(start, start + size))
    fetch = getattr(dataset, "__getitems__", None)  # the batch converted at once (image splits resize per batch)
    items = [x for x, _y in (fetch(rows) if fetch else [dataset[i] for i in rows])]
    xs = [x if isinstance(x, tuple) else (x,) for x in items]
    return tuple(torch.stack([x[k] for x in xs]) for k in range(len(xs[0])))


def real_cases(run: Run | None, spec: ArchSpec, cfg: Any, config: VerifyConfig = VerifyConfig()) -> list[Case] | None:
    """Cases drawn from the trained run's test split (disjoint slices per batch size), or None to use random ones."""
    test = _test_split(run, spec, cfg) if run is not None else None
    if test is None:
        return None
    cases, start = [], 0
    for b in config.batch_sizes or plan_batches(config.export_batch):
        inputs = _batch(test, start, b)
        if inputs is None or len(inputs) != len(spec.inputs):
            return None  # too little data, or samples that do not match the entry point's inputs
        seq = int(inputs[0].shape[1]) if spec.takes_sequences else None
        cases.append(Case(b, seq, inputs, source="data"))
        start += b
    if spec.takes_sequences:  # a second length: random valid inputs at the planned lengths the data lacks
        lengths = {c.seq for c in cases}
        cases += [c for c in make_cases(spec, cfg, config) if c.seq not in lengths]
    return cases


def file_cases(data: Any, spec: ArchSpec, config: VerifyConfig = VerifyConfig()) -> list[Case]:
    """Cases from a user's inputs file (an InputsFile): consecutive slices at the planned batch sizes, then the
    rest of its samples (up to MAX_VERIFY_SAMPLES) in slices of the export batch. A file with fewer samples than a
    batch wraps around, so every planned batch size still runs."""
    from dlopt.data.inputs_file import MAX_VERIFY_SAMPLES

    sizes = list(config.batch_sizes or plan_batches(config.export_batch))
    total = min(data.samples, MAX_VERIFY_SAMPLES)
    used = sum(sizes)
    while used < total:
        sizes.append(min(config.export_batch, total - used))
        used += sizes[-1]
    cases, start = [], 0
    for b in sizes:
        inputs = data.batch(start, b)
        seq = int(inputs[0].shape[1]) if spec.takes_sequences else None
        cases.append(Case(b, seq, inputs, source="file"))
        start += b
    return cases


def verify_cases(run: Run | None, spec: ArchSpec, cfg: Any, config: VerifyConfig = VerifyConfig(),
                 inputs: Path | None = None) -> tuple[list[Case] | None, dict[str, Any] | None]:
    """The cases to verify on, and the record of the inputs file used (None without --inputs): the user's file,
    else the trained run's test split, else None (random valid inputs)."""
    if inputs is None:
        return real_cases(run, spec, cfg, config), None
    from dlopt.data.inputs_file import load_inputs

    data = load_inputs(inputs, spec, cfg)
    return file_cases(data, spec, config), data.record(run.path if run is not None else None)
