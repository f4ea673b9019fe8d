"""The user's image files: an ImageFolder directory, or torchvision's MNIST / FashionMNIST / CIFAR-10 on disk.

Nothing is ever downloaded (download=False): missing files are one clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlopt.core.errors import InputFileError
from dlopt.data.common import DataRequest, DataSplits, split_indices
from dlopt.data.images import image_geometry, image_splits

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
TORCHVISION_SETS = {  # name -> (torchvision class, folder under the root, what it holds)
    "mnist": ("MNIST", "MNIST", "MNIST/raw/train-images-idx3-ubyte (and the other three idx files)"),
    "fashionmnist": ("FashionMNIST", "FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte (and three more)"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "cifar-10-batches-py/data_batch_1 .. 5, test_batch, batches.meta"),
}
MAX_PIXELS = 64 * 2**20  # ~67 megapixels (an 8K frame is 33): decoding one costs at most ~200 MB as RGB
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


def _open_checked(path: Path) -> Any:
    """The image opened lazily (header only), refused before decoding when it has too many pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:  # PIL's own ceiling (twice its MAX_IMAGE_PIXELS)
        raise InputFileError(f"{path} is refused: {exc}; shrink it below {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputFileError(f"{path} is not a readable image ({exc}); remove it or convert it to PNG") from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise InputFileError(f"{path} is {width}x{height} = {width * height:,} pixels, over dlopt's ceiling of "
                             f"{MAX_PIXELS:,} (a decompression bomb, or a photo to shrink first); remove or resize it")
    return img


def read_image(path: Path, channels: int, size: int) -> np.ndarray:
    """One file -> (C, S, S) uint8, grey or RGB, resized bilinearly; refused before decoding past MAX_PIXELS."""
    from PIL import Image

    img = _open_checked(path)
    try:
        with img:
            img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InputFileError(f"{path} is not a readable image ({exc}); remove it or convert it to PNG") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class FileImages:
    """An ImageFolder's files as base images: reading rows decodes those files only, at the model's side."""

    def __init__(self, files: list[Path], channels: int, size: int) -> None:
        self.files, self.channels, self.size = files, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        arrays = [read_image(self.files[int(r)], self.channels, self.size) for r in rows.reshape(-1)]
        if not arrays:
            return torch.zeros((0, self.channels, self.size, self.size), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays))  # (n, C, S, S) uint8


def load_imagefolder(req: DataRequest) -> DataSplits:
    files, labels, classes = folder_items(req.path)
    geom, _ = image_geometry(req)
    for f in files:  # headers only: a broken or oversized file is refused now, not in the middle of an epoch
        _open_checked(f).close()
    base = FileImages(files, 3 if geom.channels == 3 else 1, geom.size)
    idx = split_indices(len(labels), req.seed, labels)
    info = {"description": f"image folder {req.path}: {len(files)} images in {len(classes)} classes, read from "
                           "disk a batch at a time", "source": str(req.path), "classes": classes}
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
