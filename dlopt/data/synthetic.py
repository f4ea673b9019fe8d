"""Generated numeric data, deterministic from the seed: tabular classification, sine windows, logic gates, blobs."""

from __future__ import annotations

import numpy as np
import torch

from dlopt.data.common import (
    DataRequest,
    DataSplits,
    InputKind,
    PairDataset,
    class_overrides,
    class_targets,
    make_splits,
    require_kind,
    split_indices,
)
from dlopt.models.spec import Task

TABULAR_SAMPLES, TABULAR_FEATURES = 1000, 20  # the articles' make_classification call
SINE_SAMPLES = 2000  # the articles use 1000; twice that leaves 300 windows each for validation and test
SINE_START_MAX = 100.0  # each window starts at a phase drawn uniformly from [0, 100) radians
SINE_NOISE_STD = 0.0  # the articles' clean sine; the only randomness is the start phase
BLOB_SAMPLES, BLOB_MARGIN = 400, 0.5  # points closer than the margin to the true boundary are dropped
GATES = {"and": (0, 0, 0, 1), "or": (0, 1, 1, 1)}  # outputs for inputs (0,0) (0,1) (1,0) (1,1)


def _standardise(x: np.ndarray, train_idx: np.ndarray) -> tuple[np.ndarray, dict[str, list[float]]]:
    mean, std = x[train_idx].mean(axis=0), x[train_idx].std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return (x - mean) / std, {"mean": mean.tolist(), "std": std.tolist()}


def _vector_overrides(req: DataRequest, features: int, num_classes: int) -> dict[str, int]:
    field = req.spec.inputs[0].shape[1]
    return {**({field: features} if isinstance(field, str) else {}), **class_overrides(req, num_classes)}


def load_tabular(req: DataRequest) -> DataSplits:
    from sklearn.datasets import make_classification

    require_kind(req, (InputKind.VECTOR,), "20-feature vectors", (Task.CLASSIFICATION,))
    x, y = make_classification(n_samples=TABULAR_SAMPLES, n_features=TABULAR_FEATURES, n_classes=2,
                               random_state=req.seed)
    idx = split_indices(len(y), req.seed, y)
    x, stats = _standardise(x, idx[0])
    data = PairDataset([torch.from_numpy(x).float()], class_targets(req.spec, torch.from_numpy(y)))
    info = {"description": "scikit-learn make_classification(n_samples=1000, n_features=20, n_classes=2, "
                           "random_state=seed): 2 informative, 2 redundant, 16 noise features; standardised "
                           "with training statistics", "source": "generated", "num_classes": 2,
            "input_shape": [TABULAR_FEATURES], "standardised": stats}
    return make_splits(data, idx, req, info, _vector_overrides(req, TABULAR_FEATURES, 2))


def sine_windows(seq_len: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The articles' generator: start ~ U(0, 100); sin(linspace(start, start + L + 1, L + 1)); first L -> last."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0.0, SINE_START_MAX, size=(samples, 1))
    steps = np.linspace(0.0, seq_len + 1.0, seq_len + 1)  # L + 1 points, about 1 radian apart
    wave = np.sin(starts + steps) + rng.normal(0.0, SINE_NOISE_STD, size=(samples, seq_len + 1))
    return wave[:, :-1, None], wave[:, -1:]  # (N, L, 1), (N, 1)


def load_sine(req: DataRequest) -> DataSplits:
    require_kind(req, (InputKind.SERIES,), "(seq_len, 1) float windows", (Task.REGRESSION,))
    seq_len = int(getattr(req.cfg, "seq_len", 19))
    x, y = sine_windows(seq_len, SINE_SAMPLES, req.seed)
    data = PairDataset([torch.from_numpy(x).float()], torch.from_numpy(y).float())
    info = {"description": f"windows of {seq_len} samples of sin(t) -> the next sample; each window starts at a "
                           "phase drawn uniformly from [0, 100) and steps (L+1)/L radians, as in the articles; "
                           f"noise std {SINE_NOISE_STD}", "source": "generated", "seq_len": seq_len,
            "input_shape": [seq_len, 1], "target_shape": [1]}
    idx = split_indices(SINE_SAMPLES, req.seed)
    return make_splits(data, idx, req, info, {"input_size": 1, "output_size": 1})


def _binary_vectors(req: DataRequest, gives: str) -> None:
    require_kind(req, (InputKind.VECTOR,), gives, (Task.CLASSIFICATION,))


def load_gate(req: DataRequest) -> DataSplits:
    """A truth table is its whole domain: train, validation and test are all four rows."""
    gate = "and" if req.name == "gates" else req.name
    _binary_vectors(req, "2-input truth tables")
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    data = PairDataset([x], class_targets(req.spec, torch.tensor(GATES[gate])))
    info = {"description": f"the {gate.upper()} truth table (4 rows); train, validation and test are all four "
                           "rows because the table is the whole domain", "source": "generated", "gate": gate,
            "num_classes": 2, "input_shape": [2]}
    every = np.arange(4)
    return make_splits(data, (every, every, every), req, info, _vector_overrides(req, 2, 2))


def blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters around (-1.5, -1.5) and (1.5, 1.5), std 1, split by x0 + x1 = 0 with a margin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=BLOB_SAMPLES * 2)
    x = rng.normal(0.0, 1.0, size=(len(y), 2)) + np.where(y[:, None] == 1, 1.5, -1.5)
    signed = (x[:, 0] + x[:, 1]) / np.sqrt(2.0)  # distance to the boundary, positive on class 1's side
    keep = np.flatnonzero(np.where(y == 1, signed, -signed) > BLOB_MARGIN)[:BLOB_SAMPLES]
    return x[keep], y[keep]


def load_blobs(req: DataRequest) -> DataSplits:
    _binary_vectors(req, "2-feature points")
    x, y = blobs(req.seed)
    idx = split_indices(len(y), req.seed, y)
    data = PairDataset([torch.from_numpy(x).float()], class_targets(req.spec, torch.from_numpy(y)))
    info = {"description": "two Gaussian blobs (std 1) centred at (-1.5, -1.5) and (1.5, 1.5); points within "
                           f"{BLOB_MARGIN} of the line x0 + x1 = 0 or on its wrong side are dropped, so the "
                           "classes are linearly separable", "source": "generated", "num_classes": 2,
            "input_shape": [2]}
    return make_splits(data, idx, req, info, _vector_overrides(req, 2, 2))
