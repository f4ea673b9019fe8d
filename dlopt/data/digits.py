"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images of 0-9, no download."""

from __future__ import annotations

import torch

from dlopt.data.common import DataRequest, DataSplits, split_indices
from dlopt.data.images import image_splits

DESCRIPTION = ("scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8x8 images with 17 grey "
               "levels, 10 classes, resized bilinearly to the model's input")


def load_digits_splits(req: DataRequest) -> DataSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    base = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    labels = torch.from_numpy(digits.target).long()
    idx = split_indices(len(labels), req.seed, digits.target)  # stratified 70 / 15 / 15
    info = {"description": DESCRIPTION, "source": "sklearn.datasets.load_digits", "original_shape": [1, 8, 8],
            "classes": [str(c) for c in range(10)], "augmentation": "none"}
    return image_splits(req, base, labels, idx, info)
