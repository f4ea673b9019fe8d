"""The user's image files: an ImageFolder directory, or torchvision's MNIST / FashionMNIST / CIFAR-10 on disk.

Nothing is ever downloaded (download=False): missing files are one clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlopt.data.common import DataRequest, DataSplits, split_indices
from dlopt.data.images import image_geometry, image_splits
from dlopt.errors import InputFileError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
TORCHVISION_SETS = {  # name -> (torchvision class, folder under the root, what it holds)
    "mnist": ("MNIST", "MNIST", "MNIST/raw/train-images-idx3-ubyte (and the other three idx files)"),
    "fashionmnist": ("FashionMNIST", "FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte (and three more)"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "cifar-10-batches-py/data_batch_1 .. 5, test_batch, batches.meta"),
}
TRAIN_VAL = (0.85, 0.15, 0.0)  # the official training set is cut into train / validation; test stays official


def _existing_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputFileError(f"{path} does not exist; give the directory that holds {what}")
    if not path.is_dir():
        raise InputFileError(f"{path} is a file; give the directory that holds {what}")
    return path


def folder_items(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """ImageFolder layout: root/<class>/<image>; classes sorted by name, as torchvision does."""
    _existing_dir(root, "one sub-directory of images per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if len(classes) < 2 or not files:
        raise InputFileError(f"{root} is not an image folder: expected ROOT/<class>/<image>.png with at least "
                             f"two class directories, found {len(classes)} classes and {len(files)} images")
    return files, np.asarray(labels, dtype=np.int64), classes


def read_image(path: Path, channels: int, size: int) -> np.ndarray:
    """One file -> (C, S, S) uint8, grey or RGB, resized bilinearly."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputFileError(f"{path} is not a readable image ({exc}); remove it or convert it to PNG") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def load_imagefolder(req: DataRequest) -> DataSplits:
    files, labels, classes = folder_items(req.path)
    geom, _ = image_geometry(req)
    channels = 3 if geom.channels == 3 else 1
    base = torch.from_numpy(np.stack([read_image(f, channels, geom.size) for f in files]))  # (N, C, S, S) uint8
    idx = split_indices(len(labels), req.seed, labels)
    info = {"description": f"image folder {req.path}: {len(files)} images in {len(classes)} classes",
            "source": str(req.path), "classes": classes}
    return image_splits(req, base, torch.from_numpy(labels), idx, info)


def _torchvision_root(path: Path, folder: str) -> Path:
    """Accept the root torchvision expects (holding MNIST/) or the dataset folder itself."""
    if (path / folder).is_dir():
        return path
    if path.name == folder:
        return path.parent
    return path


def _read_torchvision(name: str, root: Path) -> tuple[Any, Any]:
    import torchvision.datasets as tvd

    cls_name, folder, holds = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    try:
        return cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise InputFileError(f"no {cls_name} files under {root} ({exc}); expected {root}/{holds} — dlopt never "
                             "downloads: copy the files there") from None


def _images_of(dataset: Any) -> torch.Tensor:
    data = torch.as_tensor(np.asarray(dataset.data))
    return data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8


def load_torchvision(req: DataRequest) -> DataSplits:
    _, folder, holds = TORCHVISION_SETS[req.name]
    root = _torchvision_root(_existing_dir(req.path, holds), folder)
    image_geometry(req)  # fail early on a model that takes no images
    train, test = _read_torchvision(req.name, root)
    base = torch.cat([_images_of(train), _images_of(test)])
    labels = torch.cat([torch.as_tensor(np.asarray(train.targets)), torch.as_tensor(np.asarray(test.targets))])
    n_train = len(train.targets)
    train_idx, val_idx, _ = split_indices(n_train, req.seed, labels[:n_train].numpy(), TRAIN_VAL)
    test_idx = np.arange(n_train, len(labels), dtype=np.int64)
    info = {"description": f"torchvision {req.name} read from {root}: official training set cut 85/15 into "
                           "train/validation, official test set as test", "source": str(root),
            "classes": [str(c) for c in train.classes]}
    return image_splits(req, base, labels.long(), (train_idx, val_idx, test_idx), info)
