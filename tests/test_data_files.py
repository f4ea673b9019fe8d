"""The user's own data, built here as small files in their real formats."""

from __future__ import annotations

import dataclasses
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dlopt.core.errors import InputFileError
from dlopt.data import load_data
from dlopt.models.registry import create_model, get_spec, make_model_config


def _load(model: str, data: str, path, **kwargs):
    spec = get_spec(model)
    cfg = make_model_config(spec, tiny=True)
    splits = load_data(spec, cfg, data, path=path, **kwargs)
    return spec, dataclasses.replace(cfg, **splits.config_overrides), splits


def _write_folder(root, classes=("cat", "dog", "eel"), per_class=10):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((6, 9, 3), 40 + 80 * c, dtype=np.uint8)
            pixels[i % 6] = 255
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_imagefolder(tmp_path) -> None:
    _write_folder(tmp_path / "pics")
    spec, cfg, splits = _load("cnn", "imagefolder", tmp_path / "pics")
    assert splits.info["classes"] == ["cat", "dog", "eel"] and cfg.num_classes == 3
    assert splits.info["sizes"] == {"train": 21, "val": 5, "test": 4}
    assert set(splits.test.y.tolist()) == {0, 1, 2}  # stratified
    x, y = splits.train[0]
    assert x.shape == (1, 28, 28) and y.dtype == torch.int64
    with torch.no_grad():
        assert create_model(spec, cfg)(torch.stack([splits.train[i][0] for i in range(2)])).shape == (2, 3)
    rgb = _load("simple_cnn", "imagefolder", tmp_path / "pics", value_range=(0.0, 1.0))[2]
    assert rgb.train[0][0].shape == (3, 16, 16) and max(float(x.max()) for x, _ in rgb.train) <= 1.0
    flat = _load("mlp", "imagefolder", tmp_path / "pics")
    assert flat[2].config_overrides == {"in_features": 784, "num_classes": 3}


def test_imagefolder_errors(tmp_path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        _load("cnn", "imagefolder", tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(InputFileError, match="not an image folder"):
        _load("cnn", "imagefolder", tmp_path / "flat")
    _write_folder(tmp_path / "bad", per_class=3)
    (tmp_path / "bad" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError, match="broken.png is not a readable image"):
        _load("cnn", "imagefolder", tmp_path / "bad")


def _write_idx(raw, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """The idx files torchvision's MNIST reader parses: big-endian magic, sizes, then uint8 data."""
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_files_on_disk(tmp_path, name: str, folder: str) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    _write_idx(raw, "train", rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), np.arange(40, dtype=np.uint8) % 10)
    _write_idx(raw, "t10k", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), np.arange(10, dtype=np.uint8))
    _, cfg, splits = _load("cnn", name, tmp_path)
    assert splits.info["sizes"] == {"train": 34, "val": 6, "test": 10} and cfg.num_classes == 10
    assert splits.test.y.tolist() == list(range(10))  # the official test set, in order
    assert splits.train[0][0].shape == (1, 28, 28)
    same = _load("cnn", name, tmp_path / folder)[2]  # the dataset folder itself is accepted too
    assert all(torch.equal(a[0], b[0]) for a, b in zip(same.test, splits.test, strict=True))
    lenet = _load("lenet5", name, tmp_path)[2]
    assert lenet.train[0][0].shape == (1, 32, 32)


def test_mnist_absent_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(InputFileError, match="no MNIST files under .*never downloads"):
        _load("cnn", "mnist", tmp_path)


def test_cifar10_batches(tmp_path, monkeypatch) -> None:
    """CIFAR-10's python batches; torchvision checks their md5 against the official files, bypassed here only."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                              "test_batch"]):
        batch = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": [(i + j) % 10 for j in range(10)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    spec, cfg, splits = _load("simple_cnn", "cifar10", tmp_path)
    assert splits.info["classes"] == names and splits.info["sizes"]["test"] == 10
    assert sum(splits.info["sizes"].values()) == 60 and splits.train[0][0].shape == (3, 16, 16)
    grey = _load("cnn", "cifar10", tmp_path)[2]
    assert grey.train[0][0].shape == (1, 28, 28)


def test_npz_images_features_series_and_tokens(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", X=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y=np.arange(30) % 3)
    assert _load("cnn", "npz", tmp_path / "img.npz")[2].train[0][0].shape == (1, 28, 28)
    np.savez(tmp_path / "feat.npz", X=rng.normal(size=(40, 5)), y=np.array(["no", "yes"] * 20))
    spec, cfg, feats = _load("mlp", "npz", tmp_path / "feat.npz")
    assert feats.config_overrides == {"in_features": 5, "num_classes": 2} and feats.info["classes"] == ["no", "yes"]
    with torch.no_grad():
        assert create_model(spec, cfg)(feats.test.xs[0]).shape == (len(feats.test), 2)
    np.savez(tmp_path / "series.npz", X=rng.normal(size=(20, 7, 2)), y=rng.normal(size=(20, 3)))
    _, cfg, series = _load("lstm", "npz", tmp_path / "series.npz")
    assert (cfg.input_size, cfg.output_size) == (2, 3) and series.train[0][1].shape == (3,)
    np.savez(tmp_path / "ids.npz", X=rng.integers(0, 30, (20, 6)), y=np.arange(20) % 4)
    _, cfg, ids = _load("bert_classifier", "npz", tmp_path / "ids.npz")
    assert (cfg.vocab_size, cfg.num_classes) == (int(np.load(tmp_path / "ids.npz")["X"].max()) + 1, 4)
    assert isinstance(ids.train[0][0], tuple) and len(ids.train[0][0]) == 2


def test_npz_errors(tmp_path) -> None:
    np.savez(tmp_path / "keys.npz", inputs=np.zeros((5, 2)), y=np.zeros(5))
    with pytest.raises(InputFileError, match="needs arrays named X and y"):
        _load("mlp", "npz", tmp_path / "keys.npz")
    (tmp_path / "text.npz").write_text("X,y\n1,2\n")
    with pytest.raises(InputFileError, match="not a numeric .npz"):
        _load("mlp", "npz", tmp_path / "text.npz")
    np.savez(tmp_path / "objects.npz", X=np.array([{"a": 1}] * 5, dtype=object), y=np.zeros(5))
    with pytest.raises(InputFileError, match="not a numeric .npz"):
        _load("mlp", "npz", tmp_path / "objects.npz")
    np.savez(tmp_path / "flat.npz", X=np.zeros((6, 4)), y=np.zeros(6))
    with pytest.raises(InputFileError, match="does not fit lstm"):
        _load("lstm", "npz", tmp_path / "flat.npz")
    with pytest.raises(InputFileError, match="is not a file"):
        _load("mlp", "npz", tmp_path / "absent.npz")


def test_csv_text(tmp_path) -> None:
    rows = [("a truly fine film", "pos"), ("dull and slow", "neg")] * 10 + [("zebra", "neg")]
    lines = ["label,text"] + [f"{label},{text}" for text, label in rows]
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    spec, cfg, splits = _load("text_lstm", "csv", tmp_path / "reviews.csv")
    assert splits.info["classes"] == ["neg", "pos"] and cfg.num_classes == 2
    words = {"a", "truly", "fine", "film", "dull", "and", "slow"}
    assert cfg.vocab_size in (len(words) + 2, len(words) + 3)  # <pad>, <unk>, and "zebra" if it fell in train
    ids = torch.cat([splits.train.xs[0], splits.val.xs[0], splits.test.xs[0]])
    assert ids.dtype == torch.int64 and int(ids.max()) < cfg.vocab_size and bool((ids[:, -1] > 0).all())
    with torch.no_grad():
        assert create_model(spec, cfg)(ids[:3]).shape == (3, 2)
    (tmp_path / "plain.csv").write_text("".join(f"{t},{lab}\n" for t, lab in rows))
    assert _load("text_lstm", "csv", tmp_path / "plain.csv")[2].info["classes"] == ["neg", "pos"]
    (tmp_path / "latin.csv").write_bytes("caf\xe9,1\n".encode("latin-1") * 5)
    with pytest.raises(InputFileError, match="not a UTF-8 CSV"):
        _load("text_lstm", "csv", tmp_path / "latin.csv")


def test_npz_for_reconstruction_and_bad_labels(tmp_path) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "ae.npz", X=rng.random((12, 10)), y=rng.random((12, 10)))  # y unused by an autoencoder
    _, cfg, splits = _load("autoencoder", "npz", tmp_path / "ae.npz", value_range=(-1.0, 1.0))
    train = splits.train.xs[0]
    assert cfg.in_features == 10 and float(train.min()) == pytest.approx(-1.0) and float(train.max()) == pytest.approx(1)
    np.savez(tmp_path / "multi.npz", X=rng.random((12, 10)), y=rng.random((12, 2)))
    with pytest.raises(InputFileError, match="one label per row"):
        _load("mlp", "npz", tmp_path / "multi.npz")
