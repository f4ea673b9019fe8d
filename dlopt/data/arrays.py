"""The user's arrays and text: a .npz with X and y, a CSV of text and label.

npz: X's shape decides how it is read, by what the model takes —
  images (N, H, W), (N, C, H, W) or (N, H, W, C) for image models and flat models (resized like digits);
  (N, F) float features for flat models; (N, T, F) float series for regression models (y (N,) or (N, O));
  (N, T) integer token ids (0 = padding) for text models. Classification labels may be any values: they are
  numbered in sorted order. Object arrays are refused (they would unpickle code).
csv: columns text,label (header optional); text is lower-cased and split on whitespace, with a vocabulary
built from the training split only (<pad> 0, <unk> 1).
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlopt.core.errors import InputFileError
from dlopt.data.common import (
    DataRequest,
    DataSplits,
    InputKind,
    PairDataset,
    class_overrides,
    class_targets,
    data_tensor,
    input_kind,
    make_splits,
    require_kind,
    split_indices,
)
from dlopt.data.images import image_splits
from dlopt.data.text import encode_splits
from dlopt.data.tokens import model_inputs, pad_left, text_vocab
from dlopt.models.spec import Task

CSV_MAX_TOKENS = 256  # longer texts keep their last 256 words
NPZ_MAX_BYTES = 8 * 2**30  # X and y as loaded; checked from the .npy headers before anything is decompressed


def _file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputFileError(f"{path} is not a file; give the path to {what}")
    return path


def _declared_bytes(archive: Any, name: str) -> int:
    """What an array of the archive will take in memory, from its .npy header (nothing decompressed)."""
    with archive.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = header(f)
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(_file(path, "a .npz with arrays X and y"), allow_pickle=False) as archive:
            keys = set(archive.files)
            if not {"X", "y"} <= keys:
                raise InputFileError(f"{path} holds {sorted(keys)}; it needs arrays named X and y "
                                     "(np.savez(path, X=inputs, y=labels))")
            size = sum(_declared_bytes(archive, name) for name in ("X", "y"))
            if size > NPZ_MAX_BYTES:
                raise InputFileError(f"{path}: X and y would take {size / 2**30:.1f} GiB in memory, over dlopt's "
                                     f"ceiling of {NPZ_MAX_BYTES / 2**30:g} GiB; use fewer samples, or an image "
                                     "folder (read a batch at a time)")
            return archive["X"], archive["y"]
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # not a zip, object arrays...
        raise InputFileError(f"{path} is not a numeric .npz archive ({exc}); save it with np.savez") from None


def _labels(y: np.ndarray) -> tuple[torch.Tensor, list[str]]:
    """Any label values -> ids 0..K-1 in sorted order, and the values as class names."""
    if y.size != len(y):
        raise InputFileError(f"y has shape {list(y.shape)}; a classifier needs one label per row, shape (N,)")
    classes, ids = np.unique(y.reshape(len(y)), return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64)), [str(c) for c in classes]


def _labels_for(req: DataRequest, y: np.ndarray) -> tuple[torch.Tensor, list[str]]:
    """Class ids for a classifier; reconstruction and generation models only carry y along (any shape)."""
    if req.spec.task != Task.CLASSIFICATION and y.size != len(y):
        return torch.zeros(len(y), dtype=torch.long), ["0"]
    return _labels(y)


def _image_base(x: np.ndarray) -> torch.Tensor:
    """(N, H, W) / (N, C, H, W) / (N, H, W, C) -> (N, C, H, W), uint8 kept, floats min-max scaled to [0, 1]."""
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    t = torch.from_numpy(np.ascontiguousarray(x if x.ndim == 4 else x[:, None]))
    if t.dtype == torch.uint8:
        return t
    t = t.float()
    low, high = float(t.min()), float(t.max())
    return (t - low) / (high - low) if high > low else t - low


def _check_arrays(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Refuse what no model can read, before anything is built from it: scalars, text, NaN, unequal rows."""
    for name, a in (("X", x), ("y", y)):
        if a.ndim == 0:
            raise InputFileError(f"{path}: {name} is a single value (shape []); it needs one row per sample, "
                                 f"shape (N, ...)")
    if x.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: X holds {x.dtype} values; it needs numbers (integers or floats)")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputFileError(f"{path}: X holds NaN or infinite values; replace them before training")
    if len(x) != len(y) or len(x) < 3:
        raise InputFileError(f"{path}: X has {len(x)} rows and y {len(y)}; they need the same number, at least 3")


def load_npz(req: DataRequest) -> DataSplits:
    x, y = read_npz(req.path)
    _check_arrays(req.path, x, y)
    kind = input_kind(req.spec)
    info = {"description": f"arrays X {list(x.shape)} and y {list(y.shape)} from {req.path}", "source": str(req.path)}
    if kind in (InputKind.IMAGE, InputKind.VECTOR) and x.ndim >= 3:
        labels, classes = _labels_for(req, y)
        idx = split_indices(len(labels), req.seed, labels.numpy())
        return image_splits(req, _image_base(x), labels, idx, {**info, "classes": classes})
    if kind == InputKind.TOKENS:
        return _npz_tokens(req, x, y, info)
    if kind == InputKind.VECTOR and x.ndim == 2:
        return _npz_features(req, x, y, info)
    if kind == InputKind.SERIES and x.ndim == 3:
        return _npz_series(req, x, y, info)
    raise InputFileError(f"{req.path}: X of shape {list(x.shape)} does not fit {req.spec.name}, which takes "
                         f"{kind} input; see docs/data.md for the shapes each kind of model reads")


def _scale_features(x: np.ndarray, train_idx: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Per feature, by training statistics: standardised, or min-max mapped onto value_range."""
    ref = x[train_idx]
    if value_range is None:
        std = ref.std(axis=0)
        return (x - ref.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)
    low, span = ref.min(axis=0), ref.max(axis=0) - ref.min(axis=0)
    unit = (x - low) / np.where(span > 1e-8, span, 1.0)
    return unit * (value_range[1] - value_range[0]) + value_range[0]


def _npz_features(req: DataRequest, x: np.ndarray, y: np.ndarray, info: dict[str, Any]) -> DataSplits:
    classify = req.spec.task == Task.CLASSIFICATION
    labels, classes = _labels_for(req, y)
    idx = split_indices(len(x), req.seed, labels.numpy() if classify else None)
    x = _scale_features(x.astype(np.float32), idx[0], req.value_range).astype(np.float32)
    field = data_tensor(req.spec).shape[1]
    overrides = {field: x.shape[1]} if isinstance(field, str) else {}
    if classify:
        overrides.update(class_overrides(req, len(classes)))
        info = {**info, "num_classes": len(classes), "classes": classes}
    info = {**info, "input_shape": [x.shape[1]],
            "scaling": "per feature, training statistics: " + ("standardised" if req.value_range is None
                                                                 else f"min-max onto {list(req.value_range)}")}
    data = PairDataset([torch.from_numpy(x)], class_targets(req.spec, labels))
    return make_splits(data, idx, req, info, overrides)


def _npz_series(req: DataRequest, x: np.ndarray, y: np.ndarray, info: dict[str, Any]) -> DataSplits:
    require_kind(req, (InputKind.SERIES,), "float series", (Task.REGRESSION,))
    y = y.astype(np.float32).reshape(len(y), -1)
    data = PairDataset([torch.from_numpy(x.astype(np.float32))], torch.from_numpy(y))
    overrides = {"input_size": x.shape[2], "output_size": y.shape[1]}
    return make_splits(data, split_indices(len(x), req.seed), req, {**info, "seq_len": x.shape[1]}, overrides)


def _npz_tokens(req: DataRequest, x: np.ndarray, y: np.ndarray, info: dict[str, Any]) -> DataSplits:
    require_kind(req, (InputKind.TOKENS,), "token ids", (Task.CLASSIFICATION,))
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer) or x.min() < 0:
        raise InputFileError(f"{req.path}: a text model needs X as (N, T) non-negative integer token ids "
                             f"(0 = padding), got {x.dtype} {list(x.shape)}")
    labels, classes = _labels(y)
    ids = torch.from_numpy(x.astype(np.int64))
    data = PairDataset(model_inputs(ids, req.spec.input_names), labels)
    vocab = int(x.max()) + 1
    overrides = {"vocab_size": vocab, **class_overrides(req, len(classes))}
    if getattr(req.cfg, "max_len", x.shape[1]) < x.shape[1]:
        overrides["max_len"] = x.shape[1]
    info = {**info, "num_classes": len(classes), "classes": classes, "vocab_size": vocab, "seq_len": x.shape[1]}
    return make_splits(data, split_indices(len(x), req.seed, labels.numpy()), req, info, overrides)


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    """Rows of (text, label); a first row naming 'text' and 'label' is a header and may order them.

    Blank lines are skipped; a row without a label is refused with its line number (it is not a class)."""
    try:
        with open(_file(path, "a CSV with columns text,label"), newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path} is not a UTF-8 CSV ({exc}); save it as text,label rows") from None
    header = [c.strip().lower() for c in rows[0][1]] if rows else []
    text_col, label_col = 0, 1
    if "text" in header and "label" in header:
        text_col, label_col = header.index("text"), header.index("label")
        rows = rows[1:]
    if len(rows) < 3:
        raise InputFileError(f"{path}: expected at least 3 rows of text,label (a header row is optional)")
    for line, r in rows:
        if len(r) <= max(text_col, label_col) or not r[label_col].strip():
            raise InputFileError(f"{path}: line {line} has no label ({','.join(r)[:60]!r}); every row needs "
                                 "text,label -- fill in the label or delete the row")
    return [r[text_col] for _, r in rows], [r[label_col].strip() for _, r in rows]


def load_csv(req: DataRequest) -> DataSplits:
    require_kind(req, (InputKind.TOKENS,), "tokenised text", (Task.CLASSIFICATION,))
    texts, raw_labels = read_csv(req.path)
    labels, classes = _labels(np.asarray(raw_labels))
    idx = split_indices(len(texts), req.seed, labels.numpy())
    words = [t.lower().split() for t in texts]
    vocab = text_vocab(w for i in idx[0] for w in words[i])  # from the training split only
    length = min(CSV_MAX_TOKENS, max(len(words[i]) for i in idx[0]) or 1)
    ids = pad_left([vocab.encode(w) for w in words], length)
    info = {"description": f"text,label rows from {req.path}, whitespace tokens", "source": str(req.path),
            "num_classes": len(classes), "classes": classes, "tokenizer": "lower-case, whitespace split"}
    return encode_splits(req, ids, labels, idx, info, vocab)
