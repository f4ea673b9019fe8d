"""Checkpoints: safetensors + JSON round trip for every architecture; pickles and mismatches refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from dlopt.core.errors import InputFileError, UnsafeFileError
from dlopt.models.checkpoint import load_checkpoint, save_checkpoint
from dlopt.models.registry import build_model, entry_module, list_specs, make_inputs

NAMES = [s.name for s in list_specs()]


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_same_outputs(name: str, tmp_path) -> None:
    model, spec, cfg = build_model(name, tiny=True)
    with torch.no_grad():  # make every weight non-default so a load that silently skipped one would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    record = save_checkpoint(model, spec, cfg, tmp_path / "model", metrics={"accuracy": 0.5})
    ck = load_checkpoint(record, expected_arch=name)
    assert ck.config == cfg and ck.record["metrics"] == {"accuracy": 0.5}
    inputs = make_inputs(spec, cfg, 3)
    with torch.inference_mode():
        a, b = entry_module(model, spec)(*inputs), entry_module(ck.model, spec)(*inputs)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
        assert torch.equal(x, y)
    assert not list(tmp_path.glob("*.tmp")), "no temporary files left behind"


@pytest.fixture
def saved(tmp_path):
    model, spec, cfg = build_model("lenet5", tiny=True)
    return save_checkpoint(model, spec, cfg, tmp_path / "model"), tmp_path


class Trap:
    """Unpickling this writes a file: proof that a loader ran code from the pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_is_refused_and_does_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    trap = tmp_path / "model.pt"
    trap.write_bytes(pickle.dumps(Trap(str(marker))))
    with pytest.raises(UnsafeFileError, match="--trust-pickle"):
        load_checkpoint(trap)
    assert not marker.exists()


def test_torch_save_zip_is_refused_whatever_its_name(tmp_path) -> None:
    model, *_ = build_model("mlp", tiny=True)
    path = tmp_path / "weights.dat"
    torch.save(model.state_dict(), path)
    with pytest.raises(UnsafeFileError):
        load_checkpoint(path)


def test_wrong_architecture(saved) -> None:
    record, _ = saved
    with pytest.raises(InputFileError, match="is for lenet5, not resnet18"):
        load_checkpoint(record, expected_arch="resnet18")


def test_mismatched_shapes_are_named(saved) -> None:
    record, _ = saved
    data = json.loads(record.read_text())
    data["config"]["num_classes"] = 7
    data.pop("sha256")
    record.write_text(json.dumps(data))
    with pytest.raises(InputFileError, match=r"classifier\.5\.weight: file \(10, 84\) vs model \(7, 84\)"):
        load_checkpoint(record)


def test_truncated_weights(saved) -> None:
    record, tmp = saved
    weights = tmp / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputFileError, match="sha256"):
        load_checkpoint(record)
    data = json.loads(record.read_text())
    data.pop("sha256")
    record.write_text(json.dumps(data))
    with pytest.raises(InputFileError, match="corrupt or truncated"):
        load_checkpoint(record)


@pytest.mark.parametrize("content,needle", [("{not json", "not valid JSON"), ('{"format": "other"}', "not a dlopt checkpoint")])
def test_bad_record(saved, content: str, needle: str) -> None:
    record, _ = saved
    record.write_text(content)
    with pytest.raises(InputFileError, match=needle):
        load_checkpoint(record)


def test_missing_files(tmp_path, saved) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_checkpoint(tmp_path / "nothing.json")
    record, tmp = saved
    (tmp / "model.safetensors").unlink()
    with pytest.raises(InputFileError, match="missing"):
        load_checkpoint(record)
