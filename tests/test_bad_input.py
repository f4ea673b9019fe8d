"""The catalogue of bad input (docs/reliability.md): each row gives one line, a documented exit code, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.core.errors import EXIT_CODES, InputMismatchError

runner = CliRunner()


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _fails(result, code: int, *fragments: str) -> str:
    """Exit `code` (a documented one) with exactly one line starting 'error:' that holds every fragment."""
    assert code in EXIT_CODES
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    line = " ".join(result.output[result.output.index("error:"):].split())  # soft-wrapped: join the line back
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny mlp checkpoint (record + weights), written without training."""
    from dlopt.models.checkpoint import save_checkpoint
    from dlopt.models.registry import create_model, get_spec, make_model_config

    spec = get_spec("mlp")
    cfg = make_model_config(spec, {}, tiny=True)
    return save_checkpoint(create_model(spec, cfg), spec, cfg, tmp_path_factory.mktemp("ck") / "model.json")


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory) -> Path:
    """A run holding a tiny mlp exported to ONNX (legacy exporter, no verification: fast)."""
    root = tmp_path_factory.mktemp("onnx")
    result = _invoke("export", "mlp", "--tiny", "--format", "onnx", "--exporter", "legacy", "--no-verify",
                     "--out", root, "--json")
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["run"])


def _copy_ckpt(ckpt: Path, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".safetensors"):
        (where / f"model{suffix}").write_bytes(ckpt.with_suffix(suffix).read_bytes())
    return where / "model.json"


# -- names and option values ---------------------------------------------------------------------------------

def test_unknown_architecture_suggests_close_names():
    _fails(_invoke("info", "resnet19"), 2, "unknown architecture 'resnet19'", "did you mean resnet18")
    _fails(_invoke("train", "lenet55"), 2, "did you mean lenet5")


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "mlp", "--batch-size", "0"], "--batch-size"),
    (["train", "mlp", "--epochs", "-1"], "--epochs"),
    (["train", "mlp", "--lr", "-0.1"], "--lr"),
    (["train", "mlp", "--optimizer", "adamx"], "--optimizer"),
    (["train"], "name an architecture"),
    (["info", "mlp", "--batch-size", "0"], "--batch-size"),
    (["info", "mlp", "--set", "hidden_sizes=abc"], "hidden_sizes"),
    (["info", "mlp", "--set", "nope=1"], "nope"),
    (["bench", "mlp", "--backend", "nope"], "unknown backend 'nope'"),
    (["bench", "mlp", "--batch-size", "0"], "batch"),
    (["export", "mlp", "--format", "xyz"], "unknown export format 'xyz'"),
    (["export", "mlp", "--tiny", "--opset", "3"], "opset"),
    (["export", "mlp", "--tiny", "--batch-size", "1"], "at least 2"),
    (["verify", "x.onnx", "--batch-sizes", "a,b"], "--batch-sizes"),
])
def test_bad_option_values(args: list[str], fragment: str, tmp_path: Path):
    _fails(_invoke(*args, "--out", tmp_path) if args[0] not in ("info",) else _invoke(*args), 2, fragment)
    assert not list(tmp_path.rglob("manifest.json"))  # refused before any run directory was made


# -- checkpoints ----------------------------------------------------------------------------------------------

def test_missing_checkpoint(tmp_path: Path):
    _fails(_invoke("export", "--checkpoint", tmp_path / "nope.json", "--out", tmp_path), 3, "not found")


def test_truncated_checkpoint_weights(ckpt: Path, tmp_path: Path):
    record = _copy_ckpt(ckpt, tmp_path / "ck")
    weights = record.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    _fails(_invoke("export", "--checkpoint", record, "--out", tmp_path), 3, "corrupt")


def test_corrupt_weights_without_a_recorded_sha(ckpt: Path, tmp_path: Path):
    record = _copy_ckpt(ckpt, tmp_path / "ck")
    data = json.loads(record.read_text())
    del data["sha256"]
    record.write_text(json.dumps(data))
    record.with_suffix(".safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    _fails(_invoke("export", "--checkpoint", record, "--out", tmp_path), 3, "corrupt or truncated")


def test_truncated_checkpoint_record(ckpt: Path, tmp_path: Path):
    record = _copy_ckpt(ckpt, tmp_path / "ck")
    record.write_text(record.read_text()[:40])
    _fails(_invoke("export", "--checkpoint", record, "--out", tmp_path), 3, "not valid JSON")


def test_checkpoint_of_another_architecture(ckpt: Path, tmp_path: Path):
    _fails(_invoke("export", "lenet5", "--checkpoint", ckpt, "--out", tmp_path), 3, "is for mlp, not lenet5")


def test_checkpoint_with_mismatched_shapes(ckpt: Path, tmp_path: Path):
    record = _copy_ckpt(ckpt, tmp_path / "ck")
    data = json.loads(record.read_text())
    data["config"]["hidden_sizes"] = [16, 4]  # the weights were saved for (8, 4)
    record.write_text(json.dumps(data))
    _fails(_invoke("export", "--checkpoint", record, "--out", tmp_path), 3, "does not fit mlp")


def test_resume_of_a_missing_or_damaged_run(tmp_path: Path):
    _fails(_invoke("train", "--resume", tmp_path / "nope"), 3, "not a dlopt run")
    from dlopt.train.state import load_state

    (tmp_path / "train_state.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    from dlopt.core.errors import InputFileError

    with pytest.raises(InputFileError, match="corrupt or truncated"):
        load_state(tmp_path)


# -- artifacts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff" * 20, "truncated"])
def test_corrupt_onnx_file(content, onnx_run: Path, tmp_path: Path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes((onnx_run / "model.onnx").read_bytes()[:300] if content == "truncated" else content)
    line = _fails(_invoke("bench", bad, "--out", tmp_path / "out"), 3, "model.onnx")
    assert "not a loadable ONNX model" in line or "not a valid ONNX" in line
    assert not (tmp_path / "out").exists()  # no run directory left behind for a file that cannot load
    _fails(_invoke("verify", bad, "--checkpoint", onnx_run / "model.json"), 3, "ONNX")


def test_artifact_runner_refuses_inputs_of_the_wrong_shape_or_dtype(onnx_run: Path):
    from dlopt.export import load_artifact

    run = load_artifact(onnx_run / "model.onnx")
    assert run(torch.randn(3, 20))[0].shape == (3, 2)  # the right inputs work (dynamic batch)
    for bad, fragment in [((torch.randn(3, 21),), "shape [3, 21]"), ((torch.randn(3, 20, 1),), "shape [3, 20, 1]"),
                          ((torch.ones(3, 20, dtype=torch.int64),), "int64, not float32"),
                          ((torch.randn(3, 20), torch.randn(3, 20)), "2 input(s) given, 1 expected")]:
        with pytest.raises(InputMismatchError, match="inputs do not fit model.onnx") as info:
            run(*bad)
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_verify_with_the_checkpoint_of_another_configuration(onnx_run: Path, tmp_path: Path):
    from dlopt.models.checkpoint import save_checkpoint
    from dlopt.models.registry import create_model, get_spec, make_model_config

    spec = get_spec("mlp")
    cfg = make_model_config(spec, {"in_features": 30}, tiny=True)
    other = save_checkpoint(create_model(spec, cfg), spec, cfg, tmp_path / "other.json")
    _fails(_invoke("verify", onnx_run / "model.onnx", "--checkpoint", other), 2, "inputs do not fit model.onnx",
           "--checkpoint")


# -- output ---------------------------------------------------------------------------------------------------

def test_unwritable_output_directory(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, so nothing can be created under it (even as root)")
    _fails(_invoke("export", "mlp", "--tiny", "--out", blocker / "root"), 5, "cannot", "--out")


def test_read_only_output_directory(tmp_path: Path):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode: the other test (a path under a file) covers it
            pytest.skip("running as root: chmod does not block writes")
        _fails(_invoke("export", "mlp", "--tiny", "--out", ro), 5, "Permission denied", "--out")
    finally:
        ro.chmod(0o700)


def test_full_disk_leaves_no_half_written_file(tmp_path: Path, monkeypatch):
    import errno
    import os

    import dlopt.core.fileio

    real_replace = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith("train_state.safetensors"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(dlopt.core.fileio.os, "replace", full)
    result = _invoke("train", "mlp", "--tiny", "--epochs", "1", "--limit", "32", "--out", tmp_path, "--json")
    _fails(result, 5, "the disk is full", "train_state.safetensors")
    [run] = list(tmp_path.glob("mlp/*"))
    assert not (run / "train_state.safetensors").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((run / "manifest.json").read_text())["stages"]["train"]["status"] == "failed"
