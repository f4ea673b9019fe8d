"""The data layer: every trainable zoo model gets data its built model accepts; API errors are one clear line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.data import DataLoader

from dlopt.core.errors import DloptError, UnsupportedError, UsageError
from dlopt.data import list_datasets, load_data
from dlopt.models.registry import create_model, get_spec, list_specs, make_model_config
from dlopt.models.spec import Task

TRAINABLE = [s.name for s in list_specs() if s.trainer and s.dataset not in ("cartpole", "none")]


def _loaded(name: str, data: str | None = None, **kwargs):
    spec = get_spec(name)
    cfg = make_model_config(spec, tiny=True)
    splits = load_data(spec, cfg, data, **kwargs)
    return spec, dataclasses.replace(cfg, **splits.config_overrides), splits


def _xs(dataset) -> torch.Tensor:
    """Every input of a split as one tensor (image splits convert per item: there is no whole tensor)."""
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _batch(dataset, size: int = 4):
    return next(iter(DataLoader(dataset, batch_size=size, shuffle=False)))


def _check_model_fits(spec, cfg, x, y) -> None:
    model = create_model(spec, cfg)
    inputs = tuple(x) if isinstance(x, (list, tuple)) else (x,)
    assert len(inputs) == (1 if spec.task == Task.SEQ2SEQ else len(spec.inputs))  # seq2seq: y gives the decoder input
    with torch.no_grad():
        if spec.task == Task.GENERATION:  # the data is what the generator must produce
            out = model.generator(torch.randn(len(y), cfg.latent_size))
            assert out.shape == inputs[0].shape
        elif spec.name == "transformer_seq2seq":
            tgt_in = torch.cat([torch.ones_like(y[:, :1]), y[:, :-1]], dim=1)  # <bos> + shifted target
            assert model(inputs[0], tgt_in).shape == (*y.shape, cfg.tgt_vocab)
        elif spec.task == Task.SEQ2SEQ:
            assert model(*inputs).shape == (*y.shape, cfg.output_size)
        else:
            out = model(*inputs)
            out = out[0] if isinstance(out, tuple) else out
            if spec.task == Task.CLASSIFICATION and y.dtype == torch.int64:
                assert out.shape == (len(y), cfg.num_classes) and int(y.max()) < cfg.num_classes
            elif spec.task == Task.RECONSTRUCTION:
                assert out.shape == inputs[0].shape
            else:
                assert out.shape == y.shape


@pytest.mark.parametrize("name", TRAINABLE)
def test_default_data_fits_the_built_model(name: str) -> None:
    spec, cfg, splits = _loaded(name, limit=16)
    assert len(splits.train) == min(16, splits.info["sizes"]["train"]) and len(splits.val) and len(splits.test)
    assert splits.info["name"] == spec.dataset and splits.info["description"]
    json.dumps(splits.info)  # JSON-ready
    assert set(splits.config_overrides) <= {f.name for f in dataclasses.fields(spec.config)}
    x, y = _batch(splits.train)
    for t, tensor in zip(spec.inputs, x if isinstance(x, (list, tuple)) else [x]):
        if t.dtype == "int64":
            assert tensor.dtype == torch.int64
    _check_model_fits(spec, cfg, x, y)


def test_list_and_errors() -> None:
    names = list_datasets()
    assert {"digits", "tabular", "sine", "gates", "text", "seq2seq", "npz", "csv", "imagefolder", "mnist"} <= set(names)
    spec = get_spec("cnn")
    cfg = make_model_config(spec, tiny=True)
    with pytest.raises(UsageError, match="unknown dataset 'digitz'; valid: digits"):
        load_data(spec, cfg, "digitz")
    with pytest.raises(UnsupportedError, match="environment"):
        load_data(get_spec("dqn"), make_model_config(get_spec("dqn")))
    with pytest.raises(UsageError, match="path"):
        load_data(spec, cfg, "npz")
    with pytest.raises(UsageError, match="takes no path"):
        load_data(spec, cfg, "digits", path="x.npz")


@pytest.mark.parametrize(("model", "data"), [("cnn", "sine"), ("text_lstm", "digits"), ("perceptron", "digits"),
                                              ("rnn", "text"), ("mlp", "seq2seq"), ("transformer_seq2seq", "text")])
def test_data_that_does_not_fit_the_model_is_refused(model: str, data: str) -> None:
    with pytest.raises(DloptError) as err:
        _loaded(model, data)
    assert "\n" not in str(err.value) and model in str(err.value)


def test_digits_shapes_ranges_and_overrides() -> None:
    _, _, lenet = _loaded("lenet5")
    assert lenet.train[0][0].shape == (1, 32, 32) and lenet.info["sizes"] == {"train": 1258, "val": 269, "test": 270}
    train_x = _xs(lenet.train)
    assert abs(float(train_x.mean())) < 1e-3 and abs(float(train_x.std()) - 1) < 1e-3  # standardised on train
    test_counts = torch.bincount(lenet.test.y, minlength=10)
    assert int(test_counts.min()) >= 26 and int(test_counts.max()) <= 29  # stratified
    _, _, rgb = _loaded("simple_cnn")
    image = rgb.train[0][0]
    assert image.shape == (3, 16, 16) and torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    spec, cfg, mlp = _loaded("mlp", "digits")
    assert mlp.config_overrides == {"in_features": 784, "num_classes": 10} and mlp.train[0][0].shape == (784,)
    _check_model_fits(spec, cfg, *_batch(mlp.train))
    gan = get_spec("gan")  # default image_size 784: flat 28 x 28
    pixels = _xs(load_data(gan, make_model_config(gan), value_range=(-1.0, 1.0)).train)
    assert pixels.shape[1] == 784 and float(pixels.min()) == -1.0 and float(pixels.max()) == pytest.approx(1.0)
    _, _, vae = _loaded("vae", value_range=(0.0, 1.0))  # tiny in_features 64: the native 8 x 8
    assert vae.info["input_shape"] == [64] and 0.0 <= float(_xs(vae.train).min()) < float(_xs(vae.train).max()) <= 1


def test_splits_fixed_by_seed_and_limit() -> None:
    first, again, other = (_loaded("cnn", seed=s)[2] for s in (3, 3, 4))
    assert torch.equal(_xs(first.test), _xs(again.test)) and torch.equal(first.train.y, again.train.y)
    assert not torch.equal(_xs(first.test), _xs(other.test))
    limited = _loaded("cnn", seed=3, limit=10)[2]
    assert len(limited.train) == 10 and torch.equal(_xs(limited.train), _xs(first.train)[:10])
    assert torch.equal(_xs(limited.test), _xs(first.test))  # limit only caps training
    with pytest.raises(DloptError, match="limit"):
        _loaded("cnn", limit=0)


def test_tabular() -> None:
    _, cfg, splits = _loaded("mlp")
    assert splits.info["sizes"] == {"train": 700, "val": 150, "test": 150}
    assert splits.train[0][0].shape == (20,) and cfg.num_classes == 2
    assert abs(float(splits.train.xs[0].mean())) < 1e-5 and set(splits.train.y.tolist()) == {0, 1}


def test_sine_windows_follow_a_sine() -> None:
    _, cfg, splits = _loaded("rnn")
    x, y = splits.train.xs[0], splits.train.y
    assert x.shape[1:] == (cfg.seq_len, 1) and y.shape[1:] == (1,) and cfg.seq_len == 19
    wave = torch.cat([x[..., 0], y], dim=1).double()  # (N, 20): sin(start + k h), h = 20 / 19
    h = torch.tensor((cfg.seq_len + 1) / cfg.seq_len, dtype=torch.float64)
    # a sampled sine obeys s[k+1] = 2 cos(h) s[k] - s[k-1]
    residual = wave[:, 2:] - (2 * torch.cos(h) * wave[:, 1:-1] - wave[:, :-2])
    assert float(residual.abs().max()) < 1e-5
    assert not torch.equal(load_data(get_spec("rnn"), cfg, seed=1).train.y, y)


def test_gates_and_blobs() -> None:
    spec, cfg, gates = _loaded("perceptron")
    assert gates.train.xs[0].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert gates.train.y.tolist() == [[0.0], [0.0], [0.0], [1.0]] and gates.info["gate"] == "and"
    assert _loaded("perceptron", "or")[2].test.y.flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    blobs = _loaded("perceptron", "blobs")[2]
    for part in (blobs.train, blobs.val, blobs.test):  # separable by x0 + x1 = 0 with a margin
        side = part.xs[0].sum(dim=1) / 2**0.5
        assert torch.all(torch.where(part.y[:, 0] == 1, side, -side) > 0.5)
    tab_spec, tab_cfg, tab = _loaded("perceptron", "tabular")
    assert tab.config_overrides == {"in_features": 20}
    _check_model_fits(tab_spec, tab_cfg, *_batch(tab.train))


def test_image_items_and_batches_agree() -> None:
    from dlopt.data.images import ImageSet

    splits = _loaded("simple_cnn", seed=1)[2]
    lazy = splits.test
    assert isinstance(lazy, ImageSet)
    rows = [0, 7, len(lazy) - 1]
    for (x, y), i in zip(lazy.__getitems__(rows), rows, strict=True):  # one resize for the batch
        assert torch.allclose(x, lazy[i][0], atol=1e-6) and y == lazy[i][1]
    x, y = _batch(splits.train)
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
